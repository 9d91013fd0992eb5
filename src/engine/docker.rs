//! Operations the Docker façade needs beyond CRI's life cycle: names, starting
//! an exited container again, pause/unpause, kill with a signal, rename, and
//! the events every container change publishes.
//!
//! A Docker container is a one-container pod sandbox labelled
//! [`OWNER_LABEL`]`=docker`; its Docker name and create request live in the
//! container's annotations, so CRI sees an ordinary pod and container.

use std::path::PathBuf;

use tracing::info;

use super::container::blocking;
use super::events::Event;
use super::records::{ContainerRecord, ContainerState, PodRecord};
use super::{Engine, Error};
use crate::monitor::MonitorConfig;

/// Pod label naming the front door that made the pod (`docker`).
pub const OWNER_LABEL: &str = "io.berth.owner";
/// Container annotation: the Docker name, without the leading `/`.
pub const NAME_ANNOTATION: &str = "io.berth.docker.name";
/// The event attribute naming a container event's pod sandbox.
pub const POD_ATTRIBUTE: &str = "io.berth.pod";
/// Container annotation: the Docker create request (JSON), as received.
pub const CONFIG_ANNOTATION: &str = "io.berth.docker.config";
/// Container annotation: the signal that stops it (`SIGQUIT`, `9`), over the image's.
pub const STOP_SIGNAL_ANNOTATION: &str = "io.berth.stop-signal";
/// Pod annotation: `none` = a network namespace with only loopback (no CNI).
pub const NETWORK_ANNOTATION: &str = "io.berth.network";
/// Pod annotation: the id of the user network named by [`NETWORK_ANNOTATION`].
pub const NETWORK_ID_ANNOTATION: &str = "io.berth.network.id";
/// Pod annotation: the aliases (JSON list) of the container on its first
/// network (`--network-alias`, `EndpointsConfig.Aliases`).
pub const NETWORK_ALIASES_ANNOTATION: &str = "io.berth.network.aliases";
/// Pod annotation: the IPv4 address asked for on the first network (`--ip`).
pub const NETWORK_IP_ANNOTATION: &str = "io.berth.network.ip";

impl Engine {
    /// The Docker name of a container: its own, or for a container made
    /// through CRI the dockershim form `k8s_<ctr>_<pod>_<ns>_<uid>_<attempt>`.
    pub fn container_name(&self, rec: &ContainerRecord) -> String {
        if let Some(n) = rec.config.annotations.get(NAME_ANNOTATION) {
            return n.clone();
        }
        let pod = self.pod(&rec.pod_id).ok();
        dockershim_name(rec, pod.as_ref())
    }

    /// Finds a container by full id, then name (with or without the leading
    /// `/`), then unique id prefix — Docker's order. `NotFound` as Docker
    /// words it; a prefix of several ids is `InvalidArgument`.
    pub fn find_container(&self, name_or_id: &str) -> Result<ContainerRecord, Error> {
        let want = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
        let missing = || Error::NotFound(format!("No such container: {name_or_id}"));
        if want.is_empty() {
            return Err(missing());
        }
        // The common case, a full id, is one record (brought up to date
        // with its exit, as every record listed below is).
        if want.len() == 64 {
            if let Some(c) = self.refreshed(want)? {
                return Ok(c);
            }
        }
        let all = self.containers()?;
        if let Some(c) = all.iter().find(|c| self.container_name(c) == want) {
            return Ok(c.clone());
        }
        let mut hits = all.iter().filter(|c| c.id.starts_with(want));
        match (hits.next(), hits.next()) {
            (Some(c), None) => Ok(c.clone()),
            (Some(_), Some(_)) => Err(Error::InvalidArgument(format!(
                "multiple IDs found with provided prefix: {name_or_id}"
            ))),
            _ => Err(missing()),
        }
    }

    /// Publishes a container event with Docker's attributes (name, image, labels).
    pub(crate) fn emit_container(
        &self,
        action: &str,
        rec: &ContainerRecord,
        extra: &[(&str, &str)],
    ) {
        let mut ev = Event::new("container", action, &rec.id)
            .with("name", self.container_name(rec))
            .with("image", &rec.image_name)
            .with(POD_ATTRIBUTE, &rec.pod_id);
        for (k, v) in &rec.config.labels {
            ev = ev.with(k, v);
        }
        for (k, v) in extra {
            ev = ev.with(*k, *v);
        }
        self.events.emit(ev);
        // What a network's names are changes with these (see `dns`).
        if matches!(action, "create" | "start" | "die" | "rename" | "destroy") {
            self.container_networks_changed(rec);
        }
    }

