//! Container life cycle: create (rootfs + spec + monitor), start, stop,
//! remove, exec, and reconciling a record with what really happened.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1::ContainerConfig;
use tracing::{debug, info, warn};

use super::health::HealthConfig;
use super::host::Mounts;
use super::records::{
    new_id, now_nanos, ContainerRecord, ContainerState, ExitPolicy, PodState, ProcessId,
};
use super::{rootfs, Engine, Error, CONTAINERS};
use crate::monitor::{ExitStatus, MonitorConfig, Ready};
use crate::runtime::{build_spec, SandboxFiles, SpecInputs};
use crate::store::HEALTH;

/// How long a monitor may take to create a container.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for an exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// What a container made through the Docker door has beyond CRI's config.
#[derive(Debug, Default)]
pub struct DockerCreate {
    /// Docker's health check, already merged with the image's (see
    /// [`HealthConfig::merge`]).
    pub health: Option<HealthConfig>,
    /// What follows its exits (restart policy, `--rm`).
    pub exit_policy: ExitPolicy,
    /// `--log-opt max-size/max-file`.
    pub log_rotation: Option<crate::monitor::log::Rotation>,
    /// `--stop-signal`, `--stop-timeout`.
    pub stop: super::records::StopPolicy,
}

impl Engine {
    /// Creates a container in a ready pod; it is left in `Created`.
    pub async fn create_container(
        &self,
        pod_id: &str,
        config: ContainerConfig,
    ) -> Result<String, Error> {
        self.create_container_as(pod_id, config, new_id()).await
    }

    /// [`Engine::create_container_as`] as Docker creates: a command the
    /// runtime cannot execute (missing, not executable) does not fail the
    /// create; the container is left `Created` without a monitor and its
    /// start tries again and fails with Docker's 127/126 (see
    /// [`exec_failure`]). `extras` are what only Docker's containers have.
    pub async fn create_docker_container(
        &self,
        pod_id: &str,
        config: ContainerConfig,
        id: String,
        extras: DockerCreate,
    ) -> Result<String, Error> {
        self.create_inner(pod_id, config, id, true, extras).await
    }

    /// [`Engine::create_container`] with a chosen id (Docker names a
    /// container's hostname after its id before the container exists).
    pub async fn create_container_as(
        &self,
        pod_id: &str,
        config: ContainerConfig,
        id: String,
    ) -> Result<String, Error> {
        self.create_inner(pod_id, config, id, false, DockerCreate::default())
            .await
    }

