//! Resource usage of containers and pods (cgroups, writable layer), the
//! resource updates and log reopening that act on running containers.

use crate::storage::usage::{dir_usage, DirUsage};
use std::collections::HashMap;
use std::sync::Mutex;

use k8s_cri::v1::LinuxContainerResources;

use super::records::{ContainerRecord, ContainerState};
use super::{Engine, Error};
use crate::cgroups::Stats;

/// One container's usage.
#[derive(Debug, Clone)]
pub struct Usage {
    pub cgroup: Stats,
    /// CPU use since the previous sample, in nanocores; `None` on the first sample.
    pub nano_cores: Option<u64>,
    pub layer_bytes: u64,
    pub layer_inodes: u64,
}

/// Previous CPU samples, for rates.
#[derive(Default)]
pub struct CpuSamples(Mutex<HashMap<String, (i64, u64)>>);

impl CpuSamples {
    fn rate(&self, id: &str, ts: i64, usage: u64) -> Option<u64> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let prev = m.insert(id.to_string(), (ts, usage));
        let (pts, pusage) = prev?;
        let dt = ts.checked_sub(pts).filter(|d| *d > 0)? as u128;
        let du = usage.checked_sub(pusage)? as u128;
        Some((du * 1_000_000_000 / dt) as u64)
    }
}

