//! Removing everything a daemon lists, then looking on the host for what
//! it left behind: the check shared by the fuzzer and the chaos test.

use k8s_cri::v1 as cri;

use super::daemon::Berthd;
use super::docker::DockerEnv;

/// Removes every container, pod, volume, user network and image the two
/// doors list. Returns what was not among `fixtures` (objects the run
/// made) and what could not be removed.
pub async fn remove_everything(e: &DockerEnv, fixtures: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut made, mut problems) = (Vec::new(), Vec::new());
    let listed = e.docker(&["ps", "-aq", "--no-trunc"]);
    for id in listed.out().lines().filter(|l| !l.is_empty()) {
        if !fixtures.iter().any(|t| t == id) {
            made.push(format!("container {id}"));
        }
        let r = e.docker(&["rm", "-f", id]);
        if r.code != 0 {
            problems.push(format!("container {id} not removable: {}", r.stderr.trim()));
        }
    }
    let mut rt = e.d.runtime_client().await;
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .map(|r| r.into_inner().items)
        .unwrap_or_default();
    for p in pods {
        made.push(format!("pod {}", p.id));
        let _ = rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await;
        if let Err(err) = rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await
        {
            problems.push(format!("pod {} not removable: {err:?}", p.id));
        }
    }
    for v in e.docker(&["volume", "ls", "-q"]).out().lines() {
        if !fixtures.iter().any(|t| t == v) {
            made.push(format!("volume {v}"));
        }
        e.docker(&["volume", "rm", "-f", v]);
    }
    let nets = e.docker(&["network", "ls", "--format", "{{.Name}}"]);
    for n in nets.out().lines() {
        if !matches!(n, "bridge" | "host" | "none") {
            made.push(format!("network {n}"));
            e.docker(&["network", "rm", n]);
        }
    }
    for i in e.docker(&["images", "-q", "--no-trunc"]).out().lines() {
        e.docker(&["rmi", "-f", i]);
    }
    (made, problems)
}

/// What is left of a daemon's objects once nothing is listed: state dirs,
/// snapshots, mounts under its dir, processes naming its dir (monitors,
/// runtime children), cgroups named after ids its log mentions.
pub fn leftovers(d: &Berthd) -> Vec<String> {
    let mut out = Vec::new();
    let dir = d.dir().to_path_buf();
    let dir_s = dir.to_string_lossy().into_owned();
    for sub in ["containers", "pods"] {
        for ent in std::fs::read_dir(d.state().join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(format!("state/{sub}/{}", ent.file_name().to_string_lossy()));
        }
    }
    let snaps = d.snapshot_entries();
    if !snaps.is_empty() {
        out.push(format!("snapshots: {snaps:?}"));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for m in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
        if m.starts_with(&dir_s) && !m.ends_with("/state/runtime") {
            out.push(format!("mount {m}"));
        }
    }
    let me = d.pid_if_running();
    for (p, cmd) in super::host::processes_mentioning(&dir_s) {
        if Some(p as u32) != me {
            out.push(format!("process {p}: {cmd}"));
        }
    }
    // Ids this daemon logged; a cgroup directory named after one is its.
    let log = d.log();
    let ids: std::collections::HashSet<&str> = log
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 64)
        .collect();
    for root in [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup",
    ] {
        cgroups_named(std::path::Path::new(root), &ids, 0, &mut out);
    }
    out
}

fn cgroups_named(
    dir: &std::path::Path,
    ids: &std::collections::HashSet<&str>,
    depth: usize,
    out: &mut Vec<String>,
) {
    if depth > 4 {
        return;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let bare = name
            .trim_start_matches("crun-")
            .trim_start_matches("berth-")
            .trim_end_matches(".scope");
        if ids.contains(bare) {
            out.push(format!("cgroup {}", e.path().display()));
        } else {
            cgroups_named(&e.path(), ids, depth + 1, out);
        }
    }
}