    async fn create_inner(
        &self,
        pod_id: &str,
        config: ContainerConfig,
        id: String,
        defer_exec_failure: bool,
        extras: DockerCreate,
    ) -> Result<String, Error> {
        let DockerCreate {
            health,
            exit_policy,
            log_rotation,
            stop,
        } = extras;
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidArgument(format!("bad container id {id:?}")));
        }
        if let Some(h) = &health {
            h.validate()?;
        }
        let pod = self.pod(pod_id)?;
        if pod.state != PodState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {pod_id} is not ready"
            )));
        }
        let meta = config
            .metadata
            .clone()
            .filter(|m| !m.name.is_empty())
            .ok_or_else(|| {
                Error::InvalidArgument("container config must have metadata with a name".into())
            })?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::InvalidArgument("container config must name an image".into()))?;
        let _g = self.locks.lock(pod_id).await;
        for c in self.store.list::<ContainerRecord>(CONTAINERS)? {
            let m = c.1.config.metadata.as_ref();
            if c.1.pod_id == pod_id
                && m.is_some_and(|m| m.name == meta.name && m.attempt == meta.attempt)
            {
                return Err(Error::AlreadyExists(format!(
                    "container {:?} (attempt {}) already exists in pod {pod_id} as {}",
                    meta.name, meta.attempt, c.0
                )));
            }
        }
        let target_pid_ns = self.target_pid_namespace(pod_id, &config)?;
        let joined = self.joined_paths(&pod.joined, false)?;
        let image = self.images.resolve(&image_name)?.ok_or_else(|| {
            Error::NotFound(format!("image {image_name:?} not found; pull it first"))
        })?;
        let image_config = self.images.config(&image).await?;
        // Image volumes (`Mount.image`): each image, pulled by the kubelet
        // first, mounted read-only and bound in like a host path.
        let mut spec_config = config.clone();
        if joined.pid_ns.is_some() {
            // The container's PID namespace is the target's (see `joined`):
            // joined by path, as a pod's shared one is.
            let sandbox_opts = pod
                .config
                .linux
                .as_ref()
                .and_then(|l| l.security_context.as_ref())
                .and_then(|s| s.namespace_options.clone());
            let sc = spec_config
                .linux
                .get_or_insert_with(Default::default)
                .security_context
                .get_or_insert_with(Default::default);
            let opts = sc
                .namespace_options
                .get_or_insert_with(|| sandbox_opts.unwrap_or_default());
            opts.pid = k8s_cri::v1::NamespaceMode::Pod as i32;
        }
        let mut volumes: Vec<(usize, Vec<PathBuf>)> = Vec::new();
        let mut volume_snapshots = Vec::new();
        for (i, m) in spec_config.mounts.iter_mut().enumerate() {
            let Some(name) = m
                .image
                .as_ref()
                .map(|s| s.image.clone())
                .filter(|s| !s.is_empty())
            else {
                continue;
            };
            if !m.host_path.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "mount {} has both a host path and an image",
                    m.container_path
                )));
            }
            let img = self.images.resolve(&name)?.ok_or_else(|| {
                Error::NotFound(format!(
                    "image {name:?} of an image volume not found; pull it first"
                ))
            })?;
            let keys = img.snapshot_keys();
            volumes.push((
                i,
                keys.iter()
                    .map(|k| self.images.snapshots().fs_path(k))
                    .collect(),
            ));
            volume_snapshots.extend(keys);
            m.host_path = self
                .config
                .state
                .join("containers")
                .join(&id)
                .join("image-volumes")
                .join(i.to_string())
                .display()
                .to_string();
            m.image = None;
            m.readonly = true;
        }

        let log_path = match (&pod.config.log_directory, &config.log_path) {
            (d, p) if !d.is_empty() && !p.is_empty() => Some(PathBuf::from(d).join(p)),
            _ => None,
        };
        let handler = pod.runtime_handler.clone();
        let oci = self.oci(&handler)?;
        let rt = self.runtime(&handler)?;
        let rec = ContainerRecord {
            id: id.clone(),
            pod_id: pod_id.to_string(),
            config: config.clone(),
            image_id: image.id.to_string(),
            image_name,
            snapshots: image.snapshot_keys(),
            volume_snapshots,
            runtime_handler: handler,
            state: ContainerState::Created,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            dir: self.config.state.join("containers").join(&id),
            layer_dir: self.config.root.join("containers").join(&id),
            log_path: log_path.clone(),
            pid: None,
            monitor: None,
            cgroups_path: self.cgroups_path(&pod.cgroup_parent, &id),
            paused: false,
            health,
            restart_count: 0,
            exit_policy,
            stopped_by_user: false,
            stop,
        };
        self.images.hold_snapshots(&id, rec.held_snapshots());
        let lowers: Vec<PathBuf> = rec
            .snapshots
            .iter()
            .map(|k| self.images.snapshots().fs_path(k))
            .collect();
        let made = async {
            let rootfs = rec.rootfs();
            let (upper, work) = (rec.layer_dir.join("upper"), rec.layer_dir.join("work"));
            let (r, u, w, l) = (rootfs.clone(), upper, work, lowers);
            let userns = crate::runtime::userns::pod_user_namespace(&pod.config)?;
            let mounts = self.ops.mounts.clone();
            blocking(move || mounts.overlay(&l, &u, &w, &r, userns.as_ref())).await?;
            let nocopy = super::volumes::nocopy_paths(&config.annotations);
            self.prepare_volumes(&config.mounts, Some(&rootfs), nocopy)
                .await?;
            for (i, lowers) in &volumes {
                let (target, lowers) = (rec.image_volume(*i), lowers.clone());
                let mounts = self.ops.mounts.clone();
                blocking(move || mounts.read_only(&lowers, &target)).await?;
            }
            let pid_ns = joined.pid_ns.clone().or_else(|| {
                pod.infra
                    .map(|p| PathBuf::from(format!("/proc/{}/ns/pid", p.pid)))
            });
            let or = |a: &Option<PathBuf>, b: &Option<PathBuf>| a.clone().or_else(|| b.clone());
            let (netns, utsns, ipcns) = (
                or(&joined.netns, &pod.netns),
                or(&joined.utsns, &pod.utsns),
                or(&joined.ipcns, &pod.ipcns),
            );
            let (hosts, resolv_conf, hostname_file) = (
                or(&joined.hosts, &pod.hosts),
                or(&joined.resolv_conf, &pod.resolv_conf),
                or(&joined.hostname_file, &pod.hostname_file),
            );
            let shm = or(&joined.shm, &pod.shm);
            let hostname = joined
                .hostname
                .clone()
                .unwrap_or_else(|| pod.config.hostname.clone());
            let spec = build_spec(&SpecInputs {
                container_id: &id,
                sandbox_id: pod_id,
                container: &spec_config,
                sandbox: &pod.config,
                image_config: &image_config,
                rootfs: &rootfs,
                netns_path: netns.as_deref(),
                ipc_ns_path: ipcns.as_deref(),
                uts_ns_path: utsns.as_deref(),
                pid_ns_path: pid_ns.as_deref(),
                target_pid_ns_path: target_pid_ns.as_deref(),
                cgroups_path: rec.cgroups_path.clone(),
                cgroup_namespace: false,
                hostname: &hostname,
                sandbox_files: SandboxFiles {
                    hosts: hosts.as_deref(),
                    resolv_conf: resolv_conf.as_deref(),
                    hostname: hostname_file.as_deref(),
                    shm: shm.as_deref(),
                },
                host_devices: &crate::runtime::HostDevFs,
                host_capabilities: &self.host.capabilities,
                min_oom_score_adj: self.host.min_oom_score_adj,
                swap_limit_supported: self.host.swap_accounting,
                apparmor_enabled: self.host.apparmor,
                apparmor_default_profile: self.host.apparmor_default_profile.as_deref(),
            })?;
            if spec
                .linux()
                .as_ref()
                .is_some_and(|l| l.uid_mappings().is_some())
            {
                // In its user namespace the runtime cannot create mount
                // points in the (host-root-owned) image: make them first.
                let points: Vec<(String, bool)> = spec
                    .mounts()
                    .iter()
                    .flatten()
                    .filter(|m| m.typ().as_deref() == Some("bind"))
                    .map(|m| {
                        let file = m.source().as_ref().is_some_and(|s| !s.is_dir());
                        (m.destination().display().to_string(), file)
                    })
                    .collect();
                let root = rootfs.clone();
                blocking(move || {
                    for (dest, file) in &points {
                        crate::storage::make_mount_point(&root, dest, *file).map_err(|e| {
                            Error::io(format!("failed to make mount point {dest}"), e)
                        })?;
                    }
                    Ok(())
                })
                .await?;
            }
            if let Some(p) = &log_path {
                if let Some(d) = p.parent() {
                    std::fs::create_dir_all(d).map_err(|e| {
                        Error::io(format!("failed to create log dir {}", d.display()), e)
                    })?;
                }
            }
            let cfg_path = rec.dir.join("config.json");
            spec.save(&cfg_path).map_err(|e| {
                Error::internal(format!("failed to write {}: {e}", cfg_path.display()))
            })?;
            let (pid, monitor) = self
                .create_by_monitor(&MonitorConfig {
                    id: id.clone(),
                    bundle: rec.dir.clone(),
                    runtime: oci.binary.clone(),
                    runtime_root: oci.root.clone(),
                    runtime_flags: oci.flags.clone(),
                    runtime_log: rec.dir.join("runtime.log"),
                    pid_file: rec.dir.join("pid"),
                    exit_file: rec.exit_file(),
                    log_path: log_path.clone(),
                    log_rotation,
                    oom_files: self.oom_files(&rec.cgroups_path),
                    attach_socket: super::exec::attach_socket_path(&rec.dir),
                    stdin: rec.config.stdin,
                    stdin_once: rec.config.stdin_once,
                    terminal: rec.config.tty,
                })
                .await?;
            Ok::<_, Error>((pid, monitor))
        }
        .await;
        let (pid, monitor) = match made {
            Ok((pid, monitor)) => (Some(pid), Some(monitor)),
            // The bundle and rootfs stay: the start runs the runtime again.
            Err(e) if defer_exec_failure && exec_failure(&e, &rec).is_some() => {
                info!(container = %id, error = %e, "the command cannot be executed; the start will report it");
                let _ = rt.delete(&id).await;
                (None, None)
            }
            Err(e) => {
                warn!(container = %id, error = %e, "create failed, rolling back");
                let _ = rt.delete(&id).await;
                discard_container_files(&self.ops.mounts, &rec).await;
                self.images.release_snapshots(&id);
                self.release_unused_volumes().await;
                return Err(e);
            }
        };
        let rec = ContainerRecord {
            pid,
            monitor,
            ..rec
        };
        self.put_container(&rec)?;
        info!(container = %id, pod = %pod_id, name = %meta.name, "created container");
        self.emit_container("create", &rec, &[]);
        Ok(id)
    }

    /// For a container whose PID namespace mode is TARGET (`kubectl debug
    /// --target`), the PID namespace of the running target container in the
    /// same pod; None for every other mode.
    fn target_pid_namespace(
        &self,
        pod_id: &str,
        config: &ContainerConfig,
    ) -> Result<Option<PathBuf>, Error> {
        let Some(opts) = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
        else {
            return Ok(None);
        };
        if opts.pid() != k8s_cri::v1::NamespaceMode::Target {
            return Ok(None);
        }
        let target = opts.target_id.as_str();
        if target.is_empty() {
            return Err(Error::InvalidArgument(
                "pid namespace mode TARGET needs a target container id".into(),
            ));
        }
        let rec = self
            .refreshed(target)?
            .ok_or_else(|| Error::NotFound(format!("target container {target} not found")))?;
        if rec.pod_id != pod_id {
            return Err(Error::InvalidArgument(format!(
                "target container {target} is in another pod sandbox ({})",
                rec.pod_id
            )));
        }
        match rec.pid {
            Some(p) if rec.state == ContainerState::Running && p.alive() => {
                Ok(Some(PathBuf::from(format!("/proc/{}/ns/pid", p.pid))))
            }
            _ => Err(Error::FailedPrecondition(format!(
                "target container {target} is not running"
            ))),
        }
    }

    /// Starts a created container.
    pub async fn start_container(&self, id: &str) -> Result<(), Error> {
        let _g = self.locks.lock(id).await;
        let mut rec = self.container(id)?;
        if rec.state != ContainerState::Created {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is {:?}, not created",
                rec.state
            )));
        }
        self.check_joined_running(&rec.pod_id)?;
        if rec.monitor.is_none() {
            // Created without a monitor: its command could not be executed
            // at create. The runtime tries again (a `docker cp` may have
            // brought the file since).
            match self.recreate(rec.clone()).await {
                Ok(r) => rec = r,
                Err(e) => {
                    self.cancel_attach_waiters(id);
                    let Some((code, msg)) = exec_failure(&e, &rec) else {
                        return Err(e);
                    };
                    rec.exit_code = code;
                    rec.reason = "StartError".into();
                    rec.message = msg.clone();
                    self.put_container(&rec)?;
                    return Err(Error::InvalidArgument(msg));
                }
            }
        }
        let oci = self.runtime(&rec.runtime_handler)?;
        // Attaches waiting for this monitor register before the container runs.
        self.hand_over_attach(id, super::exec::attach_socket_path(&rec.dir))
            .await;
        // Stamped before the start: a container that exits during `crun start`
        // must not show an exit before its start.
        let started = now_nanos();
        // While the start runs, an exit seen elsewhere (the exit watcher, a
        // status call) waits: "start" comes before "die" in every stream.
        self.starting_set().insert(id.to_string());
        let res = oci.start(id).await;
        if let Err(e) = res {
            // The runtime may have failed after starting the process (or
            // left its init waiting): a container recorded exited must not
            // run behind the record.
            if let Err(k) = oci.kill(id, "KILL", true).await {
                debug!(container = %id, error = %k, "kill after a failed start");
            }
            if let Some(p) = rec.pid {
                p.signal(nix::sys::signal::Signal::SIGKILL);
            }
            self.starting_set().remove(id);
            rec.state = ContainerState::Exited;
            rec.finished_at = now_nanos();
            rec.exit_code = 128;
            rec.reason = "StartError".into();
            rec.message = e.to_string();
            self.put_container(&rec)?;
            return Err(e);
        }
        // Still "starting" until the start is recorded: an exit watcher or
        // status call reading the record meanwhile must not judge the exit
        // of a record that does not say it started (and then write that
        // stale record back over this one).
        let recorded = self.container(id).and_then(|mut rec| {
            if rec.state == ContainerState::Created {
                rec.state = ContainerState::Running;
            }
            rec.started_at = started;
            self.put_container(&rec)?;
            Ok(rec)
        });
        self.starting_set().remove(id);
        let rec = recorded?;
        self.reset_health(&rec)?;
        self.emit_container("start", &rec, &[]);
        let since_create = (rec.started_at - rec.created_at).max(0) as u64;
        crate::metrics::global().observe_container_start(Duration::from_nanos(since_create));
        // An exit that happened during the start is recorded now ("die").
        self.refreshed(id)?;
        Ok(())
    }

    fn starting_set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.starting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops a container: its stop signal, then SIGKILL after `timeout`.
    pub async fn stop_container(&self, id: &str, timeout: Duration) -> Result<(), Error> {
        self.stop_container_with(id, timeout, None).await
    }

    /// [`Engine::stop_container`] with `signal` (a name like `INT`, or a
    /// number) instead of the container's stop signal (Docker's `stop --signal`).
    pub async fn stop_container_with(
        &self,
        id: &str,
        timeout: Duration,
        signal: Option<&str>,
    ) -> Result<(), Error> {
        let _g = self.locks.lock(id).await;
        let Some(rec) = self.refreshed(id)? else {
            return Err(Error::NotFound(format!("container {id} not found")));
        };
        if rec.state != ContainerState::Running {
            return Ok(());
        }
        let oci = self.runtime(&rec.runtime_handler)?;
        if !timeout.is_zero() {
            let signal = match signal {
                Some(s) => s.trim_start_matches("SIG").to_string(),
                None => self.stop_signal(&rec).await,
            };
            // Published before the signal goes: the `die` it causes follows.
            self.emit_container("kill", &rec, &[("signal", &signal)]);
            // The stop signal goes to the container's init only (as `crun
            // kill` without --all does): straight from here when it has a
            // plain name, saving a runtime process on every stop.
            let direct = format!("SIG{signal}")
                .parse::<nix::sys::signal::Signal>()
                .ok()
                .zip(rec.pid)
                .is_some_and(|(sig, pid)| pid.signal(sig));
            if !direct {
                if let Err(e) = oci.kill(id, &signal, false).await {
                    warn!(container = %id, error = %e, "failed to send the stop signal");
                }
            }
            if self.wait_exit(&rec, timeout).await {
                return self.stopped(id);
            }
        }
        self.emit_container("kill", &rec, &[("signal", "KILL")]);
        let _ = oci.kill(id, "KILL", true).await;
        if !self.wait_exit(&rec, KILL_WAIT).await {
            return Err(Error::internal(format!(
                "container {id} did not exit after SIGKILL"
            )));
        }
        self.stopped(id)
    }

    /// After a stop: records the exit (publishing `die`), then `stop`.
    fn stopped(&self, id: &str) -> Result<(), Error> {
        if let Some(rec) = self.refreshed(id)? {
            // Whoever recorded the exit has published `die` once this is held.
            drop(self.exit_ordered());
            self.emit_container("stop", &rec, &[]);
        }
        Ok(())
    }

    fn exit_ordered(&self) -> std::sync::MutexGuard<'_, ()> {
        self.exit_order
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes a container, killing it if it still runs. Removing a missing
    /// container succeeds. The record is gone when this returns; the
    /// runtime's state and the writable layer (an overlay unmount syncs the
    /// upper file system, tens of ms on a busy disk) go in the background, as
    /// containerd's snapshot GC does. RemovePodSandbox waits for that work,
    /// and start-up sweeps up what a crash interrupted (`orphans.rs`).
    pub async fn remove_container(&self, id: &str) -> Result<(), Error> {
        self.remove_container_inner(id, false, false).await
    }

    /// [`Engine::remove_container`] with its anonymous volumes (`rm -v`).
    pub async fn remove_container_with_volumes(&self, id: &str) -> Result<(), Error> {
        self.remove_container_inner(id, false, true).await
    }

    /// [`Engine::remove_container`]; with `wait`, everything is gone on
    /// return; with `volumes`, the anonymous volumes only it used go too.
    pub(crate) async fn remove_container_inner(
        &self,
        id: &str,
        wait: bool,
        volumes: bool,
    ) -> Result<(), Error> {
        let _g = self.locks.lock(id).await;
        let Some(rec) = self.store.get::<ContainerRecord>(CONTAINERS, id)? else {
            return Ok(());
        };
        let oci = self.runtime(&rec.runtime_handler)?;
        if rec.pid.is_some_and(|p| p.alive()) {
            let _ = oci.kill(id, "KILL", true).await;
            self.wait_exit(&rec, KILL_WAIT).await;
        }
        // The image went while the container used it: its layers can go
        // once the rootfs is unmounted, so that path stays in the request.
        // (or an image volume's image: volumes keep no image of their own)
        let image_gone =
            self.images.resolve(&rec.image_id)?.is_none() || !rec.volume_snapshots.is_empty();
        if wait || image_gone {
            oci.delete(id).await?;
            discard_container_files(&self.ops.mounts, &rec).await;
            self.store.write(|w| {
                w.delete(HEALTH, id)?;
                w.delete(CONTAINERS, id).map(drop)
            })?;
            self.images.release_snapshots(id);
        } else {
            self.store.write(|w| {
                w.delete(HEALTH, id)?;
                w.delete(CONTAINERS, id).map(drop)
            })?;
            let holds = self.images.snapshot_holds();
            let gone = rec.clone();
            let mounts = self.ops.mounts.clone();
            let task = tokio::spawn(async move {
                if let Err(e) = oci.delete(&gone.id).await {
                    warn!(container = %gone.id, error = %e, "failed to delete the runtime state of a removed container");
                }
                discard_container_files(&mounts, &gone).await;
                holds.release(&gone.id);
            });
            let mut removals = self
                .removals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let pending = removals.entry(rec.pod_id.clone()).or_default();
            pending.retain(|t| !t.is_finished());
            pending.push(task);
        }
        self.cancel_attach_waiters(id);
        self.forget_execs(id);
        self.monitor_fates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
        if rec
            .config
            .mounts
            .iter()
            .any(|m| self.volume_of(&m.host_path).is_some())
        {
            self.release_unused_volumes().await;
            if volumes {
                self.remove_anonymous_volumes(&rec.config.mounts).await;
            }
        }
        self.emit_container("destroy", &rec, &[]);
        if image_gone {
            if let Err(e) = self.images.gc().await {
                warn!(container = %id, error = %e, "failed to collect unused image content");
            }
        }
        info!(container = %id, "removed container");
        Ok(())
    }

    /// Waits for the background part of the removals of a pod's containers.
    pub(crate) async fn wait_removals(&self, pod_id: &str) {
        let pending = self
            .removals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(pod_id)
            .unwrap_or_default();
        for t in pending {
            let _ = t.await;
        }
    }

    /// A container's record, brought up to date with its monitor's exit file.
    pub fn refreshed(&self, id: &str) -> Result<Option<ContainerRecord>, Error> {
        match self.store.get::<ContainerRecord>(CONTAINERS, id)? {
            Some(rec) => self.refresh(rec),
            None => Ok(None),
        }
    }

    /// [`Engine::refreshed`] of a record just read (a listing reads each
    /// record once).
    pub(crate) fn refresh(
        &self,
        mut rec: ContainerRecord,
    ) -> Result<Option<ContainerRecord>, Error> {
        let id = rec.id.clone();
        let id = id.as_str();
        // A container created without a monitor (its command could not be
        // executed) has no exit to look for until it is started.
        if rec.state == ContainerState::Exited
            || (rec.state == ContainerState::Created
                && (rec.monitor.is_none() || self.starting_set().contains(id)))
        {
            return Ok(Some(rec));
        }
        // The monitor writes the exit file before it exits: looked at in
        // this order, a monitor seen gone with no file recorded no exit.
        let monitor_gone = !rec.monitor.is_some_and(|p| p.alive());
        let exit = ExitStatus::read(&rec.exit_file())
            .map_err(|e| Error::io(format!("failed to read the exit file of {id}"), e))?;
        let changed = match exit {
            Some(x) => {
                rec.exit_code = x.exit_code;
                rec.finished_at = x.exited_at;
                if x.oom_killed {
                    crate::metrics::global().count_oom_kill();
                }
                rec.reason = if x.oom_killed {
                    "OOMKilled"
                } else if x.exit_code == 0 {
                    "Completed"
                } else {
                    "Error"
                }
                .into();
                true
            }
            // The monitor is gone and recorded no exit. A container left
            // running has nothing holding its stdio or waiting for its
            // exit: it is killed (as containerd does when a shim dies).
            None if monitor_gone => {
                // Judged once, under the lock: two lookers at once (an exit
                // watcher and a status call) tell the same fate, and only
                // the first kills.
                let mut fates = self.monitor_fates.lock().unwrap_or_else(|p| p.into_inner());
                let how = match fates.get(id) {
                    // Gone but not yet reaped and judged by its waiter: the
                    // next look decides.
                    Some(MonitorFate::Watched) => return Ok(Some(rec)),
                    Some(MonitorFate::Judged { code, message }) => Err((*code, message.clone())),
                    Some(MonitorFate::Died(how)) => Ok(how.clone()),
                    None => Ok("exited without recording an exit status".into()),
                };
                let (code, message) = match how {
                    Err(judged) => judged,
                    Ok(how) => {
                        let killed = rec.pid.filter(|p| p.alive()).is_some_and(|p| {
                            nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(p.pid),
                                nix::sys::signal::Signal::SIGKILL,
                            )
                            .is_ok()
                        });
                        let judged = if killed {
                            (137, format!("the container's monitor {how}; the container was killed, as nothing held its stdio or could record its exit"))
                        } else {
                            (255, format!("the container's monitor {how}"))
                        };
                        if let Some(fate) = fates.get_mut(id) {
                            *fate = MonitorFate::Judged {
                                code: judged.0,
                                message: judged.1.clone(),
                            };
                        }
                        judged
                    }
                };
                drop(fates);
                rec.exit_code = code;
                rec.finished_at = now_nanos();
                rec.reason = "MonitorDied".into();
                rec.message = message;
                warn!(container = %id, "{}", rec.message);
                true
            }
            None => false,
        };
        if changed {
            // A container that exited was started, whatever record was read.
            if rec.started_at == 0
                && matches!(rec.state, ContainerState::Running | ContainerState::Created)
            {
                rec.started_at = rec.finished_at;
            }
            rec.state = ContainerState::Exited;
            rec.paused = false;
            // Not under the container's lock (exit watchers call this): a
            // removal may have deleted the record since it was read.
            {
                let _order = self.exit_ordered();
                match self.put_exit_if_present(&rec)? {
                    Recorded::Removed => return Ok(None),
                    // Another looker recorded this exit first: its record is
                    // the one told (its kill, its time, its words).
                    Recorded::Already(cur) => return Ok(Some(*cur)),
                    Recorded::Written => {}
                }
                let code = rec.exit_code.to_string();
                self.emit_container("die", &rec, &[("exitCode", &code)]);
            }
        }
        Ok(Some(rec))
    }

    /// Every container, up to date.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>, Error> {
        let all = self.store.list::<ContainerRecord>(CONTAINERS)?;
        let mut out = Vec::with_capacity(all.len());
        for (_, rec) in all {
            out.extend(self.refresh(rec)?);
        }
        Ok(out)
    }

    /// Runs a command in a running container and returns its output and exit code.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Option<Duration>,
    ) -> Result<crate::engine::oci::Output, Error> {
        let action = |verb: &str| format!("{verb}: {}", cmd.join(" "));
        let exec_id = new_id();
        let exec = self.prepare_exec(id, cmd.clone(), false, None)?;
        // Docker's exec events, as for `docker exec` (whichever door ran it).
        let rec = self.container(id).ok();
        let emit = |action: &str, extra: &[(&str, &str)]| {
            if let Some(rec) = &rec {
                let mut attrs = vec![("execID", exec_id.as_str())];
                attrs.extend_from_slice(extra);
                self.emit_container(action, rec, &attrs);
            }
        };
        emit(&action("exec_create"), &[]);
        emit(&action("exec_start"), &[]);
        let out = exec
            .runtime
            .exec_sync(id, &exec.process_path, &exec.pid_path, timeout)
            .await;
        let _ = std::fs::remove_file(&exec.process_path);
        let _ = std::fs::remove_file(&exec.pid_path);
        let code = match &out {
            Ok(o) if !o.timed_out => o.exit_code.to_string(),
            _ => "-1".to_string(),
        };
        emit("exec_die", &[("exitCode", &code)]);
        out
    }

    /// A container's record, up to date, if it is running.
    pub fn running(&self, id: &str) -> Result<ContainerRecord, Error> {
        let rec = self
            .refreshed(id)?
            .ok_or_else(|| Error::NotFound(format!("container {id} not found")))?;
        if rec.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        Ok(rec)
    }

    async fn stop_signal(&self, rec: &ContainerRecord) -> String {
        if let Some(s) = rec.stop.signal.as_deref().filter(|s| !s.is_empty()) {
            return s.trim_start_matches("SIG").to_string();
        }
        let from_image = match self.images.resolve(&rec.image_id) {
            Ok(Some(img)) => self
                .images
                .shared_config(&img)
                .await
                .ok()
                .and_then(|c| c.config().as_ref().and_then(|c| c.stop_signal().clone())),
            _ => None,
        };
        from_image
            .map(|s| s.trim_start_matches("SIG").to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "TERM".into())
    }

    pub(crate) async fn spawn_monitor(
        &self,
        cfg: &MonitorConfig,
    ) -> Result<(ProcessId, ProcessId), Error> {
        let dir = cfg.bundle.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("failed to create {}", dir.display()), e))?;
        let cfg_path = cfg.write().map_err(|e| {
            Error::io(
                format!("failed to write the monitor config in {}", dir.display()),
                e,
            )
        })?;
        let mut child = tokio::process::Command::new(&self.monitor_program.0)
            .arg0(self.monitor_program.1)
            .arg("monitor")
            // One malloc arena: a monitor's few threads allocate little, and
            // an arena per thread is most of what a monitor would hold.
            .env("MALLOC_ARENA_MAX", "1")
            .arg(&cfg_path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| Error::io(format!("failed to start the monitor of {}", cfg.id), e))?;
        let monitor = child.id().and_then(|p| ProcessId::of(p as i32));
        let stdout = child.stdout.take().expect("piped");
        // Reap the monitor whenever it ends (after a daemon restart init
        // does it) and tell watchers: the exit file is written by then.
        let (exits, id) = (self.monitor_exits.clone(), cfg.id.clone());
        let (fates, exit_file) = (self.monitor_fates.clone(), cfg.exit_file.clone());
        {
            let mut f = fates.lock().unwrap_or_else(|p| p.into_inner());
            // Monitors whose create failed have no container to report on:
            // their fates are dropped once there are many.
            if f.len() >= 1024 {
                f.retain(|_, fate| matches!(fate, MonitorFate::Watched));
            }
            f.insert(cfg.id.clone(), MonitorFate::Watched);
        }
        tokio::spawn(async move {
            let status = child.wait().await;
            // A monitor that recorded the exit is done; one that did not
            // died, and how is the container's reason (and a metric).
            let death = match exit_file.exists() {
                true => None,
                false => status.ok().and_then(monitor_death),
            };
            {
                let mut f = fates.lock().unwrap_or_else(|p| p.into_inner());
                match death {
                    Some((event, how)) => {
                        crate::metrics::global().monitor_event(event);
                        warn!(container = %id, "the monitor {how}");
                        // Unless the container was removed meanwhile.
                        if let Some(fate) = f.get_mut(&id) {
                            *fate = MonitorFate::Died(how);
                        }
                    }
                    None => {
                        f.remove(&id);
                    }
                }
            }
            let _ = exits.send(id);
        });
        let read = crate::monitor::client::read_ready(stdout);
        let ready = match tokio::time::timeout(CREATE_TIMEOUT, read).await {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => {
                return Err(Error::internal(format!(
                    "the monitor of {} exited without an answer",
                    cfg.id
                )))
            }
            Ok(Err(e)) => {
                return Err(Error::internal(format!(
                    "bad answer from the monitor of {}: {e}",
                    cfg.id
                )))
            }
            Err(_) => {
                return Err(Error::internal(format!(
                    "the monitor of {} did not answer in {CREATE_TIMEOUT:?}",
                    cfg.id
                )))
            }
        };
        match ready {
            Ready::Pid(pid) => {
                let p = ProcessId::of(pid)
                    .ok_or_else(|| Error::internal(format!("container process {pid} vanished")))?;
                let m =
                    monitor.ok_or_else(|| Error::internal("the monitor vanished".to_string()))?;
                Ok((p, m))
            }
            Ready::Error(e) => Err(Error::Runtime {
                what: format!("create container {}", cfg.id),
                message: e,
            }),
        }
    }

    /// Writes an exit into `rec`'s record, unless the container was removed
    /// meanwhile or this very exit is recorded already (two lookers saw it at
    /// once, an exit watcher and a `ps`: only the first records it and
    /// announces "die").
    fn put_exit_if_present(&self, rec: &ContainerRecord) -> Result<Recorded, Error> {
        let written = self.store.write(|w| {
            match w.get::<ContainerRecord>(CONTAINERS, &rec.id)? {
                None => return Ok::<_, Error>(Recorded::Removed),
                Some(cur) if cur.state == ContainerState::Exited && cur.monitor == rec.monitor => {
                    return Ok(Recorded::Already(Box::new(cur)))
                }
                Some(_) => {}
            }
            w.put(CONTAINERS, &rec.id, rec)?;
            Ok(Recorded::Written)
        })?;
        Ok(written)
    }

    pub(crate) fn put_container(&self, rec: &ContainerRecord) -> Result<(), Error> {
        self.store.write(|w| w.put(CONTAINERS, &rec.id, rec))?;
        Ok(())
    }

    /// A container record as stored.
    pub fn container(&self, id: &str) -> Result<ContainerRecord, Error> {
        self.store
            .get::<ContainerRecord>(CONTAINERS, id)?
            .ok_or_else(|| Error::NotFound(format!("container {id} not found")))
    }
}

