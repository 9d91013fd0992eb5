//! Runtime benchmark: how long berthd takes from RunPodSandbox to a
//! container's first log line, beside `crun run` of an equivalent bundle in
//! the same run, and how much memory the daemon and the per-container
//! monitors hold.
//!
//! * Latency, per iteration: RunPodSandbox → CreateContainer (`sh -c "echo
//!   ready; sleep 1000"`, a CRI log file) → StartContainer, then the log file
//!   is polled every 1 ms until the record `ready` appears. Stopping and
//!   removing the pod is not timed. The baseline is `crun run` of a bundle
//!   made by `crun spec` with the same busybox rootfs (a copy of berthd's
//!   snapshot) and the same command, no terminal, stdout on a pipe, timed
//!   until `ready` is read from that pipe.
//! * Memory: VmRSS of berthd idle (before any pod), then 50 pods with one
//!   running `sleep` container each: VmRSS of every `berthd monitor` process
//!   (mean, max) and of berthd.
//!
//! `cargo bench --bench runtime` runs the full measurement (50 iterations,
//! 50 pods). Under `cargo test` (no `--bench` argument) it only checks the
//! plumbing once with two pods, so the test suite stays quick.
//!
//! `BERTH_BENCH_LOG=FILE` keeps a copy of the daemon's (debug) log;
//! `BERTH_BENCH_ITERATIONS=N` changes the number of timed iterations.
//!
//! Pods use the kubelet's usual namespace modes (network and IPC per pod, PID
//! per container), so no infra process is started. Every pod the benchmark
//! made is removed before the daemon stops, also when a step fails.

#[path = "../support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, ListPodSandboxRequest, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopPodSandboxRequest,
};
use support::catalog;
use support::cri;
use support::daemon::Berthd;
use support::registry::TestRegistry;

type RuntimeClient =
    k8s_cri::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>;
type BenchResult<T> = Result<T, String>;

const ITERATIONS: usize = 50;
const PODS: usize = 50;
/// The command of the timed container; its first line is the signal.
const READY_CMD: &[&str] = &["sh", "-c", "echo ready; sleep 1000"];
/// The command of the containers the memory figures are taken with.
const SLEEP_CMD: &[&str] = &["sleep", "1000"];
/// Safety net against a hang; not a timing assertion.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// Safety net for one CRI call.
const CALL_LIMIT: Duration = Duration::from_secs(120);

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(run(full));
}

