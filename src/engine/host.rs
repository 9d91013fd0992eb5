//! The engine's host operations behind small traits: the OCI runtime's
//! life-cycle calls, the monitor that creates a container, a pod's pinned
//! namespaces, files and CNI attachments, and container rootfs mounts — plus
//! the start-up probes of the host (facts, runtime features).
//!
//! [`HostOps::real`] is what berthd runs: each real implementation only
//! delegates to the existing code ([`super::oci::OciRuntime`],
//! [`Engine::spawn_monitor`], `crate::sandbox`, [`crate::network::Cni`],
//! [`super::rootfs`]). Unit tests give [`Engine::open_with`] fakes instead
//! (`host_fake.rs`), so engine logic — create rollback, exits and restart
//! policies, recovery at start-up — runs without root, crun or CNI plugins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_cri::v1::PodSandboxConfig;

use super::features::HandlerFeatures;
use super::oci::OciRuntime;
use super::records::ProcessId;
use super::{Engine, Error, HostFacts};
use crate::monitor::MonitorConfig;
use crate::network::{Attachment, Cni, CniError, CniResult, NetworkConfigList};
use crate::runtime::userns::PodUserNamespace;
use crate::sandbox::{NsKinds, PinnedNamespaces, PodFiles, SandboxError};

/// The OCI runtime calls the engine makes after a monitor created a container.
pub trait Runtime: Send + Sync {
    /// Starts a created container.
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>>;
    /// Signals the container's init (`all`: every process in it).
    fn kill<'a>(
        &'a self,
        id: &'a str,
        signal: &'a str,
        all: bool,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// Deletes the runtime's state of a container, killing it first; a
    /// container the runtime does not know is deleted already.
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>>;
    /// The runtime's status (`created`, `running`, `stopped`…), `None` when
    /// it does not know the container.
    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<String>>;
    /// Freezes (`pause = true`) or thaws a running container.
    fn set_paused<'a>(&'a self, id: &'a str, pause: bool) -> BoxFuture<'a, Result<(), Error>>;
    /// Whether the runtime still keeps state of the container (one whose
    /// process died without a `delete` does, and its cgroup with it).
    fn has_state(&self, id: &str) -> bool;
}

impl Runtime for OciRuntime {
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(OciRuntime::start(self, id))
    }

    fn kill<'a>(
        &'a self,
        id: &'a str,
        signal: &'a str,
        all: bool,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(OciRuntime::kill(self, id, signal, all))
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(OciRuntime::delete(self, id))
    }

    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(OciRuntime::status(self, id))
    }

    fn has_state(&self, id: &str) -> bool {
        OciRuntime::has_state(self, id)
    }

    fn set_paused<'a>(&'a self, id: &'a str, pause: bool) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let verb = if pause { "pause" } else { "resume" };
            self.run_simple(format!("{verb} container {id}"), &[verb, id])
                .await
        })
    }
}

/// Creating a container: its monitor is started and runs the runtime's
/// `create`; the answer is the container's process and the monitor's.
pub trait Monitors: Send + Sync {
    /// Starts the monitor of `cfg` (writing `monitor.json` in its bundle,
    /// which a restart reads again) and waits for the created container.
    fn spawn<'a>(
        &'a self,
        engine: &'a Engine,
        cfg: &'a MonitorConfig,
    ) -> BoxFuture<'a, Result<(ProcessId, ProcessId), Error>>;
}

/// The real monitor: [`Engine::spawn_monitor`].
struct RealMonitors;

impl Monitors for RealMonitors {
    fn spawn<'a>(
        &'a self,
        engine: &'a Engine,
        cfg: &'a MonitorConfig,
    ) -> BoxFuture<'a, Result<(ProcessId, ProcessId), Error>> {
        Box::pin(engine.spawn_monitor(cfg))
    }
}

