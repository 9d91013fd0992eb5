//! Helpers over the CRI v1 RuntimeService client: pod and container configs,
//! thin calls, waits for states, and the CRI container log format.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState,
    ContainerStateValue, ContainerStatus, ContainerStatusRequest, CreateContainerRequest,
    ExecSyncRequest, ExecSyncResponse, Int64Value, KeyValue, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    ListContainersRequest, ListPodSandboxRequest, NamespaceMode, NamespaceOption, PodSandbox,
    PodSandboxConfig, PodSandboxMetadata, PodSandboxStatus, PodSandboxStatusRequest,
    RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopContainerRequest, StopPodSandboxRequest,
};
use tonic::transport::Channel;
use tonic::Status;

use super::cri::spec;
use super::wait_until;

pub type RuntimeClient = RuntimeServiceClient<Channel>;

/// A safety net against a hung daemon; not a timing assertion.
const CALL_LIMIT: Duration = Duration::from_secs(120);
/// How long a container may take to reach a state (safety net).
pub const STATE_LIMIT: Duration = Duration::from_secs(60);

/// The env variable every test container carries, so the test can find the
/// container's processes on the host without asking the daemon.
pub const TAG_ENV: &str = "BERTH_E2E_TAG";

async fn limited<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(CALL_LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not answer within {CALL_LIMIT:?}"))
}