async fn run(full: bool) {
    let (iterations, pods) = if full { (ITERATIONS, PODS) } else { (1, 2) };
    // A longer run (e.g. to look for growth in the daemon) when asked.
    let iterations = std::env::var("BERTH_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(iterations);
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    eprintln!("runtime bench: {iterations} iterations, {pods} pods, {profile} build");

    let img = catalog::busybox().build();
    let reg = TestRegistry::start().await;
    let image = img.push_tag(&reg, "bench/busybox", "v1").await;
    let mut d = Berthd::start(&reg.insecure_yaml()).await;
    let mut ic = d.image_client().await;
    cri::pull(&mut ic, &image)
        .await
        .unwrap_or_else(|err| panic!("berthd pull: {err:?}\n{}", d.log()));
    let mut rc = d.runtime_client().await;
    let work = support::short_tempdir("rtb");

    let outcome = measure(&d, &mut rc, &img, &image, work.path(), iterations, pods).await;
    // Whatever happened, leave no pod (and so no monitor or container) behind.
    let cleaned = remove_all_pods(&mut rc).await;
    for left in leftovers(&d) {
        eprintln!("runtime bench: left behind after removing every pod: {left}");
    }
    let status = d.stop();
    drop(reg);
    if let Some(path) = std::env::var_os("BERTH_BENCH_LOG") {
        if let Err(e) = std::fs::write(&path, d.log()) {
            eprintln!("runtime bench: cannot keep the daemon log: {e}");
        }
    }
    match (outcome, cleaned) {
        (Ok(report), Ok(())) => {
            assert!(status.success(), "berthd exit on SIGTERM: {status}");
            print!("{report}");
        }
        (Err(e), _) | (Ok(_), Err(e)) => panic!("runtime bench: {e}\nberthd log:\n{}", d.log()),
    }
}

/// Runs every measurement and returns the printed report.
async fn measure(
    d: &Berthd,
    rc: &mut RuntimeClient,
    img: &support::images::BuiltImage,
    image: &str,
    work: &Path,
    iterations: usize,
    pods: usize,
) -> BenchResult<String> {
    let daemon_pid = d.pid();
    let idle_rss = rss_kib(daemon_pid)?;
    let idle_fds = open_fds(daemon_pid)?;

    // berthd: pod + container until the first log line.
    let mut phases = Phases::default();
    for i in 0..iterations {
        let p = time_berth(rc, image, work, i).await?;
        eprintln!(
            "  berthd #{i}: {:?} (run pod {:?}, create {:?}, start {:?}, log {:?}; teardown {:?})",
            p.total, p.run_pod, p.create, p.start, p.log, p.teardown
        );
        phases.push(p);
    }
    let idle_after_rss = rss_kib(daemon_pid)?;
    let idle_after_fds = open_fds(daemon_pid)?;

    // Baseline: crun run of an equivalent bundle.
    let chain = img.chain_ids();
    let snapshot = d
        .snapshot_dir(chain.last().expect("busybox has a layer"))
        .join("fs");
    let bundle = work.join("bundle");
    make_bundle(&snapshot, &bundle)?;
    let crun_root = work.join("crun-root");
    std::fs::create_dir_all(&crun_root).map_err(|e| format!("mkdir crun root: {e}"))?;
    let mut crun = Vec::new();
    for i in 0..iterations {
        let (b, r) = (bundle.clone(), crun_root.clone());
        let took = tokio::task::spawn_blocking(move || time_crun(&b, &r, i))
            .await
            .map_err(|e| format!("crun task: {e}"))??;
        eprintln!("  crun run #{i}: {took:?}");
        crun.push(took);
    }

    // Memory with `pods` running containers.
    for i in 0..pods {
        let pod = run_pod(rc, work, &format!("rss-{i}")).await?;
        let cid = create_container(rc, &pod, image, SLEEP_CMD).await?;
        call(
            "StartContainer",
            rc.start_container(StartContainerRequest { container_id: cid }),
        )
        .await?;
    }
    // Let the monitors settle (their output threads start, their answer is read).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let monitors = monitor_pids(&d.state())?;
    if monitors.len() != pods {
        return Err(format!(
            "found {} monitor processes for {pods} running containers",
            monitors.len()
        ));
    }
    let mut mon_rss = Vec::new();
    let mut mon_anon = Vec::new();
    let mut mon_pss = Vec::new();
    for pid in &monitors {
        mon_rss.push(rss_kib(*pid)?);
        mon_anon.push(status_kib(*pid, "RssAnon:")?);
        mon_pss.push(pss_kib(*pid).unwrap_or(0));
    }
    let busy_rss = rss_kib(daemon_pid)?;
    let busy_fds = open_fds(daemon_pid)?;

    let berth_total = phases.total.clone();
    let (bm, bp) = (median(&berth_total), p90(&berth_total));
    let (cm, cp) = (median(&crun), p90(&crun));
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len() as f64;
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "over {iterations} iterations, RunPodSandbox + CreateContainer + StartContainer until the first log line:"
    ));
    line(format!(
        "  berthd:            median {}  p90 {}",
        ms(bm),
        ms(bp)
    ));
    line(format!(
        "  crun run (bundle): median {}  p90 {}",
        ms(cm),
        ms(cp)
    ));
    line(format!(
        "  ratio berth/crun:  median {:.2}  p90 {:.2}",
        bm.as_secs_f64() / cm.as_secs_f64(),
        bp.as_secs_f64() / cp.as_secs_f64()
    ));
    line(format!(
        "  berthd phases (median): RunPodSandbox {}  CreateContainer {}  StartContainer {}  then to the log line {}",
        ms(median(&phases.run_pod)),
        ms(median(&phases.create)),
        ms(median(&phases.start)),
        ms(median(&phases.log))
    ));
    line(format!(
        "  not timed above: StopPodSandbox + RemovePodSandbox median {}  p90 {}",
        ms(median(&phases.teardown)),
        ms(p90(&phases.teardown))
    ));
    line(format!(
        "monitor RSS per running container ({} monitors): mean {}  max {}  (private RssAnon mean {}, PSS mean {})",
        monitors.len(),
        kib(mean(&mon_rss)),
        kib(*mon_rss.iter().max().unwrap_or(&0) as f64),
        kib(mean(&mon_anon)),
        kib(mean(&mon_pss))
    ));
    line(format!(
        "berthd RSS: idle {}  after the {iterations} iterations {}  with {pods} pods {}",
        kib(idle_rss as f64),
        kib(idle_after_rss as f64),
        kib(busy_rss as f64)
    ));
    line(format!(
        "berthd open fds: idle {idle_fds}  after the {iterations} iterations {idle_after_fds}  with {pods} pods {busy_fds}"
    ));
    Ok(out)
}

