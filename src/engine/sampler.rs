//! What the host tells of a running container beyond its CRI stats, for
//! Docker's `stats` and `top`: its cgroup in detail, the host's CPU time and
//! memory (`/proc/stat`, `/proc/meminfo`), the container's network counters
//! (`/proc/<pid>/net/dev`, parsed as for CRI's pod stats), the pids of its cgroup and the host's `ps`.
//! The Docker façade renders these; it reads no host file itself.

use crate::cgroups::{CgroupErrorKind, Detail};
use crate::sandbox::{parse_net_dev, InterfaceCounters};

use super::records::{now_nanos, ContainerRecord, ContainerState};
use super::{Engine, Error};

/// One sample of a running container.
#[derive(Debug, Clone)]
pub struct ContainerSample {
    /// When it was read (nanoseconds since the epoch).
    pub read: i64,
    pub detail: Detail,
    /// The host's CPU time (ns) and number of CPUs, read right after the
    /// cgroup so the two deltas line up.
    pub system_cpu: Option<(u64, u32)>,
    /// The host's memory in bytes (0 when unknown).
    pub machine_memory: u64,
    /// Interfaces other than the loopback.
    pub networks: Vec<InterfaceCounters>,
}

impl Engine {
    /// Samples a container; `None` when it is not running (or its cgroup
    /// is gone). Blocking: it reads files.
    pub fn sample_container(&self, id: &str) -> Result<Option<ContainerSample>, Error> {
        let Some(rec) = self.refreshed(id)? else {
            return Ok(None);
        };
        if rec.state != ContainerState::Running {
            return Ok(None);
        }
        let h = self
            .cgroups
            .as_ref()
            .map_err(|e| Error::internal(format!("cgroups unavailable: {e}")))?;
        let read = now_nanos();
        let detail = match h.detail(&rec.cgroups_path) {
            Ok(x) => x,
            Err(e) if e.kind() == CgroupErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::internal(format!(
                    "failed to read the cgroup of container {id}: {e}"
                )))
            }
        };
        let system_cpu = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| system_cpu(&t));
        let networks = rec
            .pid
            .filter(|p| p.alive())
            .and_then(|p| std::fs::read_to_string(format!("/proc/{}/net/dev", p.pid)).ok())
            .map(|t| parse_net_dev(&t))
            .unwrap_or_default();
        Ok(Some(ContainerSample {
            read,
            detail,
            system_cpu,
            machine_memory: machine_memory(),
            networks,
        }))
    }

    /// Every pid in a container's cgroup and its sub-cgroups, sorted.
    pub fn container_pids(&self, rec: &ContainerRecord) -> Result<Vec<i32>, Error> {
        let h = self
            .cgroups
            .as_ref()
            .map_err(|e| Error::internal(format!("cgroups unavailable: {e}")))?;
        let dir = ["pids", "memory", "cpuacct", "cpu", "name=systemd"]
            .iter()
            .map(|c| h.resolve_dir(if h.is_v2() { "" } else { c }, &rec.cgroups_path))
            .find(|p| p.is_dir())
            .ok_or_else(|| {
                Error::internal(format!("the cgroup of container {} is gone", rec.id))
            })?;
        let mut pids = Vec::new();
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            if let Ok(t) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
            if let Ok(rd) = std::fs::read_dir(&dir) {
                stack.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Runs the host's `ps` with `args` (checked by the caller), stdin closed.
    pub async fn host_ps(&self, args: &[&str]) -> Result<std::process::Output, Error> {
        tokio::process::Command::new("ps")
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| Error::internal(format!("ps: {e}")))
    }
}

/// The host's CPU time (nanoseconds, as Docker computes it from the first
/// seven fields of `/proc/stat`'s `cpu` line) and its number of CPUs.
pub fn system_cpu(proc_stat: &str) -> Option<(u64, u32)> {
    let mut total = None;
    let mut cpus = 0u32;
    for line in proc_stat.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            break;
        };
        if rest.starts_with(' ') {
            let ticks: Option<Vec<u64>> = rest
                .split_whitespace()
                .take(7)
                .map(|v| v.parse().ok())
                .collect();
            let ticks = ticks.filter(|t| t.len() == 7)?;
            total = Some(ticks.iter().sum::<u64>() * 1_000_000_000 / 100);
        } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
            cpus += 1;
        }
    }
    Some((total?, cpus))
}

/// What Docker's `/info` tells of the node, read when asked.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    /// `MemTotal` in bytes.
    pub mem_total: u64,
    /// `PRETTY_NAME` of /etc/os-release ("Linux" without one).
    pub os_name: String,
    /// `net.ipv4.ip_forward` is on.
    pub ipv4_forwarding: bool,
    /// The daemon's open file descriptors.
    pub open_fds: usize,
    /// A stable id of this daemon: `<root>/engine-id`, made on first use.
    pub engine_id: String,
}

impl Engine {
    /// The node's facts for Docker's `/info` (a few small files).
    pub fn node_facts(&self) -> NodeFacts {
        NodeFacts {
            mem_total: machine_memory(),
            os_name: std::fs::read_to_string("/etc/os-release")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                        .map(|v| v.trim_matches('"').to_string())
                })
                .unwrap_or_else(|| "Linux".into()),
            ipv4_forwarding: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .is_ok_and(|s| s.trim() == "1"),
            open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()),
            engine_id: engine_id(&self.config.root),
        }
    }
}

/// A stable daemon id, in Docker's UUID-like shape: kept in
/// `<root>/engine-id` (written through a rename), made on first use.
fn engine_id(root: &std::path::Path) -> String {
    let path = root.join("engine-id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        if !s.trim().is_empty() {
            return s.trim().to_string();
        }
    }
    let raw = super::records::new_id();
    let id = format!(
        "{}-{}-{}-{}-{}",
        &raw[0..8],
        &raw[8..12],
        &raw[12..16],
        &raw[16..20],
        &raw[20..32]
    );
    let tmp = root.join("engine-id.tmp");
    if std::fs::write(&tmp, &id).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
    id
}

/// The host's memory, Docker's `limit` for a container without one.
fn machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_cpu_is_nanoseconds_of_the_first_seven_fields() {
        let stat = "cpu  100 2 30 400 5 6 7 8 0 0\n\
                    cpu0 50 1 15 200 2 3 3 4 0 0\n\
                    cpu1 50 1 15 200 3 3 4 4 0 0\n\
                    intr 1 2 3\n";
        let (ns, cpus) = system_cpu(stat).unwrap();
        assert_eq!(ns, 550 * 10_000_000);
        assert_eq!(cpus, 2);
        assert!(system_cpu("intr 1\n").is_none());
    }

    #[test]
    fn the_engine_id_is_made_once_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let id = engine_id(d.path());
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.matches('-').count(), 4, "{id}");
        assert_eq!(engine_id(d.path()), id);
        assert!(!d.path().join("engine-id.tmp").exists());
    }
}