/// A process-wide unique suffix for names and tags.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A pod config: namespace `berth-e2e`, a unique uid, logs under `log_dir`.
pub fn pod_config(name: &str, log_dir: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: unique("uid"),
            namespace: "berth-e2e".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.display().to_string(),
        labels: HashMap::from([("berth.e2e/pod".to_string(), name.to_string())]),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// The pod's sandbox security context, created on first use.
pub fn pod_security(cfg: &mut PodSandboxConfig) -> &mut LinuxSandboxSecurityContext {
    cfg.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// Sets the pod's PID namespace mode (POD, CONTAINER or NODE).
pub fn set_pid_mode(cfg: &mut PodSandboxConfig, mode: NamespaceMode) {
    pod_security(cfg)
        .namespace_options
        .get_or_insert_with(Default::default)
        .pid = mode as i32;
}

/// A container running `sh -c script` from `image`, logging to
/// `<name>/0.log` under the pod's log directory, tagged with `tag`.
pub fn container_config(name: &str, image: &str, script: &str, tag: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: spec(image),
        command: vec!["sh".into(), "-c".into(), script.into()],
        envs: vec![KeyValue {
            key: TAG_ENV.into(),
            value: tag.into(),
        }],
        log_path: format!("{name}/0.log"),
        labels: HashMap::from([("berth.e2e/container".to_string(), name.to_string())]),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// The container's security context, created on first use.
pub fn security(cfg: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    cfg.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// Sets `run_as_user`.
pub fn run_as_user(cfg: &mut ContainerConfig, uid: i64) {
    security(cfg).run_as_user = Some(Int64Value { value: uid });
}

/// Sets capabilities to add and drop.
pub fn capabilities(cfg: &mut ContainerConfig, add: &[&str], drop: &[&str]) {
    security(cfg).capabilities = Some(Capability {
        add_capabilities: add.iter().map(|s| s.to_string()).collect(),
        drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
        add_ambient_capabilities: vec![],
    });
}

/// The namespace options of a pod config, if set.
pub fn namespace_options(cfg: &PodSandboxConfig) -> Option<&NamespaceOption> {
    cfg.linux
        .as_ref()?
        .security_context
        .as_ref()?
        .namespace_options
        .as_ref()
}

/// RunPodSandbox that must succeed; returns the pod id.
pub async fn run_pod(c: &mut RuntimeClient, cfg: &PodSandboxConfig) -> String {
    let req = RunPodSandboxRequest {
        config: Some(cfg.clone()),
        runtime_handler: String::new(),
    };
    limited("RunPodSandbox", c.run_pod_sandbox(req))
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e:?}"))
        .into_inner()
        .pod_sandbox_id
}

/// StopPodSandbox.
pub async fn stop_pod(c: &mut RuntimeClient, id: &str) -> Result<(), Status> {
    let req = StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    };
    limited("StopPodSandbox", c.stop_pod_sandbox(req))
        .await
        .map(drop)
}

/// RemovePodSandbox.
pub async fn remove_pod(c: &mut RuntimeClient, id: &str) -> Result<(), Status> {
    let req = RemovePodSandboxRequest {
        pod_sandbox_id: id.into(),
    };
    limited("RemovePodSandbox", c.remove_pod_sandbox(req))
        .await
        .map(drop)
}

/// PodSandboxStatus; `verbose` fills the info map.
pub async fn pod_status(c: &mut RuntimeClient, id: &str) -> Result<PodSandboxStatus, Status> {
    let req = PodSandboxStatusRequest {
        pod_sandbox_id: id.into(),
        verbose: false,
    };
    limited("PodSandboxStatus", c.pod_sandbox_status(req))
        .await
        .map(|r| {
            r.into_inner()
                .status
                .expect("PodSandboxStatus has a status")
        })
}

/// ListPodSandbox without a filter.
pub async fn list_pods(c: &mut RuntimeClient) -> Vec<PodSandbox> {
    let req = ListPodSandboxRequest { filter: None };
    limited("ListPodSandbox", c.list_pod_sandbox(req))
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
}

/// CreateContainer.
pub async fn create(
    c: &mut RuntimeClient,
    pod_id: &str,
    cfg: &ContainerConfig,
    pod_cfg: &PodSandboxConfig,
) -> Result<String, Status> {
    let req = CreateContainerRequest {
        pod_sandbox_id: pod_id.into(),
        config: Some(cfg.clone()),
        sandbox_config: Some(pod_cfg.clone()),
    };
    limited("CreateContainer", c.create_container(req))
        .await
        .map(|r| r.into_inner().container_id)
}

/// StartContainer.
pub async fn start(c: &mut RuntimeClient, id: &str) -> Result<(), Status> {
    let req = StartContainerRequest {
        container_id: id.into(),
    };
    limited("StartContainer", c.start_container(req))
        .await
        .map(drop)
}

/// CreateContainer + StartContainer that must succeed; returns the id.
pub async fn run(
    c: &mut RuntimeClient,
    pod_id: &str,
    cfg: &ContainerConfig,
    pod_cfg: &PodSandboxConfig,
) -> String {
    let name = &cfg.metadata.as_ref().expect("metadata").name;
    let id = create(c, pod_id, cfg, pod_cfg)
        .await
        .unwrap_or_else(|e| panic!("CreateContainer {name}: {e:?}"));
    start(c, &id)
        .await
        .unwrap_or_else(|e| panic!("StartContainer {name}: {e:?}"));
    id
}

/// StopContainer with a timeout in seconds.
pub async fn stop(c: &mut RuntimeClient, id: &str, timeout: i64) -> Result<(), Status> {
    let req = StopContainerRequest {
        container_id: id.into(),
        timeout,
    };
    limited("StopContainer", c.stop_container(req))
        .await
        .map(drop)
}

/// RemoveContainer.
pub async fn remove(c: &mut RuntimeClient, id: &str) -> Result<(), Status> {
    let req = RemoveContainerRequest {
        container_id: id.into(),
    };
    limited("RemoveContainer", c.remove_container(req))
        .await
        .map(drop)
}

/// ContainerStatus.
pub async fn status(c: &mut RuntimeClient, id: &str) -> Result<ContainerStatus, Status> {
    let req = ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    };
    limited("ContainerStatus", c.container_status(req))
        .await
        .map(|r| r.into_inner().status.expect("ContainerStatus has a status"))
}

/// ContainerStatus that must succeed.
pub async fn status_ok(c: &mut RuntimeClient, id: &str) -> ContainerStatus {
    status(c, id)
        .await
        .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e:?}"))
}

/// Polls ContainerStatus until the container is in `state`.
pub async fn wait_state(c: &mut RuntimeClient, id: &str, state: ContainerState) -> ContainerStatus {
    let what = format!("container {id} to be {state:?}");
    wait_until(&what, STATE_LIMIT, || {
        let mut c = c.clone();
        let id = id.to_string();
        async move {
            let s = status_ok(&mut c, &id).await;
            (s.state == state as i32).then_some(s)
        }
    })
    .await
}

