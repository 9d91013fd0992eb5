//! Pod sandbox life cycle: pinned namespaces, pod files, the infra process
//! that holds a shared PID namespace; stop and remove undo it in reverse.

use std::time::Duration;

use k8s_cri::v1::{NamespaceMode, PodSandboxConfig};
use tracing::{info, warn};

use super::container::blocking;
use super::joined::JoinedNamespaces;
use super::records::{new_id, now_nanos, ContainerRecord, PodRecord, PodState};
use super::{Engine, Error, PODS};
use crate::monitor::MonitorConfig;
use crate::sandbox;

/// The namespace modes a pod asked for.
struct Modes {
    host_network: bool,
    host_ipc: bool,
    shared_pid: bool,
}

fn modes(cfg: &PodSandboxConfig) -> Modes {
    let ns = cfg
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref());
    let mode = |f: fn(&k8s_cri::v1::NamespaceOption) -> i32| {
        ns.map(f).unwrap_or(NamespaceMode::Pod as i32)
    };
    Modes {
        host_network: mode(|n| n.network) == NamespaceMode::Node as i32,
        host_ipc: mode(|n| n.ipc) == NamespaceMode::Node as i32,
        shared_pid: mode(|n| n.pid) == NamespaceMode::Pod as i32,
    }
}

/// How long a removal waits for the infra's monitor to end after the infra
/// (it drains output for up to 3 s, then writes the exit file).
const INFRA_MONITOR_WAIT: Duration = Duration::from_secs(5);

/// Whether a pod's infra still needs the runtime's kill and delete: a pod
/// stopped before had it deleted (stopping again costs no runtime call),
/// but an infra that died on its own (found so after a crash, the pod
/// marked NotReady) still has its runtime state and cgroup.
fn infra_to_delete(rec: &PodRecord, rt: &dyn super::host::Runtime) -> bool {
    rec.infra
        .is_some_and(|p| rec.state == PodState::Ready || p.alive() || rt.has_state(&rec.id))
}

impl Engine {
    /// Creates a ready pod sandbox.
    pub async fn run_pod_sandbox(
        &self,
        config: PodSandboxConfig,
        handler: &str,
    ) -> Result<String, Error> {
        self.run_pod_sandbox_joined(config, handler, JoinedNamespaces::default())
            .await
    }

