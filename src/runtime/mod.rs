//! runtime: turning a CRI container request into an OCI runtime spec.
//!
//! [`build_spec`] is the entry point. It is a pure function of its
//! [`SpecInputs`] except for three reads: the image's `/etc/passwd` and
//! `/etc/group` (resolved inside the rootfs), a Localhost seccomp profile, and
//! the host's device nodes through [`HostDevices`]. Nothing here spawns a
//! process or mounts anything; the engine does that with the spec it gets.
//!
//! One file per concern: `process` (argv, env, cwd), `user`, `mounts`,
//! `devices`, `namespaces`, `resources`, `caps`, `seccomp`, `security`
//! (AppArmor choice, masked paths), `apparmor` (berth's default profile,
//! loaded at start-up), and `spec`, which puts them together.

pub mod apparmor;
pub mod caps;
pub mod devices;
mod error;
pub mod idmap;
pub mod init;
pub mod mounts;
mod namespaces;
pub mod process;
mod resources;
pub mod seccomp;
pub mod security;
pub mod spec;
pub mod tmpfs;
pub mod user;
pub mod userns;

pub use devices::{DeviceKind, HostDevFs, HostDevice, HostDevices};
pub use error::{SpecError, SpecErrorKind};
pub use mounts::SandboxFiles;
pub use spec::{build_spec, SpecInputs};

/// The OCI resources for a CRI resources update (`UpdateContainerResources`):
/// the same rules as at creation, without device rules.
pub fn update_resources(
    res: &k8s_cri::v1::LinuxContainerResources,
    swap_supported: bool,
) -> Result<oci_spec::runtime::LinuxResources, SpecError> {
    resources::build_resources(Some(res), swap_supported, vec![])
}
