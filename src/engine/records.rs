//! What the engine records about pods and containers (in the metadata store),
//! and their states.
//!
//! ```text
//! pod:        Ready ──stop──> NotReady ──remove──> (gone)
//! container:  Created ──start──> Running ──exit (monitor's exit file)──> Exited ──remove──> (gone)
//!                └────────────── remove ─────────────────────────────────────┘
//! ```
//! A container whose monitor vanished without an exit file is `Exited` with
//! reason `Unknown` after a restart; nothing is silently dropped.

use std::path::PathBuf;

use k8s_cri::v1::{ContainerConfig, PodSandboxConfig};
use serde::{Deserialize, Serialize};

/// A process identified robustly: pids are reused, (pid, start time) is not.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat (clock ticks since boot).
    pub start_time: u64,
}

impl ProcessId {
    /// Reads the start time of a live pid.
    pub fn of(pid: i32) -> Option<Self> {
        start_time(pid).map(|start_time| ProcessId { pid, start_time })
    }

    /// True while this very process exists (not a zombie).
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }

    /// Sends `signal` to this very process; false when it is gone (its pid
    /// may belong to another process by now, which is then left alone).
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> bool {
        self.alive() && nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), signal).is_ok()
    }
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum PodState {
    Ready,
    NotReady,
}

/// A pod sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    pub config: PodSandboxConfig,
    pub runtime_handler: String,
    pub created_at: i64,
    pub state: PodState,
    /// `<state>/pods/<id>`: pinned namespaces, pod files, infra bundle.
    pub dir: PathBuf,
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
    pub hostname_file: Option<PathBuf>,
    pub shm: Option<PathBuf>,
    pub cgroup_parent: String,
    /// The infra process holding the pod's PID namespace, when shared.
    pub infra: Option<ProcessId>,
    /// The monitor of the infra process (records of older berths: unknown).
    #[serde(default)]
    pub infra_monitor: Option<ProcessId>,
    /// The pod's IPs from CNI, IPv4 first.
    #[serde(default)]
    pub ips: Vec<String>,
    /// CNI ADD succeeded and no DEL has since.
    #[serde(default)]
    pub network_attached: bool,
    /// The gateways CNI gave the pod's addresses (the host's side of its
    /// network: Docker's `host-gateway`), IPv4 first.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Every CNI attachment of the pod, `eth0` first. Records written before
    /// the list existed have it empty: see [`PodRecord::attachments`].
    #[serde(default)]
    pub networks: Vec<NetworkAttachment>,
    /// The containers whose namespaces this pod's containers join instead
    /// of the pod's own (see [`super::joined`]).
    #[serde(default)]
    pub joined: super::joined::JoinedNamespaces,
}

/// One network a pod is attached to: one CNI ADD on one interface of the
/// pod's netns. The exact ADD input (config, `CNI_ARGS`, capabilities,
/// result) is in the CNI attachment cache under (`cni_network`, pod id), so
/// a DEL after a restart repeats it; this is what the doors show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    /// The network's name as Docker shows it (`bridge` for the node's
    /// default CNI network, else a user network's name).
    pub network: String,
    /// The Docker network id (empty for the default network: the door
    /// knows the predefined ids).
    #[serde(default)]
    pub network_id: String,
    /// The CNI network config's name (the attachment cache's key).
    #[serde(default)]
    pub cni_network: String,
    /// The interface in the pod's netns (`eth0`, `eth1`, …).
    pub ifname: String,
    /// The addresses CNI gave it, IPv4 first, without prefix.
    #[serde(default)]
    pub ips: Vec<String>,
    /// The prefix length of the first address (0 when unknown).
    #[serde(default)]
    pub prefix_len: u8,
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub mac: String,
    /// Network-scoped names (`--network-alias`, compose's service name).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The address asked for (`--ip`), given to host-local as `CNI_ARGS` `IP`.
    #[serde(default)]
    pub requested_ip: String,
}

impl PodRecord {
    /// The pod's network attachments. A record of an older berth (one
    /// network, named by the pod's annotation, on `eth0`) reads as a list
    /// of one.
    pub fn attachments(&self) -> Vec<NetworkAttachment> {
        if !self.networks.is_empty() || !self.network_attached {
            return self.networks.clone();
        }
        let ann = |k: &str| self.config.annotations.get(k).cloned().unwrap_or_default();
        let named = ann(super::docker::NETWORK_ANNOTATION);
        let network = match named.as_str() {
            "" | "default" => "bridge".to_string(),
            _ => named,
        };
        vec![NetworkAttachment {
            network,
            network_id: ann(super::docker::NETWORK_ID_ANNOTATION),
            cni_network: String::new(),
            ifname: crate::network::DEFAULT_IFNAME.into(),
            ips: self.ips.clone(),
            prefix_len: 0,
            gateway: self.gateways.first().cloned().unwrap_or_default(),
            mac: String::new(),
            aliases: vec![],
            requested_ip: String::new(),
        }]
    }