impl Engine {
    /// Usage of a container; `Ok(None)` when it has no cgroup (not running).
    pub fn container_usage(&self, rec: &ContainerRecord) -> Result<Option<Usage>, Error> {
        let h = self
            .cgroups
            .as_ref()
            .map_err(|e| Error::internal(format!("cgroups unavailable: {e}")))?;
        let cgroup = match h.stats(&rec.cgroups_path) {
            Ok(s) => s,
            Err(e) if e.kind() == crate::cgroups::CgroupErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::internal(format!(
                    "failed to read the cgroup of {}: {e}",
                    rec.id
                )))
            }
        };
        let nano_cores = self
            .cpu_samples
            .rate(&rec.id, cgroup.timestamp_ns, cgroup.cpu_usage_ns);
        let layer = dir_usage(&rec.layer_dir.join("upper"));
        let (layer_bytes, layer_inodes) = (layer.disk_bytes, layer.inodes);
        Ok(Some(Usage {
            cgroup,
            nano_cores,
            layer_bytes,
            layer_inodes,
        }))
    }

    /// What one container's writable layer holds (Docker's `SizeRw` is its
    /// `apparent_bytes`, CRI's stats its `disk_bytes`), walked off the
    /// async threads.
    pub async fn writable_layer_usage(&self, rec: &ContainerRecord) -> DirUsage {
        let upper = rec.layer_dir.join("upper");
        super::container::blocking(move || Ok(dir_usage(&upper)))
            .await
            .unwrap_or_default()
    }

    /// Bytes and inodes of every container's writable layer (under
    /// `<root>/containers`), for `ImageFsInfo.container_filesystems`.
    pub async fn writable_layers_usage(&self) -> Result<(u64, u64), Error> {
        let uppers: Vec<_> = self
            .store
            .list::<ContainerRecord>(super::CONTAINERS)?
            .into_iter()
            .map(|(_, c)| c.layer_dir.join("upper"))
            .collect();
        super::container::blocking(move || {
            Ok(uppers
                .iter()
                .map(|u| dir_usage(u))
                .fold(DirUsage::default(), |a, b| a + b))
            .map(|u| (u.disk_bytes, u.inodes))
        })
        .await
    }

    /// Pods and containers by state, live monitors and per-container usage, for `/metrics`.
    pub fn metrics_snapshot(&self) -> crate::metrics::RuntimeSnapshot {
        use super::records::PodState;
        let mut snap = crate::metrics::RuntimeSnapshot::default();
        let pods = self.pods().unwrap_or_default();
        let ready = pods.iter().filter(|p| p.state == PodState::Ready).count() as u64;
        snap.pods = vec![("ready", ready), ("notready", pods.len() as u64 - ready)];
        let containers = self.containers().unwrap_or_default();
        let count = |s: ContainerState| containers.iter().filter(|c| c.state == s).count() as u64;
        snap.containers = vec![
            ("created", count(ContainerState::Created)),
            ("running", count(ContainerState::Running)),
            ("exited", count(ContainerState::Exited)),
        ];
        snap.monitors = containers
            .iter()
            .filter(|c| c.monitor.is_some_and(|m| m.alive()))
            .count() as u64;
        for c in containers
            .iter()
            .filter(|c| c.state == ContainerState::Running)
        {
            let Ok(Some(u)) = self.container_usage(c) else {
                continue;
            };
            let pod = pods.iter().find(|p| p.id == c.pod_id);
            let meta = pod.and_then(|p| p.config.metadata.as_ref());
            snap.usage.push(crate::metrics::ContainerUsage {
                id: c.id.clone(),
                name: c
                    .config
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
                pod: meta.map(|m| m.name.clone()).unwrap_or_default(),
                namespace: meta.map(|m| m.namespace.clone()).unwrap_or_default(),
                cpu_seconds: u.cgroup.cpu_usage_ns as f64 / 1e9,
                memory_working_set_bytes: u.cgroup.memory_working_set_bytes as f64,
            });
        }
        snap
    }

    /// Applies new resources to a running or created container.
    pub async fn update_container_resources(
        &self,
        id: &str,
        res: &LinuxContainerResources,
    ) -> Result<(), Error> {
        let _g = self.locks.lock(id).await;
        let rec = self
            .refreshed(id)?
            .ok_or_else(|| Error::NotFound(format!("container {id} not found")))?;
        if rec.state == ContainerState::Exited {
            return Err(Error::FailedPrecondition(format!(
                "container {id} has exited"
            )));
        }
        let oci_res = crate::runtime::update_resources(res, self.host.swap_accounting)?;
        let mut json = serde_json::to_value(&oci_res).expect("resources serialise");
        if let Some(o) = json.as_object_mut() {
            o.remove("devices");
        }
        let path = rec.dir.join("resources-update.json");
        std::fs::write(&path, json.to_string())
            .map_err(|e| Error::io(format!("failed to write {}", path.display()), e))?;
        let done = self.oci(&rec.runtime_handler)?.update(id, &path).await;
        let _ = std::fs::remove_file(&path);
        done?;
        // What ContainerStatus reports from now on (read back from the cgroup
        // where it can be).
        let mut rec = self.container(id)?;
        rec.config
            .linux
            .get_or_insert_with(Default::default)
            .resources = Some(res.clone());
        self.put_container(&rec)
    }

    /// Asks the container's monitor to reopen its log file (after rotation).
    pub async fn reopen_container_log(&self, id: &str) -> Result<(), Error> {
        let rec = self.running(id)?;
        let monitor = rec.monitor.filter(|m| m.alive()).ok_or_else(|| {
            Error::FailedPrecondition(format!("the monitor of container {id} is gone"))
        })?;
        let Some(path) = rec.log_path.clone() else {
            return Ok(());
        };
        // Create the new file now, so it exists when the call returns; the
        // monitor opens the same path for appending.
        let new = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(format!("failed to create log {}", path.display()), e))?;
        let want = {
            use std::os::unix::fs::MetadataExt;
            let m = new
                .metadata()
                .map_err(|e| Error::io(format!("failed to stat {}", path.display()), e))?;
            (m.dev(), m.ino())
        };
        drop(new);
        // A v1 monitor answers once it holds the new file; one an older
        // berthd started (v0) is signalled and watched.
        if let Some(sock) = super::exec::attach_socket_path(&rec.dir).filter(|s| {
            crate::monitor::proto::Protocol::of_socket(s) == crate::monitor::proto::Protocol::V1
        }) {
            return crate::monitor::client::reopen_log(&sock)
                .await
                .map_err(|e| {
                    Error::internal(format!(
                        "the monitor of container {id} did not reopen {}: {e}",
                        path.display()
                    ))
                });
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(monitor.pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .map_err(|e| Error::io(format!("failed to signal the monitor of {id}"), e.into()))?;
        // Answer once the monitor really holds the new file.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if holds_only(monitor.pid, want, path.parent()) {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Err(Error::internal(format!(
            "the monitor of container {id} did not reopen {}",
            path.display()
        )))
    }
}

/// True if process `pid` has the file (dev, ino) open and no other file of
/// the same directory: the monitor has swapped to the new log and closed the old.
fn holds_only(pid: i32, want: (u64, u64), dir: Option<&std::path::Path>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let mut has_new = false;
    for e in rd.flatten() {
        let Ok(m) = std::fs::metadata(e.path()) else {
            continue;
        };
        if (m.dev(), m.ino()) == want {
            has_new = true;
        } else if m.is_file() {
            let target = std::fs::read_link(e.path()).ok();
            if target.as_deref().and_then(|t| t.parent()) == dir {
                return false;
            }
        }
    }
    has_new
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rate_needs_two_samples() {
        let s = CpuSamples::default();
        assert_eq!(s.rate("a", 1_000_000_000, 0), None);
        // 0.5 s of CPU over 1 s = half a core.
        assert_eq!(s.rate("a", 2_000_000_000, 500_000_000), Some(500_000_000));
        assert_eq!(
            s.rate("a", 2_000_000_000, 600_000_000),
            None,
            "no time passed"
        );
    }
}