/// A pod's network side: its pinned namespaces and pod files (hosts,
/// resolv.conf, hostname, /dev/shm), and its CNI attachments. The
/// namespace and file calls block (they run in `blocking`).
pub trait PodNetwork: Send + Sync {
    /// Pins new namespaces of the kinds in `want` under `dir`.
    fn pin(
        &self,
        dir: &Path,
        want: NsKinds,
        hostname: Option<&str>,
    ) -> Result<PinnedNamespaces, SandboxError>;
    /// True while `path` still pins a namespace.
    fn is_pinned(&self, path: &Path) -> bool;
    /// Undoes [`PodNetwork::pin`]; idempotent.
    fn unpin(&self, pinned: &PinnedNamespaces) -> Result<(), SandboxError>;
    /// Writes the pod's files under `dir` (and mounts its /dev/shm).
    fn write_files(
        &self,
        dir: &Path,
        cfg: &PodSandboxConfig,
        host_network: bool,
    ) -> Result<PodFiles, SandboxError>;
    /// Unmounts what [`PodNetwork::write_files`] mounted; idempotent.
    fn unmount_files(&self, files: &PodFiles) -> Result<(), SandboxError>;
    /// CNI ADD of `att` to `net` (a failed ADD undoes itself).
    fn add<'a>(
        &'a self,
        cni: &'a Cni,
        net: &'a NetworkConfigList,
        att: &'a Attachment,
    ) -> BoxFuture<'a, Result<CniResult, CniError>>;
    /// CNI DEL of every attachment of a pod; idempotent.
    fn del<'a>(
        &'a self,
        cni: &'a Cni,
        pod_id: &'a str,
        netns: Option<&'a Path>,
    ) -> BoxFuture<'a, Result<(), CniError>>;
    /// CNI DEL of one interface of a pod.
    fn del_interface<'a>(
        &'a self,
        cni: &'a Cni,
        pod_id: &'a str,
        ifname: &'a str,
        netns: Option<&'a Path>,
    ) -> BoxFuture<'a, Result<(), CniError>>;
    /// CNI CHECK of a pod's attachments.
    fn check<'a>(
        &'a self,
        cni: &'a Cni,
        pod_id: &'a str,
        netns: &'a Path,
    ) -> BoxFuture<'a, Result<(), CniError>>;
    /// The pods the CNI cache holds attachments of.
    fn attached_ids<'a>(&'a self, cni: &'a Cni) -> BoxFuture<'a, Result<Vec<String>, CniError>>;
}

/// The real pod network: `crate::sandbox` and [`Cni`].
struct RealPodNetwork;

impl PodNetwork for RealPodNetwork {
    fn pin(
        &self,
        dir: &Path,
        want: NsKinds,
        hostname: Option<&str>,
    ) -> Result<PinnedNamespaces, SandboxError> {
        crate::sandbox::pin(dir, want, hostname)
    }

    fn is_pinned(&self, path: &Path) -> bool {
        crate::sandbox::is_pinned(path)
    }

    fn unpin(&self, pinned: &PinnedNamespaces) -> Result<(), SandboxError> {
        crate::sandbox::unpin(pinned)
    }

    fn write_files(
        &self,
        dir: &Path,
        cfg: &PodSandboxConfig,
        host_network: bool,
    ) -> Result<PodFiles, SandboxError> {
        crate::sandbox::write_pod_files(dir, cfg, host_network)
    }

    fn unmount_files(&self, files: &PodFiles) -> Result<(), SandboxError> {
        crate::sandbox::unmount_pod_files(files)
    }

    fn add<'a>(
        &'a self,
        cni: &'a Cni,
        net: &'a NetworkConfigList,
        att: &'a Attachment,
    ) -> BoxFuture<'a, Result<CniResult, CniError>> {
        Box::pin(cni.add(net, att))
    }

    fn del<'a>(
        &'a self,
        cni: &'a Cni,
        pod_id: &'a str,
        netns: Option<&'a Path>,
    ) -> BoxFuture<'a, Result<(), CniError>> {
        Box::pin(cni.del(pod_id, netns))
    }

    fn del_interface<'a>(
        &'a self,
        cni: &'a Cni,
        pod_id: &'a str,
        ifname: &'a str,
        netns: Option<&'a Path>,
    ) -> BoxFuture<'a, Result<(), CniError>> {
        Box::pin(cni.del_interface(pod_id, ifname, netns))
    }

    fn check<'a>(
        &'a self,
        cni: &'a Cni,
        pod_id: &'a str,
        netns: &'a Path,
    ) -> BoxFuture<'a, Result<(), CniError>> {
        Box::pin(cni.check(pod_id, netns))
    }

    fn attached_ids<'a>(&'a self, cni: &'a Cni) -> BoxFuture<'a, Result<Vec<String>, CniError>> {
        Box::pin(cni.attached_ids())
    }
}