/// What became of an exit written by [`Engine::put_exit_if_present`].
enum Recorded {
    Written,
    Removed,
    Already(Box<ContainerRecord>),
}

/// Monitors this daemon started, by container id.
pub(crate) type MonitorFates =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, MonitorFate>>>;

/// What this daemon knows of a monitor it started.
pub(crate) enum MonitorFate {
    /// Running, or ended and not yet reaped.
    Watched,
    /// Ended without recording an exit, as the words say.
    Died(String),
    /// Its container's exit, decided by the first look after the death.
    Judged { code: i32, message: String },
}

/// How a monitor that recorded no exit ended: the metric's event and words
/// for the container's message; `None` for a clean exit.
fn monitor_death(st: std::process::ExitStatus) -> Option<(&'static str, String)> {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = st.signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| format!("signal {sig}"));
        return Some(("killed", format!("was killed by {name}")));
    }
    match st.code() {
        Some(0) | None => None,
        Some(crate::monitor::PANIC_EXIT) => Some(("panic", "panicked".into())),
        Some(c) => Some(("error", format!("exited with status {c}"))),
    }
}

impl Engine {
    /// Waits until the monitor records an exit, up to `limit`. A monitor this
    /// daemon started is reaped the moment it ends, right after it wrote the
    /// exit file, and that wakes the wait at once; the poll covers monitors
    /// from before a restart (reaped by init).
    async fn wait_exit(&self, rec: &ContainerRecord, limit: Duration) -> bool {
        let mut exits = self.monitor_exits.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        let exit = rec.exit_file();
        loop {
            if exit.exists() {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let poll = tokio::time::sleep_until(deadline.min(now + EXIT_POLL));
            tokio::select! {
                _ = poll => {}
                got = exits.recv() => match got {
                    // Another container's monitor: look again (cheap) and wait on.
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep_until(deadline.min(now + EXIT_POLL)).await;
                    }
                },
            }
        }
    }
}