    /// [`Engine::run_pod_sandbox`] for a pod whose containers join other
    /// containers' namespaces: the pod pins none of its own for those and,
    /// joining a network, has no CNI attachment (see [`super::joined`]).
    pub async fn run_pod_sandbox_joined(
        &self,
        config: PodSandboxConfig,
        handler: &str,
        joined: JoinedNamespaces,
    ) -> Result<String, Error> {
        let meta = config
            .metadata
            .clone()
            .filter(|m| !m.name.is_empty() && !m.namespace.is_empty())
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "pod sandbox config must have metadata with a name and a namespace".into(),
                )
            })?;
        for (what, v) in [
            ("name", &meta.name),
            ("namespace", &meta.namespace),
            ("uid", &meta.uid),
        ] {
            // CNI_ARGS is `K=V;K=V`, passed in the environment.
            if v.chars().any(|c| c.is_control() || c == ';') {
                return Err(Error::InvalidArgument(format!(
                    "pod sandbox metadata {what} {v:?} has control characters or ';'"
                )));
            }
        }
        if let Some(linux) = config.linux.as_ref() {
            check_cgroup_parent(&linux.cgroup_parent)?;
            check_sysctls(&linux.sysctls, modes(&config))?;
        }
        if !joined.is_empty() {
            self.check_join_targets(&joined)?;
        }
        let handler = if handler.is_empty() {
            self.config.runtime.default_handler.clone()
        } else {
            handler.to_string()
        };
        let oci = self.oci(&handler)?.clone();
        let rt = self.runtime(&handler)?;
        if crate::runtime::userns::pod_user_namespace(&config)?.is_some()
            && !self
                .handler_features
                .get(&handler)
                .is_some_and(|f| f.user_namespaces)
        {
            return Err(Error::InvalidArgument(format!(
                "runtime handler {handler:?} cannot run pods in a user namespace (it needs user namespaces and idmapped mounts)"
            )));
        }
        let id = new_id();
        let dir = self.config.state.join("pods").join(&id);
        let m = modes(&config);
        let cgroup_parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        let mut rec = PodRecord {
            id: id.clone(),
            config: config.clone(),
            runtime_handler: handler,
            created_at: now_nanos(),
            state: PodState::Ready,
            dir: dir.clone(),
            netns: None,
            ipcns: None,
            utsns: None,
            hosts: None,
            resolv_conf: None,
            hostname_file: None,
            shm: None,
            cgroup_parent,
            infra: None,
            infra_monitor: None,
            ips: vec![],
            gateways: vec![],
            network_attached: false,
            networks: vec![],
            joined: joined.clone(),
        };
        let join_net = joined.network.is_some();
        let made: Result<(), Error> = async {
            let (d, c, host_net) = (dir.clone(), config.clone(), m.host_network);
            let want = sandbox::NsKinds {
                net: !m.host_network && !join_net,
                ipc: !m.host_ipc && joined.ipc.is_none(),
                uts: !m.host_network && !join_net,
            };
            let hostname = (!m.host_network && !join_net && !config.hostname.is_empty())
                .then(|| config.hostname.clone());
            let ops = self.ops.network.clone();
            let (pinned, files) = blocking(move || {
                let (ns, files) = (d.join("ns"), d.join("files"));
                for x in [&ns, &files] {
                    std::fs::create_dir_all(x)
                        .map_err(|e| Error::io(format!("failed to create {}", x.display()), e))?;
                }
                let pinned = ops
                    .pin(&ns, want, hostname.as_deref())
                    .map_err(sandbox_err)?;
                // The record learns of the pins only when this returns: a
                // failure here undoes them itself.
                let c = with_embedded_dns(c);
                match ops.write_files(&files, &c, host_net) {
                    Ok(files) => Ok((pinned, files)),
                    Err(e) => {
                        if let Err(u) = ops.unpin(&pinned) {
                            warn!(error = %u, "failed to undo the namespace pins of a failed pod");
                        }
                        Err(sandbox_err(e))
                    }
                }
            })
            .await?;
            rec.netns = pinned.net;
            rec.ipcns = pinned.ipc;
            rec.utsns = pinned.uts;
            rec.hosts = Some(files.hosts);
            rec.resolv_conf = Some(files.resolv_conf);
            rec.hostname_file = Some(files.hostname);
            rec.shm = files.shm;
            let cni = !join_net
                && config
                    .annotations
                    .get(super::docker::NETWORK_ANNOTATION)
                    .is_none_or(|n| n != "none");
            // The network (CNI ADD, then /etc/hosts) and the infra process
            // (crun create + start) need only the pinned namespaces, not each
            // other: they run side by side. Both results are recorded before
            // either error is returned, so a rollback undoes exactly what was made.
            let network = async {
                let Some(netns) = rec.netns.clone().filter(|_| cni) else {
                    return Ok(None);
                };
                let req = super::networks::NetworkRequest::from_pod_config(&config)?;
                let made = self
                    .add_attachment(&id, &netns, &config, &req, crate::network::DEFAULT_IFNAME)
                    .await?;
                Ok::<_, Error>(Some(made))
            };
            let infra = async {
                if !m.shared_pid {
                    return Ok(None);
                }
                let (infra_dir, pinned) = (dir.join("infra"), pinned_of(&rec));
                let cg = self.cgroups_path(&rec.cgroup_parent, &id);
                let hn = config.hostname.clone();
                let small = self.small_binary.clone();
                let bundle = blocking(move || {
                    std::fs::create_dir_all(&infra_dir).map_err(|e| {
                        Error::io(format!("failed to create {}", infra_dir.display()), e)
                    })?;
                    match &small {
                        Some(bin) => sandbox::infra_bundle_with(bin, &infra_dir, &pinned, &cg, &hn),
                        None => sandbox::infra_bundle(&infra_dir, &pinned, &cg, &hn),
                    }
                    .map_err(sandbox_err)
                })
                .await?;
                let (pid, monitor) = self
                    .create_by_monitor(&MonitorConfig {
                        id: id.clone(),
                        bundle: bundle.clone(),
                        runtime: oci.binary.clone(),
                        runtime_root: oci.root.clone(),
                        runtime_flags: oci.flags.clone(),
                        runtime_log: dir.join("infra-runtime.log"),
                        pid_file: dir.join("infra.pid"),
                        exit_file: dir.join("infra-exit.pb"),
                        log_path: None,
                        log_rotation: None,
                        oom_files: vec![],
                        attach_socket: None,
                        stdin: false,
                        stdin_once: false,
                        terminal: false,
                    })
                    .await?;
                // Recorded before the start, so a failed start is rolled back too.
                let started = rt.start(&id).await;
                Ok::<_, Error>(Some((pid, monitor, started)))
            };
            let (network, infra) = tokio::join!(network, infra);
            // A failed ADD undoes itself; a failed create leaves no monitor.
            if network.as_ref().is_ok_and(Option::is_some) {
                rec.network_attached = true;
            }
            let infra = infra.and_then(|made| match made {
                Some((pid, monitor, started)) => {
                    rec.infra = Some(pid);
                    rec.infra_monitor = Some(monitor);
                    started
                }
                None => Ok(()),
            });
            let ips = network?;
            infra?;
            if let Some((att, res)) = ips {
                let ips = crate::network::pod_ips(&res);
                rec.set_attachments(vec![att]);
                rec.ips = ips.iter().map(|ip| ip.to_string()).collect();
                rec.gateways = crate::network::pod_gateways(&res)
                    .iter()
                    .map(|ip| ip.to_string())
                    .collect();
                if let Some(hosts) = &rec.hosts {
                    let (h, name) = (hosts.clone(), config.hostname.clone());
                    blocking(move || sandbox::write_hosts(&h, &name, &ips).map_err(sandbox_err))
                        .await?;
                }
            }
            self.store.write(|w| w.put(PODS, &id, &rec))?;
            Ok(())
        }
        .await;
        if let Err(e) = made {
            warn!(pod = %id, error = %e, "run pod sandbox failed, rolling back");
            self.teardown_pod(&rec).await;
            return Err(e);
        }
        info!(pod = %id, name = %meta.name, namespace = %meta.namespace, "pod sandbox ready");
        Ok(id)
    }

    /// Stops every container of the pod and its infra process. Idempotent.
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), Error> {
        if self.store.get::<PodRecord>(PODS, id)?.is_none() {
            return Ok(());
        }
        self.stop_pod_containers(id).await?;
        self.stop_pod_infra_and_network(id).await
    }

    /// Stops every container of the pod together; none waits for another's exit.
    async fn stop_pod_containers(&self, id: &str) -> Result<(), Error> {
        let containers = self.pod_containers(id)?;
        futures::future::try_join_all(
            containers
                .iter()
                .map(|c| self.stop_container(&c.id, Duration::ZERO)),
        )
        .await?;
        Ok(())
    }

    /// The rest of a stop once the containers are stopped: the infra process
    /// and the pod network.
    async fn stop_pod_infra_and_network(&self, id: &str) -> Result<(), Error> {
        let _g = self.locks.lock(id).await;
        let Some(mut rec) = self.store.get::<PodRecord>(PODS, id)? else {
            return Ok(());
        };
        self.pod_dns_closed(id);
        // The infra process and the network are independent: its kill and
        // delete run beside CNI DEL (while the pinned netns still exists: the
        // bridge plugin needs it to undo its masquerade rules).
        let infra = async {
            let oci = self.runtime(&rec.runtime_handler)?;
            if !infra_to_delete(&rec, oci.as_ref()) {
                return Ok(());
            }
            let _ = oci.kill(id, "KILL", true).await;
            oci.delete(id).await
        };
        let network = async {
            if !rec.network_attached {
                return Ok(false);
            }
            self.detach_network(id, rec.netns.as_deref()).await?;
            Ok::<_, Error>(true)
        };
        let (infra, network) = tokio::join!(infra, network);
        // A failed DEL keeps the attachment (and the netns) for a retry.
        if network? {
            rec.set_attachments(vec![]);
        }
        infra?;
        if rec.state != PodState::NotReady || !rec.ips.is_empty() {
            rec.state = PodState::NotReady;
            self.store.write(|w| w.put(PODS, id, &rec))?;
        }
        Ok(())
    }

    /// Removes the pod, its containers, namespaces, mounts and files. Idempotent.
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), Error> {
        self.remove_pod_sandbox_with(id, false).await
    }

    /// [`Engine::remove_pod_sandbox`]; with `volumes`, the anonymous volumes
    /// of its containers go too, before their `destroy` events (Docker's
    /// `rm -v` and `--rm`, whose client waits for that event).
    pub async fn remove_pod_sandbox_with(&self, id: &str, volumes: bool) -> Result<(), Error> {
        let Some(rec) = self.store.get::<PodRecord>(PODS, id)? else {
            return Ok(());
        };
        // Once the containers are stopped, their removal (runtime delete,
        // rootfs unmount) and the rest of the stop (infra, CNI DEL) do not
        // depend on each other: they run together.
        self.stop_pod_containers(id).await?;
        let containers = self.pod_containers(id)?;
        let removals = futures::future::try_join_all(
            containers
                .iter()
                .map(|c| self.remove_container_inner(&c.id, true, volumes)),
        );
        let (stopped, removed) = tokio::join!(self.stop_pod_infra_and_network(id), removals);
        stopped?;
        removed?;
        // Containers removed on their own before: their layers are gone too.
        self.wait_removals(id).await;
        let _g = self.locks.lock(id).await;
        // Stop detached the network: tear down from the record as it is now.
        let rec = self.store.get::<PodRecord>(PODS, id)?.unwrap_or(rec);
        self.teardown_pod(&rec).await;
        self.store.write(|w| w.delete(PODS, id).map(drop))?;
        info!(pod = %id, "removed pod sandbox");
        Ok(())
    }

    /// Undoes whatever part of a pod exists.
    async fn teardown_pod(&self, rec: &PodRecord) {
        self.pod_dns_closed(&rec.id);
        if let Ok(oci) = self.runtime(&rec.runtime_handler) {
            if infra_to_delete(rec, oci.as_ref()) {
                let _ = oci.kill(&rec.id, "KILL", true).await;
                let _ = oci.delete(&rec.id).await;
            }
        }
        if rec.network_attached {
            if let Err(e) = self.detach_network(&rec.id, rec.netns.as_deref()).await {
                warn!(pod = %rec.id, error = %e, "failed to detach the pod network");
            }
        }
        // The infra's monitor records its exit and ends just after the
        // infra: a removed pod leaves no process behind.
        if let Some(m) = rec.infra_monitor {
            let deadline = tokio::time::Instant::now() + INFRA_MONITOR_WAIT;
            while m.alive() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if m.alive() {
                warn!(pod = %rec.id, monitor = m.pid, "the infra's monitor did not end; killing it");
                m.signal(nix::sys::signal::Signal::SIGKILL);
            }
        }
        let pinned = pinned_of(rec);
        let dir = rec.dir.clone();
        let files = rec.hosts.as_ref().map(|hosts| sandbox::PodFiles {
            hosts: hosts.clone(),
            resolv_conf: rec.resolv_conf.clone().unwrap_or_default(),
            hostname: rec.hostname_file.clone().unwrap_or_default(),
            shm: rec.shm.clone(),
        });
        let ops = self.ops.network.clone();
        let res = blocking(move || {
            if let Some(f) = &files {
                ops.unmount_files(f).map_err(sandbox_err)?;
            }
            ops.unpin(&pinned).map_err(sandbox_err)?;
            super::rootfs::remove_dir(&dir)
        })
        .await;
        if let Err(e) = res {
            warn!(pod = %rec.id, error = %e, "failed to clean up pod sandbox");
        }
    }

    /// After a restart: a ready pod whose namespaces or infra process are gone
    /// (a host reboot, someone killed the infra) is no longer ready.
    pub fn reconcile_pods(&self) -> Result<(), Error> {
        for mut p in self.pods()? {
            if p.state != PodState::Ready {
                continue;
            }
            let ns_gone = [&p.netns, &p.ipcns, &p.utsns]
                .into_iter()
                .flatten()
                .any(|f| !self.ops.network.is_pinned(f));
            let infra_gone = p.infra.is_some_and(|i| !i.alive());
            if ns_gone || infra_gone {
                warn!(pod = %p.id, ns_gone, infra_gone, "pod sandbox lost its namespaces or infra process; marking it not ready");
                p.state = PodState::NotReady;
                self.store.write(|w| w.put(PODS, &p.id, &p))?;
            }
        }
        Ok(())
    }

    /// After a restart: CNI CHECK on every ready pod's network. A failure is
    /// logged, not acted on (some plugins' CHECK is unreliable, e.g. Debian's
    /// portmap 1.1.1 looks for IPv6 rules an IPv4-only pod never had).
    pub async fn check_pod_networks(&self) {
        for p in self.pods().unwrap_or_default() {
            let (PodState::Ready, true, Some(netns)) =
                (p.state, p.network_attached, p.netns.as_deref())
            else {
                continue;
            };
            match self.ops.network.check(&self.cni, &p.id, netns).await {
                Ok(()) => tracing::debug!(pod = %p.id, "pod network checked"),
                Err(e) => warn!(pod = %p.id, error = %e, "CNI CHECK of a recovered pod failed"),
            }
        }
    }

    /// After a restart: CNI DEL for cached attachments whose pod no longer
    /// exists (a crash between a pod's removal steps), so no IP or rule leaks.
    pub async fn release_orphan_networks(&self) {
        let pods: std::collections::HashSet<String> = self
            .pods()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.id)
            .collect();
        let ids = match self.ops.network.attached_ids(&self.cni).await {
            Ok(ids) => ids,
            Err(e) => {
                warn!(error = %e, "failed to read the CNI cache");
                return;
            }
        };
        for id in ids.into_iter().filter(|id| !pods.contains(id)) {
            match self.detach_network(&id, None).await {
                Ok(()) => info!(pod = %id, "released the network of a pod that no longer exists"),
                Err(e) => warn!(pod = %id, error = %e, "failed to release an orphaned pod network"),
            }
        }
    }

    /// Runs CNI DEL for a pod (idempotent; works when the netns is gone).
    async fn detach_network(&self, id: &str, netns: Option<&std::path::Path>) -> Result<(), Error> {
        let started = std::time::Instant::now();
        let res = self.ops.network.del(&self.cni, id, netns).await;
        crate::metrics::global().observe_cni("del", res.is_ok(), started.elapsed());
        res.map_err(cni_err)
    }

    /// The containers of a pod, up to date.
    pub fn pod_containers(&self, pod_id: &str) -> Result<Vec<ContainerRecord>, Error> {
        Ok(self
            .containers()?
            .into_iter()
            .filter(|c| c.pod_id == pod_id)
            .collect())
    }

    /// A pod record.
    pub fn pod(&self, id: &str) -> Result<PodRecord, Error> {
        self.store
            .get::<PodRecord>(PODS, id)?
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id} not found")))
    }

    /// Every pod.
    pub fn pods(&self) -> Result<Vec<PodRecord>, Error> {
        Ok(self
            .store
            .list::<PodRecord>(PODS)?
            .into_iter()
            .map(|(_, p)| p)
            .collect())
    }
}