    /// Renames a container (the Docker name annotation).
    pub async fn rename_container(&self, id: &str, name: &str) -> Result<(), Error> {
        let _g = self.locks.lock(id).await;
        let mut rec = self.container(id)?;
        let old = self.container_name(&rec);
        rec.config
            .annotations
            .insert(NAME_ANNOTATION.into(), name.to_string());
        self.put_container(&rec)?;
        self.emit_container("rename", &rec, &[("oldName", &format!("/{old}"))]);
        Ok(())
    }

    /// Sends `signal` (a name like `TERM` or a number) to a running container's init.
    pub async fn kill_container(&self, id: &str, signal: &str) -> Result<(), Error> {
        let _g = self.locks.lock(id).await;
        let rec = self.running(id)?;
        self.runtime(&rec.runtime_handler)?
            .kill(id, signal, false)
            .await
            .map_err(|e| not_running_or(&rec, e))?;
        let sig = signal.trim_start_matches("SIG").to_string();
        self.emit_container("kill", &rec, &[("signal", &sig)]);
        Ok(())
    }

    /// Freezes (`pause = true`) or thaws a running container.
    pub async fn set_paused(&self, id: &str, pause: bool) -> Result<(), Error> {
        let _g = self.locks.lock(id).await;
        let mut rec = self.running(id)?;
        if rec.paused == pause {
            return Err(Error::FailedPrecondition(if pause {
                format!("container {id} is already paused")
            } else {
                format!("container {id} is not paused")
            }));
        }
        self.runtime(&rec.runtime_handler)?
            .set_paused(id, pause)
            .await
            .map_err(|e| not_running_or(&rec, e))?;
        rec.paused = pause;
        self.put_container(&rec)?;
        self.emit_container(if pause { "pause" } else { "unpause" }, &rec, &[]);
        Ok(())
    }

    /// Starts an exited container again with the same rootfs, spec, monitor
    /// settings and log file (Docker's `start` of a stopped container). A
    /// start by the user sets the restart count back to 0, as Docker's does.
    pub async fn restart_container(&self, id: &str) -> Result<(), Error> {
        self.start_again(id, false).await
    }

    /// Starts an exited container again by its restart policy: as
    /// [`Engine::restart_container`], counting the restart in the record
    /// (Docker's `RestartCount`, which `on-failure:N` compares with N).
    pub async fn restart_by_policy(&self, id: &str) -> Result<(), Error> {
        self.start_again(id, true).await
    }

    async fn start_again(&self, id: &str, by_policy: bool) -> Result<(), Error> {
        {
            let _g = self.locks.lock(id).await;
            let rec = self
                .refreshed(id)?
                .ok_or_else(|| Error::NotFound(format!("container {id} not found")))?;
            if rec.state != ContainerState::Exited {
                return Err(Error::FailedPrecondition(format!(
                    "container {id} is {:?}, not exited",
                    rec.state
                )));
            }
            self.check_joined_running(&rec.pod_id)?;
            crate::metrics::global().monitor_event("restart");
            let restart_count = if by_policy {
                rec.restart_count.saturating_add(1)
            } else {
                0
            };
            // A start (the user's, or the daemon's for `always` at its own
            // start) ends a stop by the user.
            let rec = ContainerRecord {
                restart_count,
                stopped_by_user: false,
                ..rec
            };
            if let Err(e) = self.recreate(rec).await {
                self.cancel_attach_waiters(id);
                return Err(e);
            }
            info!(container = %id, "container created again for a restart");
        }
        self.start_container(id).await
    }

