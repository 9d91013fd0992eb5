//! sandbox: what a pod is made of before its first container — pinned
//! namespaces, the files its containers share, and (for a shared PID
//! namespace) an infra process.
//!
//! * [`pin`] / [`unpin`]: network, IPC and UTS namespaces created by
//!   `berthd ns-pin` (a fresh process: no daemon thread ever unshares) and
//!   kept by bind mounts of their nsfs files, so they outlive berthd.
//! * [`write_pod_files`] / [`unmount_pod_files`]: `/etc/hostname`,
//!   `/etc/hosts`, `/etc/resolv.conf` and the pod's `/dev/shm` tmpfs.
//! * [`infra_bundle`] + `berthd pause` ([`pause_main`]): the init of a pod's
//!   shared PID namespace, reaping orphans, run by the OCI runtime.
//!
//! Mount propagation: every mount here is made in berthd's mount namespace,
//! which must be the host's (the systemd unit must not use `PrivateMounts=`
//! or friends; in a DaemonSet, the state dir must be a `Bidirectional`
//! hostPath). A pin directory is made a shared bind mount of itself, as
//! `ip netns` does for `/run/netns`: on hosts whose `/run` is private (this
//! VM's), mount namespaces created later would otherwise keep private
//! copies of the nsfs mounts, holding namespaces alive after [`unpin`];
//! shared, the unmount propagates to them. `--make-shared` needs a mount
//! point (EINVAL on a plain directory), hence the bind of the directory onto
//! itself. On systemd hosts `/run` is already shared and this costs one mount.

mod error;
mod exec;
mod files;
mod infra;
mod lo;
mod mountinfo;
mod netdev;
mod ns_pin;
mod pause;
mod pin;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use error::{SandboxError, SandboxErrorKind};
pub use files::{unmount_pod_files, write_hosts, write_pod_files, PodFiles, SHM_SIZE};
pub use infra::{infra_bundle, infra_bundle_with, INFRA_BINARY, INFRA_ID};
pub use netdev::{parse_net_dev, read_netns_counters, InterfaceCounters};
pub use ns_pin::ns_pin_main;
pub use pause::pause_main;
pub use pin::{is_pinned, pin, unpin, NsKinds, PinnedNamespaces};