/// A cgroup parent is a path (or a systemd slice name) of names a cgroup
/// file system accepts: no `..`, no NUL, each name at most 255 bytes.
fn check_cgroup_parent(parent: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Err(Error::InvalidArgument(format!(
            "invalid cgroup parent {:?}: {why}",
            crate::cri::bounded(parent.to_string())
        )))
    };
    if parent.contains('\0') {
        return bad("it contains NUL");
    }
    for part in parent.split('/') {
        if part == ".." {
            return bad("it leaves the cgroup tree (..)");
        }
        if part.len() > 255 {
            return bad("a name is longer than 255 bytes");
        }
    }
    Ok(())
}

/// Sysctls a pod may set: names of the sysctls that live in the pod's own
/// namespaces (IPC: `kernel.shm*`, `kernel.msg*`, `kernel.sem`,
/// `fs.mqueue.*`; network: `net.*`, not with the host's network), as the
/// kubelet and Docker allow; the runtime would refuse the others at create.
fn check_sysctls(
    sysctls: &std::collections::HashMap<String, String>,
    m: Modes,
) -> Result<(), Error> {
    const IPC: &[&str] = &[
        "kernel.shmmax",
        "kernel.shmall",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
    ];
    for (k, v) in sysctls {
        let bad = |why: &str| {
            Err(Error::InvalidArgument(crate::cri::bounded(format!(
                "sysctl {k:?}: {why}"
            ))))
        };
        let name_ok = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
        if !name_ok {
            return bad("not a sysctl name");
        }
        if v.contains('\0') {
            return bad("the value contains NUL");
        }
        let ipc = IPC.contains(&k.as_str()) || k.starts_with("fs.mqueue.");
        let net = k.starts_with("net.");
        if !(ipc || net) {
            return bad("not in the pod's namespaces (only IPC and network sysctls can be set)");
        }
        if ipc && m.host_ipc {
            return bad("an IPC sysctl cannot be set with the host's IPC namespace");
        }
        if net && m.host_network {
            return bad("a network sysctl cannot be set with the host's network");
        }
    }
    Ok(())
}

