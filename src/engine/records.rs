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
}

impl ContainerRecord {
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn exit_file(&self) -> PathBuf {
        self.dir.join("exit.json")
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
mod tests {
    use super::*;

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