/// One berthd iteration's phases.
struct Phase {
    run_pod: Duration,
    create: Duration,
    start: Duration,
    log: Duration,
    total: Duration,
    teardown: Duration,
}

#[derive(Default)]
struct Phases {
    run_pod: Vec<Duration>,
    create: Vec<Duration>,
    start: Vec<Duration>,
    log: Vec<Duration>,
    total: Vec<Duration>,
    teardown: Vec<Duration>,
}

impl Phases {
    fn push(&mut self, p: Phase) {
        self.run_pod.push(p.run_pod);
        self.create.push(p.create);
        self.start.push(p.start);
        self.log.push(p.log);
        self.total.push(p.total);
        self.teardown.push(p.teardown);
    }
}

/// RunPodSandbox → CreateContainer → StartContainer → `ready` in the log;
/// then the pod is stopped and removed (not timed).
async fn time_berth(
    rc: &mut RuntimeClient,
    image: &str,
    work: &Path,
    i: usize,
) -> BenchResult<Phase> {
    let name = format!("lat-{i}");
    let t0 = Instant::now();
    let pod = run_pod(rc, work, &name).await?;
    let t1 = Instant::now();
    let cid = create_container(rc, &pod, image, READY_CMD).await?;
    let t2 = Instant::now();
    call(
        "StartContainer",
        rc.start_container(StartContainerRequest { container_id: cid }),
    )
    .await?;
    let t3 = Instant::now();
    let log = log_dir(work, &name).join("c/0.log");
    loop {
        if has_ready_record(&log) {
            break;
        }
        if t3.elapsed() > READY_LIMIT {
            return Err(format!(
                "no `ready` record in {} after {READY_LIMIT:?}: {:?}",
                log.display(),
                support::read_text(&log)
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let t4 = Instant::now();
    remove_pod(rc, &pod).await?;
    Ok(Phase {
        run_pod: t1 - t0,
        create: t2 - t1,
        start: t3 - t2,
        log: t4 - t3,
        total: t4 - t0,
        teardown: t4.elapsed(),
    })
}

/// Whether the CRI log holds the full stdout record `ready`.
fn has_ready_record(log: &Path) -> bool {
    support::read_text(log).lines().any(|l| {
        let mut f = l.splitn(4, ' ');
        let (_ts, stream, tag, msg) = (f.next(), f.next(), f.next(), f.next());
        stream == Some("stdout") && tag == Some("F") && msg == Some("ready")
    })
}

fn log_dir(work: &Path, pod_name: &str) -> PathBuf {
    work.join("logs").join(pod_name)
}

fn pod_config(work: &Path, name: &str) -> PodSandboxConfig {
    let mode = |m: NamespaceMode| m as i32;
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "bench".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir(work, name).display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: mode(NamespaceMode::Pod),
                    pid: mode(NamespaceMode::Container),
                    ipc: mode(NamespaceMode::Pod),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// RunPodSandbox; returns the pod id and the config it was made with.
async fn run_pod(
    rc: &mut RuntimeClient,
    work: &Path,
    name: &str,
) -> BenchResult<(String, PodSandboxConfig)> {
    let config = pod_config(work, name);
    let req = RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    };
    let id = call("RunPodSandbox", rc.run_pod_sandbox(req))
        .await?
        .pod_sandbox_id;
    Ok((id, config))
}

async fn create_container(
    rc: &mut RuntimeClient,
    (pod_id, pod_config): &(String, PodSandboxConfig),
    image: &str,
    cmd: &[&str],
) -> BenchResult<String> {
    let req = CreateContainerRequest {
        pod_sandbox_id: pod_id.clone(),
        config: Some(ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: "c/0.log".into(),
            ..Default::default()
        }),
        sandbox_config: Some(pod_config.clone()),
    };
    Ok(call("CreateContainer", rc.create_container(req))
        .await?
        .container_id)
}

async fn remove_pod(
    rc: &mut RuntimeClient,
    (id, _): &(String, PodSandboxConfig),
) -> BenchResult<()> {
    remove_pod_id(rc, id).await
}

async fn remove_pod_id(rc: &mut RuntimeClient, id: &str) -> BenchResult<()> {
    let pod_sandbox_id = id.to_string();
    call(
        "StopPodSandbox",
        rc.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.clone(),
        }),
    )
    .await?;
    call(
        "RemovePodSandbox",
        rc.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id }),
    )
    .await?;
    Ok(())
}