    /// A new monitor (and `crun create`) for a container with none, from
    /// the monitor settings it was created with; the record is `Created`
    /// again. The caller holds the container's lock.
    pub(crate) async fn recreate(&self, rec: ContainerRecord) -> Result<ContainerRecord, Error> {
        let id = rec.id.clone();
        let id = id.as_str();
        let pod = self.pod(&rec.pod_id)?;
        if pod.state != super::records::PodState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "the pod sandbox of container {id} is not ready"
            )));
        }
        self.runtime(&rec.runtime_handler)?.delete(id).await?;
        // A container whose monitor an older berthd started gets a v1 one.
        let cfg = MonitorConfig::for_respawn(&rec.dir).map_err(|e| {
            Error::internal(format!("failed to read the monitor config of {id}: {e}"))
        })?;
        self.refresh_joined_pid(&rec.pod_id, &cfg.bundle).await?;
        let _ = std::fs::remove_file(rec.exit_file());
        // After a host reboot the rootfs mount is gone: mount it again.
        let rootfs = rec.rootfs();
        if !self.ops.mounts.is_mounted(&rootfs) {
            let lowers: Vec<PathBuf> = rec
                .snapshots
                .iter()
                .map(|k| self.images.snapshots().fs_path(k))
                .collect();
            let (u, w) = (rec.layer_dir.join("upper"), rec.layer_dir.join("work"));
            let (r, mounts) = (rootfs.clone(), self.ops.mounts.clone());
            blocking(move || mounts.overlay(&lowers, &u, &w, &r, None)).await?;
        }
        // After a host reboot, volumes with driver options are unmounted.
        self.prepare_volumes(&rec.config.mounts, None, vec![])
            .await?;
        let (pid, monitor) = self.create_by_monitor(&cfg).await?;
        let rec = ContainerRecord {
            state: ContainerState::Created,
            pid: Some(pid),
            monitor: Some(monitor),
            exit_code: 0,
            finished_at: 0,
            reason: String::new(),
            message: String::new(),
            paused: false,
            ..rec
        };
        self.put_container(&rec)?;
        Ok(rec)
    }

    /// Records a container's new resources (after `update` applied them).
    /// With `docker_config`, the stored Docker create request is replaced too.
    pub fn set_container_resources(
        &self,
        id: &str,
        res: k8s_cri::v1::LinuxContainerResources,
        docker_config: Option<String>,
    ) -> Result<(), Error> {
        let mut rec = self.container(id)?;
        rec.config
            .linux
            .get_or_insert_with(Default::default)
            .resources = Some(res);
        if let Some(c) = docker_config {
            rec.config.annotations.insert(CONFIG_ANNOTATION.into(), c);
        }
        self.put_container(&rec)
    }

    /// The init binary of `docker run --init` (`docker.init`), checked to exist.
    pub fn docker_init(&self) -> Result<PathBuf, Error> {
        let p = self.config.docker.init.clone();
        if !p.is_file() {
            return Err(Error::FailedPrecondition(format!(
                "--init needs a static init binary at {} (docker.init; Debian's tini package has /usr/bin/tini-static)",
                p.display()
            )));
        }
        Ok(p)
    }

    /// Replaces the stored Docker create request of a container (e.g. a new
    /// restart policy from `docker update`), in any state.
    pub async fn set_docker_config(&self, id: &str, docker_config: String) -> Result<(), Error> {
        let _g = self.locks.lock(id).await;
        let mut rec = self.container(id)?;
        rec.config
            .annotations
            .insert(CONFIG_ANNOTATION.into(), docker_config);
        self.put_container(&rec)
    }

    /// A container's root, checked to be its mounted overlay (not the empty
    /// directory under the bundle): what `docker cp` reads and writes.
    pub fn mounted_rootfs(&self, rec: &ContainerRecord) -> Result<PathBuf, Error> {
        use std::os::unix::fs::MetadataExt;
        let root = rec.rootfs();
        let mounted = match (std::fs::metadata(&root), std::fs::metadata(&rec.dir)) {
            (Ok(r), Ok(d)) => r.is_dir() && r.dev() != d.dev(),
            _ => false,
        };
        if !mounted {
            return Err(Error::FailedPrecondition(format!(
                "the root filesystem of container {} is not mounted",
                rec.id
            )));
        }
        Ok(root)
    }

    /// Appends `lines` to a pod's /etc/hosts (Docker's `ExtraHosts`).
    pub fn append_pod_hosts(&self, pod_id: &str, lines: &str) -> Result<(), Error> {
        use std::io::Write;
        let pod = self.pod(pod_id)?;
        let Some(hosts) = pod.hosts else {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {pod_id} has no hosts file"
            )));
        };
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&hosts)
            .map_err(|e| Error::io(format!("failed to open {}", hosts.display()), e))?;
        f.write_all(lines.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("failed to write {}", hosts.display()), e))
    }

    /// The pod record of a Docker container (or any container).
    pub fn container_pod(&self, rec: &ContainerRecord) -> Result<PodRecord, Error> {
        self.pod(&rec.pod_id)
    }
}

/// A runtime failure on a container recorded as running: when its process
/// has meanwhile gone (the exit is not recorded yet), the caller asked
/// for something on a stopped container — a conflict, not a daemon fault.
fn not_running_or(rec: &ContainerRecord, e: Error) -> Error {
    if rec.pid.is_some_and(|p| p.alive()) {
        e
    } else {
        Error::FailedPrecondition(format!("container {} is not running", rec.id))
    }
}

/// `k8s_<ctr>_<pod>_<ns>_<uid>_<attempt>`, as dockershim named containers.
pub fn dockershim_name(rec: &ContainerRecord, pod: Option<&PodRecord>) -> String {
    let (cname, attempt) = rec
        .config
        .metadata
        .as_ref()
        .map(|m| (m.name.as_str(), m.attempt))
        .unwrap_or(("", 0));
    let pm = pod.and_then(|p| p.config.metadata.as_ref());
    format!(
        "k8s_{cname}_{}_{}_{}_{attempt}",
        pm.map(|m| m.name.as_str()).unwrap_or(""),
        pm.map(|m| m.namespace.as_str()).unwrap_or(""),
        pm.map(|m| m.uid.as_str()).unwrap_or(""),
    )
}