    /// Records `list` as the pod's attachments; the pod's own addresses
    /// (CRI's PodSandboxStatus) are those of the first.
    pub fn set_attachments(&mut self, list: Vec<NetworkAttachment>) {
        self.network_attached = !list.is_empty();
        self.ips = list.first().map(|a| a.ips.clone()).unwrap_or_default();
        self.gateways = list
            .first()
            .map(|a| a.gateway.clone())
            .filter(|g| !g.is_empty())
            .into_iter()
            .collect();
        self.networks = list;
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
}

/// A container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub config: ContainerConfig,
    /// The image id (config digest) and the name it was asked for by.
    pub image_id: String,
    pub image_name: String,
    /// The snapshots stacked under the rootfs (kept while the container exists).
    #[serde(default)]
    pub snapshots: Vec<String>,
    /// Snapshots of the images mounted as image volumes (held as long).
    #[serde(default)]
    pub volume_snapshots: Vec<String>,
    pub runtime_handler: String,
    pub state: ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// `<state>/containers/<id>`: bundle, monitor config, exit file.
    pub dir: PathBuf,
    /// `<root>/containers/<id>`: the writable layer.
    pub layer_dir: PathBuf,
    pub log_path: Option<PathBuf>,
    pub pid: Option<ProcessId>,
    /// The monitor that holds the container's stdio and records its exit.
    pub monitor: Option<ProcessId>,
    pub cgroups_path: String,
    /// Frozen by `pause` (the OCI runtime's freezer); still `Running`.
    #[serde(default)]
    pub paused: bool,
    /// The Docker health check (image's merged with the create request's).
    #[serde(default)]
    pub health: Option<super::health::HealthConfig>,
    /// Restarts by the Docker restart policy since the user last started
    /// it (Docker's `RestartCount`); records of older berths read as 0.
    #[serde(default)]
    pub restart_count: u32,
    /// What the engine does when the container exits (Docker's restart
    /// policy and `--rm`); CRI's containers keep the default, nothing.
    #[serde(default)]
    pub exit_policy: ExitPolicy,
    /// Stopped or killed by its user since it last started: `always` waits
    /// for a daemon start, `unless-stopped` for the user (Docker's
    /// `HasBeenManuallyStopped`).
    #[serde(default)]
    pub stopped_by_user: bool,
    /// How a stop without its own signal or grace period stops it (Docker's
    /// `StopSignal`, `StopTimeout`).
    #[serde(default)]
    pub stop: StopPolicy,
}

/// A container's own stop settings; unset: the image's `StopSignal` (else
/// SIGTERM) and the caller's grace period (Docker's default 10 s).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopPolicy {
    /// A signal name (`TERM`, `SIGUSR1`) or number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Seconds between the signal and SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<i64>,
}

/// A container's exit policy: a restart policy, or removal (`--rm`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitPolicy {
    #[serde(default)]
    pub restart: Restart,
    #[serde(default)]
    pub auto_remove: bool,
}

/// Docker's restart policies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum Restart {
    #[default]
    No,
    Always,
    UnlessStopped,
    /// Restarted after a non-zero exit, at most `max_retries` times in a
    /// row (0: without limit).
    OnFailure {
        max_retries: u32,
    },
}

impl Restart {
    /// Docker's policy name and retry count (`on-failure`, 3).
    pub fn docker(&self) -> (&'static str, u32) {
        match self {
            Restart::No => ("no", 0),
            Restart::Always => ("always", 0),
            Restart::UnlessStopped => ("unless-stopped", 0),
            Restart::OnFailure { max_retries } => ("on-failure", *max_retries),
        }
    }

    /// The policy Docker names `name` (`""` is `no`), with `max_retries`
    /// for on-failure; `None` for a name Docker does not know.
    pub fn from_docker(name: &str, max_retries: u32) -> Option<Restart> {
        Some(match name {
            "" | "no" => Restart::No,
            "always" => Restart::Always,
            "unless-stopped" => Restart::UnlessStopped,
            "on-failure" => Restart::OnFailure { max_retries },
            _ => return None,
        })
    }
}

impl ContainerRecord {
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    /// Where the container's monitor writes its exit: `exit.pb`, or
    /// `exit.json` for a monitor an older berthd started (see
    /// [`crate::monitor::proto`]).
    pub fn exit_file(&self) -> PathBuf {
        use crate::monitor::proto::Protocol;
        Protocol::of_bundle(&self.dir).exit_file_in(&self.dir)
    }
    /// Where image volume `i` is mounted.
    pub fn image_volume(&self, i: usize) -> PathBuf {
        self.dir.join("image-volumes").join(i.to_string())
    }
    /// Every snapshot the container holds (rootfs and image volumes).
    pub fn held_snapshots(&self) -> Vec<String> {
        let mut all = self.snapshots.clone();
        all.extend(self.volume_snapshots.iter().cloned());
        all
    }
}