/// What is still there after every pod was removed: mounts under the
/// daemon's directory and entries of its per-pod and per-container dirs.
fn leftovers(d: &Berthd) -> Vec<String> {
    let mut out = Vec::new();
    let dir = d.dir().display().to_string();
    for line in support::read_text(Path::new("/proc/self/mountinfo")).lines() {
        if let Some(point) = line.split(' ').nth(4) {
            if point.starts_with(&dir) {
                out.push(format!("mount {point}"));
            }
        }
    }
    for sub in [
        d.state().join("pods"),
        d.state().join("containers"),
        d.root().join("containers"),
    ] {
        if let Ok(rd) = std::fs::read_dir(&sub) {
            out.extend(rd.flatten().map(|e| e.path().display().to_string()));
        }
    }
    out
}

/// Removes every pod the daemon knows (all of them are this benchmark's).
async fn remove_all_pods(rc: &mut RuntimeClient) -> BenchResult<()> {
    let pods = call(
        "ListPodSandbox",
        rc.list_pod_sandbox(ListPodSandboxRequest { filter: None }),
    )
    .await?
    .items;
    let mut first_err = Ok(());
    for p in pods {
        if let Err(e) = remove_pod_id(rc, &p.id).await {
            eprintln!("  cleanup of pod {}: {e}", p.id);
            if first_err.is_ok() {
                first_err = Err(e);
            }
        }
    }
    first_err
}

async fn call<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> BenchResult<T> {
    match tokio::time::timeout(CALL_LIMIT, fut).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(format!("{what}: {:?}: {}", s.code(), s.message())),
        Err(_) => Err(format!("{what} did not answer within {CALL_LIMIT:?}")),
    }
}

