//! Chaos: berthd is killed with SIGKILL at a seeded random moment during
//! `docker run -d`, a CRI pod/container life cycle (RunPodSandbox,
//! CreateContainer, StartContainer, StopContainer, RemoveContainer,
//! RemovePodSandbox) or a pull, restarted, and checked: every listed
//! container is in a true state, no Docker container's pod is listed
//! without its container, and after removing everything listed nothing is
//! left on the host (see [`super::sweep::leftovers`]).

use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;

use super::docker::DockerEnv;
use super::fuzz::Rng;
use super::pods;

/// What a chaos run saw.
#[derive(Debug, Default)]
pub struct Chaos {
    pub rounds: usize,
    /// Rounds by operation killed.
    pub by_op: std::collections::BTreeMap<&'static str, usize>,
    /// Broken invariants after a restart: (round, what).
    pub violations: Vec<(usize, String)>,
    /// Left on the host after everything listed was removed.
    pub leftovers: Vec<String>,
    /// Containers listed after the last restart, by state.
    pub listed: std::collections::BTreeMap<String, usize>,
    pub elapsed: Duration,
    /// Where the daemon's log was kept when something was found.
    pub log: Option<std::path::PathBuf>,
}

impl Chaos {
    pub fn report(&self) -> String {
        format!(
            "rounds: {} {:?}\ncontainers listed at the end by state: {:?}\nviolations: {}\n{}\nleft behind: {:?}\nelapsed: {:.1} s\n{}",
            self.rounds,
            self.by_op,
            self.listed,
            self.violations.len(),
            self.violations
                .iter()
                .map(|(r, v)| format!("  round {r}: {v}"))
                .collect::<Vec<_>>()
                .join("\n"),
            self.leftovers,
            self.elapsed.as_secs_f64(),
            self.log
                .as_ref()
                .map(|p| format!("daemon log kept at {}\n", p.display()))
                .unwrap_or_default()
        )
    }
}

/// A CRI life cycle, step by step, until the daemon goes away.
async fn cri_cycle(e: &DockerEnv, n: usize) {
    let Ok(ch) = tokio::time::timeout(Duration::from_secs(5), e.d.try_cri_channel()).await else {
        return;
    };
    let Ok(ch) = ch else { return };
    let mut rt = k8s_cri::v1::runtime_service_client::RuntimeServiceClient::new(ch);
    let logs = e.dir().join("chaos-logs");
    let _ = std::fs::create_dir_all(&logs);
    let pc = pods::pod_config(&format!("chaos-{n}"), &logs);
    let Ok(p) = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pc.clone()),
            runtime_handler: String::new(),
        })
        .await
    else {
        return;
    };
    let pod = p.into_inner().pod_sandbox_id;
    let cc = pods::container_config("c", &e.busybox, "exec sleep 1000", &pods::unique("chaos"));
    let Ok(c) = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cc),
            sandbox_config: Some(pc),
        })
        .await
    else {
        return;
    };
    let id = c.into_inner().container_id;
    let _ = rt
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await;
    let _ = rt
        .stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await;
    let _ = rt
        .remove_container(cri::RemoveContainerRequest { container_id: id })
        .await;
    let _ = rt
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await;
    let _ = rt
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await;
}

/// Checks what the daemon lists after a restart.
async fn check(e: &DockerEnv) -> Vec<String> {
    let mut bad = Vec::new();
    let ids = e.docker(&["ps", "-aq", "--no-trunc"]);
    if ids.code != 0 {
        return vec![format!("docker ps failed: {}", ids.stderr.trim())];
    }
    let mut pods_with_containers = std::collections::HashSet::new();
    let mut rt = e.d.runtime_client().await;
    let listed = rt
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .map(|r| r.into_inner().containers)
        .unwrap_or_default();
    for c in &listed {
        pods_with_containers.insert(c.pod_sandbox_id.clone());
    }
    for id in ids.out().lines().filter(|l| !l.is_empty()) {
        let st = e.docker(&["inspect", "-f", "{{.State.Status}} {{.State.Pid}}", id]);
        let out = st.out().to_string();
        let mut f = out.split(' ');
        let (status, pid) = (f.next().unwrap_or(""), f.next().unwrap_or("0"));
        let pid: i32 = pid.parse().unwrap_or(0);
        match status {
            "running" => {
                if pid <= 0 || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    bad.push(format!("{id} listed running without a process ({out})"));
                }
            }
            "created" | "exited" | "paused" => {}
            other => bad.push(format!("{id} in state {other:?}")),
        }
    }
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .map(|r| r.into_inner().items)
        .unwrap_or_default();
    for p in pods {
        let docker = p
            .labels
            .get("io.berth.owner")
            .is_some_and(|o| o == "docker");
        if docker && !pods_with_containers.contains(&p.id) {
            bad.push(format!("Docker pod {} listed without a container", p.id));
        }
    }
    bad
}

/// Runs `rounds` kill -9 rounds with `seed`.
pub async fn run(seed: u64, rounds: usize) -> Chaos {
    let started = Instant::now();
    let mut e = DockerEnv::new("").await;
    let mut r = Rng::new(seed);
    let mut out = Chaos::default();
    for round in 0..rounds {
        // Each operation in turn; the moment of the kill is the random part.
        let op = ["docker run -d", "cri life cycle", "pull"][round % 3];
        *out.by_op.entry(op).or_default() += 1;
        let delay = Duration::from_millis(r.below(600) as u64);
        match op {
            "docker run -d" => {
                let mut cli = e.command(&["run", "-d", &e.busybox, "sleep", "1000"]);
                cli.stdout(Stdio::null()).stderr(Stdio::null());
                let mut child = cli.spawn().expect("spawn docker");
                tokio::time::sleep(delay).await;
                e.d.kill9();
                let _ = tokio::task::spawn_blocking(move || child.wait()).await;
            }
            "cri life cycle" => {
                let _ = tokio::time::timeout(delay, cri_cycle(&e, round)).await;
                e.d.kill9();
            }
            _ => {
                let img = super::catalog::busybox()
                    .label("chaos", &round.to_string())
                    .build();
                let name = img
                    .push_tag(&e.reg, "test/chaos", &format!("r{round}"))
                    .await;
                let mut images = e.d.image_client().await;
                let _ = tokio::time::timeout(delay, super::cri::pull(&mut images, &name)).await;
                e.d.kill9();
            }
        }
        e.d.restart().await;
        for v in check(&e).await {
            out.violations.push((round, format!("after {op}: {v}")));
        }
        out.rounds += 1;
    }
    let cs = e.docker(&["ps", "-aq", "--no-trunc"]);
    for id in cs.out().lines().filter(|l| !l.is_empty()) {
        let st = e.docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} (exit {{.State.ExitCode}} {{.State.Error}})",
            id,
        ]);
        let key = match st.out() {
            s if s.starts_with("running") => "running".to_string(),
            s => s.to_string(),
        };
        *out.listed.entry(key).or_default() += 1;
    }
    let (_, problems) = super::sweep::remove_everything(&e, &[]).await;
    out.leftovers = problems;
    out.leftovers.extend(super::sweep::leftovers(&e.d));
    if !out.leftovers.is_empty() || !out.violations.is_empty() {
        // The daemon's log goes with its temp dir: keep it for the report.
        let kept =
            std::env::temp_dir().join(format!("berth-chaos-{seed}-{}.log", std::process::id()));
        if std::fs::write(&kept, e.d.log()).is_ok() {
            out.log = Some(kept);
        }
    }
    out.elapsed = started.elapsed();
    out
}