/// Unix nanoseconds now.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A new 64-hex-character id.
pub fn new_id() -> String {
    let mut b = [0u8; 32];
    use std::io::Read;
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let n = now_nanos().to_le_bytes();
        b[..8].copy_from_slice(&n);
        b[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    hex::encode(b)
}

#[cfg(test)]
impl ContainerRecord {
    /// A record with every field empty, for unit tests.
    pub(crate) fn sample(id: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            pod_id: "p".into(),
            config: ContainerConfig::default(),
            image_id: String::new(),
            image_name: String::new(),
            snapshots: vec![],
            volume_snapshots: vec![],
            runtime_handler: String::new(),
            state: ContainerState::Exited,
            created_at: 0,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            dir: PathBuf::new(),
            layer_dir: PathBuf::new(),
            log_path: None,
            pid: None,
            monitor: None,
            cgroups_path: String::new(),
            paused: false,
            health: None,
            restart_count: 0,
            exit_policy: ExitPolicy::default(),
            stopped_by_user: false,
            stop: StopPolicy::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotations: &[(&str, &str)], attached: bool) -> PodRecord {
        let mut config = PodSandboxConfig::default();
        for (k, v) in annotations {
            config.annotations.insert(k.to_string(), v.to_string());
        }
        PodRecord {
            id: "p".into(),
            config,
            runtime_handler: String::new(),
            created_at: 0,
            state: PodState::Ready,
            dir: PathBuf::new(),
            netns: None,
            ipcns: None,
            utsns: None,
            hosts: None,
            resolv_conf: None,
            hostname_file: None,
            shm: None,
            cgroup_parent: String::new(),
            infra: None,
            infra_monitor: None,
            ips: vec!["10.89.3.4".into()],
            network_attached: attached,
            gateways: vec!["10.89.3.1".into()],
            networks: vec![],
            joined: Default::default(),
        }
    }

    #[test]
    fn records_of_one_network_read_as_a_list_of_one() {
        use super::super::docker::{NETWORK_ANNOTATION, NETWORK_ID_ANNOTATION};
        let old = pod(
            &[
                (NETWORK_ANNOTATION, "front"),
                (NETWORK_ID_ANNOTATION, "abc"),
            ],
            true,
        );
        let list = old.attachments();
        assert_eq!(list.len(), 1);
        let a = &list[0];
        assert_eq!(
            (a.network.as_str(), a.network_id.as_str(), a.ifname.as_str()),
            ("front", "abc", "eth0")
        );
        assert_eq!(
            (a.ips.clone(), a.gateway.as_str()),
            (vec!["10.89.3.4".to_string()], "10.89.3.1")
        );
        assert_eq!(pod(&[], true).attachments()[0].network, "bridge");
        assert!(pod(&[], false).attachments().is_empty());
        // An old record (no `networks` field) still deserializes.
        let mut v = serde_json::to_value(pod(&[], true)).unwrap();
        v.as_object_mut().unwrap().remove("networks");
        let back: PodRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back.attachments().len(), 1);
    }

    #[test]
    fn the_first_attachment_gives_the_pod_its_addresses() {
        let mut p = pod(&[], true);
        let a = |n: &str, ip: &str| NetworkAttachment {
            network: n.into(),
            ifname: "eth0".into(),
            ips: vec![ip.into()],
            gateway: "10.1.0.1".into(),
            ..Default::default()
        };
        p.set_attachments(vec![a("x", "10.1.0.5"), a("y", "10.2.0.5")]);
        assert!(p.network_attached);
        assert_eq!(p.ips, ["10.1.0.5"]);
        assert_eq!(p.gateways, ["10.1.0.1"]);
        p.set_attachments(vec![]);
        assert!(!p.network_attached && p.ips.is_empty() && p.gateways.is_empty());
    }

    #[test]
    fn container_records_of_older_berths_read_with_defaults() {
        let rec = ContainerRecord {
            exit_code: 3,
            restart_count: 2,
            exit_policy: ExitPolicy {
                restart: Restart::OnFailure { max_retries: 3 },
                auto_remove: false,
            },
            stopped_by_user: true,
            ..ContainerRecord::sample("c")
        };
        let mut v = serde_json::to_value(&rec).unwrap();
        assert_eq!(
            v["exit_policy"]["restart"],
            serde_json::json!({"name": "on-failure", "max_retries": 3})
        );
        let kept: ContainerRecord = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(kept.restart_count, 2);
        assert_eq!(kept.exit_policy, rec.exit_policy);
        assert!(kept.stopped_by_user);
        for k in ["restart_count", "exit_policy", "stopped_by_user"] {
            v.as_object_mut().unwrap().remove(k);
        }
        let old: ContainerRecord = serde_json::from_value(v).unwrap();
        assert_eq!(old.restart_count, 0);
        assert_eq!(old.exit_policy, ExitPolicy::default());
        assert!(!old.stopped_by_user);
    }

    #[test]
    fn own_process_is_alive_and_ids_are_unique() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert!(me.alive());
        let other = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(
            !other.alive(),
            "same pid, another start time: not the same process"
        );
        assert_ne!(new_id(), new_id());
        assert_eq!(new_id().len(), 64);
    }
}