/// A pod on a user network gets the embedded DNS server (127.0.0.11) in
/// its resolv.conf, with its own or the host's search and options; its
/// `--dns` servers stay in the record, as the server's upstreams.
fn with_embedded_dns(mut c: PodSandboxConfig) -> PodSandboxConfig {
    if super::dns::user_network(&c.annotations).is_some() {
        let host =
            std::fs::read_to_string(crate::network::dns::HOST_RESOLV_CONF).unwrap_or_default();
        c.dns_config = Some(crate::network::dns::embedded_resolv_conf(
            c.dns_config.as_ref(),
            &host,
        ));
    }
    c
}

fn pinned_of(rec: &PodRecord) -> sandbox::PinnedNamespaces {
    sandbox::PinnedNamespaces {
        net: rec.netns.clone(),
        ipc: rec.ipcns.clone(),
        uts: rec.utsns.clone(),
    }
}

pub(crate) fn cni_err(e: crate::network::CniError) -> Error {
    use crate::network::CniErrorKind as K;
    match e.kind() {
        K::InvalidArgument => Error::InvalidArgument(format!("pod network: {e}")),
        K::FailedPrecondition => Error::FailedPrecondition(format!("pod network: {e}")),
        _ => Error::internal(format!("pod network: {e}")),
    }
}