/// An OCI bundle: a copy of the busybox snapshot as `rootfs` and the config
/// `crun spec` writes, with the benchmark's command, no terminal and a
/// writable rootfs (as berthd's containers have).
fn make_bundle(snapshot: &Path, bundle: &Path) -> BenchResult<()> {
    std::fs::create_dir_all(bundle).map_err(|e| format!("mkdir bundle: {e}"))?;
    let rootfs = bundle.join("rootfs");
    run_ok(
        Command::new("cp").arg("-a").arg(snapshot).arg(&rootfs),
        "cp -a snapshot",
    )?;
    run_ok(
        Command::new("crun").arg("spec").arg("--bundle").arg(bundle),
        "crun spec",
    )?;
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let mut spec: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("crun spec JSON: {e}"))?;
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(READY_CMD);
    spec["root"]["readonly"] = false.into();
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&spec).expect("spec serialises"),
    )
    .map_err(|e| format!("write {}: {e}", path.display()))
}

/// `crun run` of the bundle until `ready` is read from its stdout; then the
/// container is killed and deleted (not timed).
fn time_crun(bundle: &Path, root: &Path, i: usize) -> BenchResult<Duration> {
    let id = format!("berth-bench-{}-{i}", std::process::id());
    let start = Instant::now();
    let mut child = Command::new("crun")
        .arg("--root")
        .arg(root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn crun run: {e}"))?;
    let stdout = child.stdout.take();
    let mut guard = support::ChildGuard::new(child);
    let stdout = stdout.ok_or_else(|| "crun run has no stdout pipe".to_string())?;
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let read = reader.read_line(&mut line);
    let took = start.elapsed();
    let crun = |args: &[&str]| {
        Command::new("crun")
            .arg("--root")
            .arg(root)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    };
    let _ = crun(&["kill", &id, "KILL"]);
    let exited = guard.wait_timeout(Duration::from_secs(10));
    let _ = crun(&["delete", "--force", &id]);
    match read {
        Ok(_) if line.trim_end() == "ready" => {}
        other => return Err(format!("crun run #{i}: read {other:?}, line {line:?}")),
    }
    if exited.is_none() {
        return Err(format!("crun run #{i} did not exit after SIGKILL"));
    }
    Ok(took)
}

fn run_ok(cmd: &mut Command, what: &str) -> BenchResult<()> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Pids of the `berth-monitor monitor <state>/…/monitor.pb` (or `berthd
/// monitor …`) processes of the
/// daemon whose state dir is `state` (other daemons' monitors are skipped).
fn monitor_pids(state: &Path) -> BenchResult<Vec<u32>> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir("/proc").map_err(|e| format!("read /proc: {e}"))?;
    for entry in rd.filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_monitor = args.len() >= 3
            && (args[0].ends_with(b"berthd") || args[0].ends_with(b"berth-monitor"))
            && args[1] == b"monitor"
            && Path::new(&*String::from_utf8_lossy(args[2])).starts_with(state);
        if is_monitor {
            out.push(pid);
        }
    }
    Ok(out)
}

/// A `/proc/<pid>/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> BenchResult<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
    kib_field(&text, field).ok_or_else(|| format!("no {field} in {path}"))
}

/// How many file descriptors `pid` has open.
fn open_fds(pid: u32) -> BenchResult<usize> {
    let path = format!("/proc/{pid}/fd");
    std::fs::read_dir(&path)
        .map(|rd| rd.count())
        .map_err(|e| format!("read {path}: {e}"))
}

fn rss_kib(pid: u32) -> BenchResult<u64> {
    status_kib(pid, "VmRSS:")
}

/// Proportional set size (shared pages split among their users).
fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    kib_field(&text, "Pss:")
}

fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn median(v: &[Duration]) -> Duration {
    percentile(v, 50)
}

fn p90(v: &[Duration]) -> Duration {
    percentile(v, 90)
}

/// Nearest-rank percentile.
fn percentile(v: &[Duration], pct: usize) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    let rank = (pct * s.len()).div_ceil(100).max(1);
    s[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn kib(k: f64) -> String {
    format!("{:.1} MiB", k / 1024.0)
}