/// Unmounts a container's rootfs and removes its directories.
async fn discard_container_files(mounts: &Arc<dyn Mounts>, rec: &ContainerRecord) {
    let mounts = mounts.clone();
    let (rootfs, dir, layer) = (rec.rootfs(), rec.dir.clone(), rec.layer_dir.clone());
    let volumes: Vec<PathBuf> = (0..rec.config.mounts.len())
        .map(|i| rec.image_volume(i))
        .collect();
    let res = blocking(move || {
        for v in volumes.iter().filter(|v| v.exists()) {
            mounts.unmount(v)?;
        }
        mounts.unmount(&rootfs)?;
        rootfs::remove_dir(&dir)?;
        rootfs::remove_dir(&layer)
    })
    .await;
    if let Err(e) = res {
        warn!(container = %rec.id, error = %e, "failed to clean up container files");
    }
}

/// How often [`Engine::wait_exit`] looks for an exit file nobody announces.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// Runs blocking work (mounts, directory removal) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("blocking task failed: {e}")))?
}

/// Docker's exit code (127 missing, 126 not executable) and message for a
/// runtime that could not execute the container's command, from crun's
/// (`executable file \`x\` not found in $PATH`, `open executable: Permission
/// denied`) or runc's (`exec: "x": …`) words; None for other failures.
pub(crate) fn exec_failure(e: &Error, rec: &ContainerRecord) -> Option<(i32, String)> {
    let Error::Runtime { message, .. } = e else {
        return None;
    };
    let argv0 = std::fs::read(rec.dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["process"]["args"][0].as_str().map(str::to_string))
        .unwrap_or_default();
    exec_failure_of(message, &argv0)
}

