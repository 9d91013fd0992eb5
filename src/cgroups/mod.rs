//! The host's cgroup hierarchies: which layout the host has, where a container's
//! cgroup lives, and what it has used.
//!
//! Three layouts exist, and berth must work on all of them:
//!
//! * **v1** — one `cgroup` mount per controller (or co-mounted group) under
//!   `/sys/fs/cgroup/<controller>`, no cgroup2 mount.
//! * **hybrid** — the v1 mounts plus a `cgroup2` mount at `/sys/fs/cgroup/unified`.
//!   Every controller that is not bound to a v1 mount is attached to that v2
//!   hierarchy, and crun/runc refuse to place containers on such a host
//!   ("drop all controllers from cgroupv2"); [`Hierarchy::problem`] says so.
//! * **v2** — one `cgroup2` mount at `/sys/fs/cgroup`.
//!
//! A *cgroup path* is what goes into the OCI spec's `linux.cgroupsPath`
//! (see [`container_path`]): `/parent/berth-<id>` for the cgroupfs driver, relative
//! to every controller mount; `slice:prefix:name` for the systemd driver, which
//! [`Hierarchy::resolve_dir`] expands to the directory systemd creates.

mod detail;
mod error;
mod layout;
mod limits;
mod manage;
mod path;
mod stats;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use crate::config::CgroupDriver as Driver;
pub use detail::{BlkioEntry, Detail};
pub use error::{CgroupError, CgroupErrorKind};
pub use limits::{shares_to_weight, Limits};
pub use path::{
    container_path, expand_slice, relative_dir, DEFAULT_CGROUPFS_PARENT, DEFAULT_SYSTEMD_SLICE,
};
pub use stats::Stats;

/// Where the kernel's cgroup filesystems are conventionally mounted; crun and runc
/// look only here.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup layout of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Controllers on v1 mounts only.
    V1,
    /// v1 controller mounts plus a cgroup2 hierarchy beside them.
    Hybrid,
    /// The unified cgroup2 hierarchy only.
    V2,
}

impl Mode {
    /// A short name for logs and status messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::V1 => "v1",
            Mode::Hybrid => "hybrid",
            Mode::V2 => "v2",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cgroup filesystems visible to this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mode: Mode,
    /// v1 controller (`memory`, `cpuacct`, `name=systemd`...) → its mount point.
    /// Co-mounted controllers share one mount point. Empty in [`Mode::V2`].
    pub v1: BTreeMap<String, PathBuf>,
    /// The cgroup2 mount point, in [`Mode::Hybrid`] and [`Mode::V2`].
    pub unified: Option<PathBuf>,
    /// Enabled controllers from `/proc/cgroups` → hierarchy id (0: the v2 hierarchy).
    pub enabled: BTreeMap<String, u32>,
    /// The v2 hierarchy's `cgroup.controllers`, when it could be read.
    pub unified_controllers: Option<BTreeSet<String>>,
}

/// Detects the layout from `/proc/self/mountinfo`, `/proc/cgroups` and the v2
/// hierarchy's `cgroup.controllers`.
pub fn detect() -> Result<Hierarchy, CgroupError> {
    let mountinfo = read_required(Path::new("/proc/self/mountinfo"))?;
    // Some kernels may drop /proc/cgroups one day; the layout does not depend on it.
    let proc_cgroups = read_optional(Path::new("/proc/cgroups"))?.unwrap_or_default();
    let mut h = layout::parse(&mountinfo, &proc_cgroups)?;
    if let Some(unified) = &h.unified {
        let controllers = read_optional(&unified.join("cgroup.controllers"))?;
        h.unified_controllers = controllers.as_deref().map(layout::parse_controller_list);
    }
    Ok(h)
}

/// [`detect`] from given file contents, so any host's layout can be tested.
/// `unified_controllers` is the text of the v2 hierarchy's `cgroup.controllers`.
pub fn detect_from(
    mountinfo: &str,
    proc_cgroups: &str,
    unified_controllers: Option<&str>,
) -> Result<Hierarchy, CgroupError> {
    let mut h = layout::parse(mountinfo, proc_cgroups)?;
    if h.unified.is_some() {
        h.unified_controllers = unified_controllers.map(layout::parse_controller_list);
    }
    Ok(h)
}

impl Hierarchy {
    /// Whether containers get cgroup v2 semantics (and their own cgroup namespace).
    pub fn is_v2(&self) -> bool {
        self.mode == Mode::V2
    }

    /// The mount point holding `controller`: the cgroup2 mount on v2 hosts, the
    /// controller's v1 mount otherwise (on a hybrid host a controller found only
    /// on the v2 side resolves there). A controller mounted nowhere resolves to
    /// where it would be, `/sys/fs/cgroup/<controller>`, so reads find nothing.
    pub fn mount_for(&self, controller: &str) -> PathBuf {
        if self.mode == Mode::V2 {
            return self
                .unified
                .clone()
                .unwrap_or_else(|| PathBuf::from(CGROUP_ROOT));
        }
        if let Some(mount) = self.v1.get(controller) {
            return mount.clone();
        }
        let on_v2 = self
            .unified_controllers
            .as_ref()
            .is_some_and(|c| c.contains(controller));
        match &self.unified {
            Some(unified) if on_v2 => unified.clone(),
            _ => Path::new(CGROUP_ROOT).join(controller),
        }
    }

    /// The directory of `cgroup_path` (either driver's form) in `controller`'s hierarchy.
    pub fn resolve_dir(&self, controller: &str, cgroup_path: &str) -> PathBuf {
        join(&self.mount_for(controller), &relative_dir(cgroup_path))
    }

    /// Every mount point a runtime creates a container's cgroup under: each distinct
    /// v1 mount (named hierarchies such as `name=systemd` included) and the cgroup2 mount.
    pub fn mounts(&self) -> Vec<PathBuf> {
        let mut mounts: Vec<PathBuf> = self.v1.values().cloned().collect();
        mounts.extend(self.unified.iter().cloned());
        mounts.sort();
        mounts.dedup();
        mounts
    }
}

/// `base/rel` without the trailing slash `Path::join` adds for an empty `rel`.
fn join(base: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

fn read_required(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a file that may legitimately be missing (a controller not enabled for
/// this cgroup, an older kernel).
fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}
