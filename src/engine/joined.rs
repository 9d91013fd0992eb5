//! Namespaces a pod's containers take from another container instead of
//! the pod's own: the sidecar pattern (Docker's `--network container:X`,
//! `--pid container:X`, `--ipc container:X`).
//!
//! A pod that joins X's network pins no network or UTS namespace of its own
//! and has no CNI attachment: its containers run in the netns and UTS
//! namespace pinned for X's pod, with X's hostname, `/etc/hosts` and
//! `/etc/resolv.conf`. Joining X's IPC namespace takes X's pod's pinned IPC
//! namespace and `/dev/shm`. Joining X's PID namespace takes the namespace
//! of X's running process, which a restart of X replaces: the path is
//! looked up again for every (re)create of the joining container.
//!
//! X must be running when a joining container starts (Docker's rule). X may
//! be removed meanwhile: the namespaces live on while a joiner's processes
//! are in them, and the joiner's next start is refused.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::records::{ContainerRecord, ContainerState, PodRecord};
use super::{Engine, Error};

/// The containers (full ids) whose namespaces a pod's containers join.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinedNamespaces {
    /// Network and UTS namespace, hostname, /etc/hosts and resolv.conf.
    #[serde(default)]
    pub network: Option<String>,
    /// PID namespace (the target's running process).
    #[serde(default)]
    pub pid: Option<String>,
    /// IPC namespace and /dev/shm.
    #[serde(default)]
    pub ipc: Option<String>,
}

impl JoinedNamespaces {
    /// Whether nothing is joined.
    pub fn is_empty(&self) -> bool {
        self.network.is_none() && self.pid.is_none() && self.ipc.is_none()
    }
}

/// What a joining container's spec takes from its targets.
#[derive(Debug, Default)]
pub(crate) struct JoinedPaths {
    pub netns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    pub hostname: Option<String>,
    pub hosts: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
    pub hostname_file: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub shm: Option<PathBuf>,
    pub pid_ns: Option<PathBuf>,
}

/// `/proc/<pid>/ns/pid` of a running container.
fn running_pid_ns(rec: &ContainerRecord) -> Option<PathBuf> {
    match rec.pid {
        Some(p) if rec.state == ContainerState::Running && p.alive() => {
            Some(PathBuf::from(format!("/proc/{}/ns/pid", p.pid)))
        }
        _ => None,
    }
}

fn is_running(rec: &ContainerRecord) -> bool {
    running_pid_ns(rec).is_some()
}

impl Engine {
    /// Checks the targets of a pod about to be made: each exists, is not in
    /// the pod (a container cannot join itself) and has the namespace asked
    /// for; a PID target must be running (its process holds the namespace).
    pub(crate) fn check_join_targets(&self, j: &JoinedNamespaces) -> Result<(), Error> {
        let paths = self.joined_paths(j, false)?;
        if j.network.is_some() && paths.netns.is_none() {
            return Err(Error::InvalidArgument(format!(
                "cannot join the network of container {}: it has no network namespace of its own (host network or joined)",
                j.network.as_deref().unwrap_or_default()
            )));
        }
        if j.ipc.is_some() && paths.ipcns.is_none() {
            return Err(Error::InvalidArgument(format!(
                "cannot join the IPC namespace of container {}: it has none of its own",
                j.ipc.as_deref().unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// Refuses the start of a container of pod `pod_id` while a container
    /// whose namespaces it joins is not running (Docker's words).
    pub(crate) fn check_joined_running(&self, pod_id: &str) -> Result<(), Error> {
        match self.pod(pod_id) {
            Ok(pod) if !pod.joined.is_empty() => self.joined_paths(&pod.joined, true).map(drop),
            _ => Ok(()),
        }
    }

    /// The namespace paths and files of a pod's join targets. With
    /// `running`, every target must be running; else only a PID target.
    pub(crate) fn joined_paths(
        &self,
        j: &JoinedNamespaces,
        running: bool,
    ) -> Result<JoinedPaths, Error> {
        let mut out = JoinedPaths::default();
        let target = |id: &str, what: &str| -> Result<(ContainerRecord, PodRecord), Error> {
            let not_running = || {
                Error::FailedPrecondition(format!(
                    "cannot join {what} of a non running container: {id}"
                ))
            };
            let rec = self.refreshed(id)?.ok_or_else(not_running)?;
            if running && !is_running(&rec) {
                return Err(not_running());
            }
            let pod = self.pod(&rec.pod_id).map_err(|_| not_running())?;
            Ok((rec, pod))
        };
        if let Some(id) = &j.network {
            let (_, pod) = target(id, "network")?;
            // A target that joined a third container's network: the chain
            // ends at the container that owns the namespace, as in Docker.
            let owner = match &pod.joined.network {
                Some(next) if next != id => self
                    .refreshed(next)?
                    .and_then(|r| self.pod(&r.pod_id).ok())
                    .unwrap_or(pod),
                _ => pod,
            };
            out.netns = owner.netns.clone();
            out.utsns = owner.utsns.clone();
            out.hostname = Some(owner.config.hostname.clone());
            out.hosts = owner.hosts.clone();
            out.resolv_conf = owner.resolv_conf.clone();
            out.hostname_file = owner.hostname_file.clone();
        }
        if let Some(id) = &j.ipc {
            let (_, pod) = target(id, "IPC")?;
            out.ipcns = pod.ipcns.clone();
            out.shm = pod.shm.clone();
        }
        if let Some(id) = &j.pid {
            let (rec, _) = target(id, "PID")?;
            out.pid_ns = Some(running_pid_ns(&rec).ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "cannot join PID of a non running container: {id}"
                ))
            })?);
        }
        Ok(out)
    }

    /// Before a joining container is created again (a restart): its bundle
    /// names the PID namespace of the target's process at the last create;
    /// the target's current process is named instead.
    pub(crate) async fn refresh_joined_pid(
        &self,
        pod_id: &str,
        bundle: &Path,
    ) -> Result<(), Error> {
        let pod = self.pod(pod_id)?;
        let Some(ns) = self.joined_paths(&pod.joined, true)?.pid_ns else {
            return Ok(());
        };
        let file = bundle.join("config.json");
        super::container::blocking(move || {
            let bad =
                |e: String| Error::internal(format!("failed to update {}: {e}", file.display()));
            let mut spec = oci_spec::runtime::Spec::load(&file).map_err(|e| bad(e.to_string()))?;
            if let Some(linux) = spec.linux_mut().as_mut() {
                if let Some(list) = linux.namespaces_mut().as_mut() {
                    for n in list.iter_mut() {
                        if n.typ() == oci_spec::runtime::LinuxNamespaceType::Pid {
                            n.set_path(Some(ns.clone()));
                        }
                    }
                }
            }
            spec.save(&file).map_err(|e| bad(e.to_string()))
        })
        .await
    }
}