fn sandbox_err(e: sandbox::SandboxError) -> Error {
    use sandbox::SandboxErrorKind as K;
    match e.kind() {
        K::InvalidArgument => Error::InvalidArgument(format!("pod sandbox: {e}")),
        K::FailedPrecondition => Error::FailedPrecondition(format!("pod sandbox: {e}")),
        K::Internal => Error::internal(format!("pod sandbox: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespaced_sysctls_are_accepted() {
        let pod = |host_network| Modes {
            host_network,
            host_ipc: false,
            shared_pid: true,
        };
        let map = |k: &str| std::collections::HashMap::from([(k.to_string(), "1".to_string())]);
        for ok in ["net.ipv4.ip_forward", "kernel.shmmax", "fs.mqueue.msg_max"] {
            assert!(check_sysctls(&map(ok), pod(false)).is_ok(), "{ok}");
        }
        for bad in ["", "kernel.pid_max", "vm.swappiness", "a b", "net.x\0"] {
            assert!(check_sysctls(&map(bad), pod(false)).is_err(), "{bad:?}");
        }
        assert!(check_sysctls(&map("net.ipv4.ip_forward"), pod(true)).is_err());
    }

    #[test]
    fn cgroup_parents_stay_in_the_tree() {
        assert!(check_cgroup_parent("").is_ok());
        assert!(check_cgroup_parent("/kubepods/burstable/pod-1").is_ok());
        assert!(check_cgroup_parent("kubepods-burstable.slice").is_ok());
        for bad in ["../../x", "/a/../b", "a\0b", &"x".repeat(300)] {
            let e = check_cgroup_parent(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad:?}: {e}");
        }
    }
}