/// Waits until the container exited; returns its status.
pub async fn wait_exited(c: &mut RuntimeClient, id: &str) -> ContainerStatus {
    wait_state(c, id, ContainerState::ContainerExited).await
}

/// ListContainers with a filter (`None` = all).
pub async fn list_containers(
    c: &mut RuntimeClient,
    filter: Option<ContainerFilter>,
) -> Vec<k8s_cri::v1::Container> {
    let req = ListContainersRequest { filter };
    limited("ListContainers", c.list_containers(req))
        .await
        .expect("ListContainers")
        .into_inner()
        .containers
}

/// A filter on state only.
pub fn state_filter(state: ContainerState) -> Option<ContainerFilter> {
    Some(ContainerFilter {
        state: Some(ContainerStateValue {
            state: state as i32,
        }),
        ..Default::default()
    })
}

/// A filter on pod only.
pub fn pod_filter(pod_id: &str) -> Option<ContainerFilter> {
    Some(ContainerFilter {
        pod_sandbox_id: pod_id.into(),
        ..Default::default()
    })
}

/// ExecSync; `timeout` in seconds (0 = none).
pub async fn exec(
    c: &mut RuntimeClient,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<ExecSyncResponse, Status> {
    let req = ExecSyncRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout,
    };
    limited("ExecSync", c.exec_sync(req))
        .await
        .map(|r| r.into_inner())
}

/// `sh -c script` through ExecSync that must succeed with exit code 0;
/// returns stdout as text.
pub async fn sh(c: &mut RuntimeClient, id: &str, script: &str) -> String {
    let r = exec(c, id, &["sh", "-c", script], 0)
        .await
        .unwrap_or_else(|e| panic!("ExecSync {script:?} in {id}: {e:?}"));
    assert_eq!(
        r.exit_code,
        0,
        "ExecSync {script:?} in {id}: stdout {:?} stderr {:?}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8_lossy(&r.stdout).into_owned()
}

/// One record of a CRI container log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Unix nanoseconds of the RFC 3339 timestamp.
    pub time: i64,
    pub stream: String,
    pub partial: bool,
    pub msg: String,
}

/// Parses a CRI log file: `<RFC3339Nano> <stdout|stderr> <P|F> <msg>\n`
/// per line. Panics on any malformed line.
pub fn parse_log(text: &str) -> Vec<LogRecord> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a CRI log ends with a newline: {:?}",
        &text[text.len().saturating_sub(80)..]
    );
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let (ts, stream, tag) = (parts.next(), parts.next(), parts.next());
            let (Some(ts), Some(stream), Some(tag), Some(msg)) = (ts, stream, tag, parts.next())
            else {
                panic!("malformed CRI log line {line:?}");
            };
            let time = parse_rfc3339(ts)
                .unwrap_or_else(|| panic!("bad RFC 3339 timestamp {ts:?} in {line:?}"));
            assert!(
                stream == "stdout" || stream == "stderr",
                "bad stream in {line:?}"
            );
            assert!(tag == "P" || tag == "F", "bad tag in {line:?}");
            LogRecord {
                time,
                stream: stream.into(),
                partial: tag == "P",
                msg: msg.into(),
            }
        })
        .collect()
}

/// The full lines of one stream, partial records joined to their final one.
pub fn stream_lines(records: &[LogRecord], stream: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for r in records.iter().filter(|r| r.stream == stream) {
        cur.push_str(&r.msg);
        if !r.partial {
            out.push(std::mem::take(&mut cur));
        }
    }
    assert!(cur.is_empty(), "{stream} ends with a partial record");
    out
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to Unix nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &s[start..i];
        if frac.is_empty() || frac.len() > 9 {
            return None;
        }
        nanos = format!("{frac:0<9}").parse().ok()?;
    }
    let offset = match &s[i..] {
        "Z" => 0,
        z if z.len() == 6 && (z.starts_with('+') || z.starts_with('-')) => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            sign * (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(secs * 1_000_000_000 + nanos)
}
