//! After a crash: what a create left half-made, found at start-up and
//! undone before anything is served.
//!
//! A pod or container is recorded only once it is whole, so a daemon killed
//! in the middle of RunPodSandbox, CreateContainer or `docker run` leaves
//! pieces with no record: a directory under `<state>/pods` or
//! `<state>/containers`, pinned namespaces and pod mounts, an overlay rootfs,
//! a monitor holding a container the runtime created (its init waiting for
//! `start` forever), a CNI attachment (released from the CNI cache by
//! [`Engine::release_orphan_networks`]). Nothing lists them; this removes
//! them. Likewise a Docker container's pod whose container was never
//! recorded is invisible to `docker ps` and is removed, and a container
//! recorded `Created` that the runtime already started is `Running`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::container::blocking;
use super::docker::OWNER_LABEL;
use super::records::{ContainerRecord, ContainerState, PodRecord};
use super::{rootfs, Engine, CONTAINERS, PODS};

impl Engine {
    /// Removes every half-made pod and container (see the module doc).
    pub(crate) async fn collect_orphans(&self) {
        let known = |table| -> HashSet<String> {
            match table {
                CONTAINERS => self
                    .store
                    .list::<ContainerRecord>(CONTAINERS)
                    .map(|v| v.into_iter().map(|(k, _)| k).collect())
                    .unwrap_or_default(),
                _ => self
                    .store
                    .list::<PodRecord>(PODS)
                    .map(|v| v.into_iter().map(|(k, _)| k).collect())
                    .unwrap_or_default(),
            }
        };
        for (table, what) in [(CONTAINERS, "containers"), (PODS, "pods")] {
            let recorded = known(table);
            let dir = self.config.state.join(what);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if recorded.contains(&id) {
                    continue;
                }
                warn!(id = %id, kind = what, "removing what a crash left of an unrecorded create");
                self.remove_orphan(&id, &e.path()).await;
                if table == CONTAINERS {
                    let layer = self.config.root.join("containers").join(&id);
                    if let Err(e) = blocking(move || rootfs::remove_dir(&layer)).await {
                        warn!(container = %id, error = %e, "failed to remove a writable layer");
                    }
                }
            }
        }
        // A background removal (RemoveContainer) interrupted after its state
        // directory went can still leave the runtime's state or the
        // writable layer behind.
        let recorded: HashSet<String> = known(CONTAINERS).union(&known(PODS)).cloned().collect();
        for (name, oci) in &self.runtimes {
            let Ok(rt) = self.runtime(name) else {
                continue;
            };
            for id in child_names(&oci.root) {
                if recorded.contains(&id) || !is_id(&id) {
                    continue;
                }
                info!(container = %id, handler = %name, "deleting leftover runtime state");
                if let Err(e) = rt.delete(&id).await {
                    warn!(container = %id, error = %e, "failed to delete leftover runtime state");
                }
            }
        }
        let layers = self.config.root.join("containers");
        for id in child_names(&layers) {
            if recorded.contains(&id) || !is_id(&id) {
                continue;
            }
            info!(container = %id, "removing a leftover writable layer");
            let layer = layers.join(&id);
            if let Err(e) = blocking(move || rootfs::remove_dir(&layer)).await {
                warn!(container = %id, error = %e, "failed to remove a writable layer");
            }
        }
    }

    /// Ends the monitors and runtime state of `id` and unmounts and removes `dir`.
    async fn remove_orphan(&self, id: &str, dir: &Path) {
        for pid in monitors_under(dir) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for rt in self.lifecycle.values() {
            let _ = rt.kill(id, "KILL", true).await;
            let _ = rt.delete(id).await;
        }
        let dir = dir.to_path_buf();
        let res = blocking(move || {
            unmount_under(&dir)?;
            rootfs::remove_dir(&dir)
        })
        .await;
        if let Err(e) = res {
            warn!(id = %id, error = %e, "failed to clean up after an unrecorded create");
        }
    }

    /// A container recorded `Created` whose init the runtime reports
    /// running was started just before a crash: it is `Running`.
    pub(crate) async fn reconcile_started(&self) {
        let Ok(all) = self.store.list::<ContainerRecord>(CONTAINERS) else {
            return;
        };
        for (id, mut rec) in all {
            if rec.state != ContainerState::Created {
                continue;
            }
            let Ok(rt) = self.runtime(&rec.runtime_handler) else {
                continue;
            };
            if rt.status(&id).await.as_deref() == Some("running") {
                rec.state = ContainerState::Running;
                rec.started_at = super::records::now_nanos();
                info!(container = %id, "container was started before a crash; recording it running");
                if let Err(e) = self.put_container(&rec) {
                    warn!(container = %id, error = %e, "failed to record a started container");
                }
            }
        }
    }

    /// Removes Docker-owned pods that hold no container: a `docker run`
    /// cut short between its pod and its container (no Docker call lists
    /// or removes such a pod).
    pub(crate) async fn remove_empty_docker_pods(&self) {
        let pods = self.pods().unwrap_or_default();
        let used: HashSet<String> = self
            .store
            .list::<ContainerRecord>(CONTAINERS)
            .map(|v| v.into_iter().map(|(_, c)| c.pod_id).collect())
            .unwrap_or_default();
        for p in pods {
            let docker = p
                .config
                .labels
                .get(OWNER_LABEL)
                .is_some_and(|o| o == "docker");
            if docker && !used.contains(&p.id) {
                warn!(pod = %p.id, "removing a Docker container's pod that has no container");
                if let Err(e) = self.remove_pod_sandbox(&p.id).await {
                    warn!(pod = %p.id, error = %e, "failed to remove an empty Docker pod");
                }
            }
        }
    }
}

/// Pids of `berthd monitor <dir>/…` processes.
fn monitors_under(dir: &Path) -> Vec<i32> {
    let want = dir.to_string_lossy().into_owned() + "/";
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
            args.get(1).is_some_and(|a| *a == b"monitor")
                && args.get(2).is_some_and(|a| a.starts_with(want.as_bytes()))
        })
        .collect()
}

/// The names of a directory's subdirectories (none when it is absent).
fn child_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A container or pod id as berth makes them (64 hex digits).
fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Detaches every mount at or below `dir`, deepest first.
fn unmount_under(dir: &Path) -> Result<(), super::Error> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for p in points {
        // Stacked mounts come off one at a time.
        for _ in 0..16 {
            match nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) => continue,
                Err(_) => break,
            }
        }
    }
    Ok(())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some(v) = s
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape("/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape("/end\\"), PathBuf::from("/end\\"));
    }
}