/// Container rootfs mounts (blocking calls).
pub trait Mounts: Send + Sync {
    /// Mounts `lowers` (bottom first) under `upper` at `target` (idmapped
    /// for a user-namespaced pod).
    fn overlay(
        &self,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
        userns: Option<&PodUserNamespace>,
    ) -> Result<(), Error>;
    /// Mounts `lowers` read-only at `target` (an image volume).
    fn read_only(&self, lowers: &[PathBuf], target: &Path) -> Result<(), Error>;
    /// Unmounts `target`; not mounted is fine.
    fn unmount(&self, target: &Path) -> Result<(), Error>;
    /// True when something is mounted at `path`.
    fn is_mounted(&self, path: &Path) -> bool;
}

/// The real mounts: [`super::rootfs`].
struct RealMounts;

impl Mounts for RealMounts {
    fn overlay(
        &self,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
        userns: Option<&PodUserNamespace>,
    ) -> Result<(), Error> {
        super::rootfs::mount_overlay_as(lowers, upper, work, target, userns)
    }

    fn read_only(&self, lowers: &[PathBuf], target: &Path) -> Result<(), Error> {
        super::rootfs::mount_read_only(lowers, target)
    }

    fn unmount(&self, target: &Path) -> Result<(), Error> {
        super::rootfs::unmount(target)
    }

    fn is_mounted(&self, path: &Path) -> bool {
        crate::storage::is_mounted(path)
    }
}

/// What the engine asks the host once at start-up.
pub trait Probe: Send + Sync {
    /// Capabilities, oom_score_adj floor, swap accounting, AppArmor.
    fn facts(&self) -> HostFacts;
    /// What each handler's runtime can do.
    fn features<'a>(
        &'a self,
        runtimes: &'a BTreeMap<String, OciRuntime>,
    ) -> BoxFuture<'a, BTreeMap<String, HandlerFeatures>>;
}

/// The real probes: the host's /proc and /sys, the runtime binaries.
struct RealProbe;

impl Probe for RealProbe {
    fn facts(&self) -> HostFacts {
        HostFacts::detect()
    }

    fn features<'a>(
        &'a self,
        runtimes: &'a BTreeMap<String, OciRuntime>,
    ) -> BoxFuture<'a, BTreeMap<String, HandlerFeatures>> {
        Box::pin(super::detect_features(runtimes))
    }
}

/// Every host operation the engine's life cycle makes.
#[derive(Clone)]
pub struct HostOps {
    /// The runtime every handler's calls go to; `None`: each handler's own
    /// binary ([`OciRuntime`]).
    pub runtime: Option<Arc<dyn Runtime>>,
    pub monitors: Arc<dyn Monitors>,
    pub network: Arc<dyn PodNetwork>,
    pub mounts: Arc<dyn Mounts>,
    pub probe: Arc<dyn Probe>,
}

impl HostOps {
    /// What berthd runs: the real host.
    pub fn real() -> Self {
        HostOps {
            runtime: None,
            monitors: Arc::new(RealMonitors),
            network: Arc::new(RealPodNetwork),
            mounts: Arc::new(RealMounts),
            probe: Arc::new(RealProbe),
        }
    }

    /// The life-cycle runtime of a handler whose binary is `oci`.
    pub(crate) fn runtime_of(&self, oci: &OciRuntime) -> Arc<dyn Runtime> {
        match &self.runtime {
            Some(r) => r.clone(),
            None => Arc::new(oci.clone()),
        }
    }
}

impl Engine {
    /// The life-cycle runtime of a handler ("" = the default): start, kill,
    /// delete, status, pause. (Exec, update and checkpoint use
    /// [`Engine::oci`], the binary itself.)
    pub fn runtime(&self, handler: &str) -> Result<Arc<dyn Runtime>, Error> {
        let name = self.handler_name(handler);
        self.lifecycle
            .get(name)
            .cloned()
            .ok_or_else(|| Error::InvalidArgument(format!("unknown runtime handler {name:?}")))
    }

    /// Creates a container by starting its monitor (see [`Monitors`]).
    pub(crate) async fn create_by_monitor(
        &self,
        cfg: &MonitorConfig,
    ) -> Result<(ProcessId, ProcessId), Error> {
        self.ops.monitors.spawn(self, cfg).await
    }
}