fn exec_failure_of(message: &str, argv0: &str) -> Option<(i32, String)> {
    let m = message.to_lowercase();
    let about_exec = m.contains("executable") || m.contains("exec:");
    if !about_exec {
        return None;
    }
    let why = if m.contains("not found in $path") || m.contains("no such file or directory") {
        if argv0.contains('/') {
            (127, format!("stat {argv0}: no such file or directory"))
        } else {
            (127, "executable file not found in $PATH".to_string())
        }
    } else if m.contains("permission denied") {
        (126, "permission denied".to_string())
    } else if m.contains("is a directory") {
        (126, "is a directory".to_string())
    } else {
        return None;
    };
    Some((
        why.0,
        format!(
            "failed to create task for container: OCI runtime create failed: exec: {argv0:?}: {}",
            why.1
        ),
    ))
}

#[cfg(test)]
mod exec_failure_tests {
    use super::exec_failure_of;

    #[test]
    fn runtime_words_map_to_docker_codes() {
        let crun = "/usr/bin/crun create failed (exit status: 1): executable file `/nope` not found in $PATH: No such file or directory";
        let (code, msg) = exec_failure_of(crun, "/nope").unwrap();
        assert_eq!(code, 127);
        assert!(
            msg.ends_with(r#"exec: "/nope": stat /nope: no such file or directory"#),
            "{msg}"
        );
        let (code, msg) = exec_failure_of(
            "executable file `nope` not found in $PATH: No such file or directory",
            "nope",
        )
        .unwrap();
        assert_eq!(code, 127);
        assert!(msg.contains("executable file not found in $PATH"), "{msg}");
        let (code, msg) = exec_failure_of(
            "crun create failed: open executable: Permission denied",
            "/etc/passwd",
        )
        .unwrap();
        assert_eq!(code, 126);
        assert!(
            msg.ends_with(r#"exec: "/etc/passwd": permission denied"#),
            "{msg}"
        );
        let runc = r#"runc create failed: unable to start container process: exec: "/x": permission denied"#;
        assert_eq!(exec_failure_of(runc, "/x").unwrap().0, 126);
        assert!(exec_failure_of("mount `/proc`: No such file or directory", "/bin/sh").is_none());
        assert!(exec_failure_of("cgroup: Permission denied", "/bin/sh").is_none());
    }
}
