//! Pinned namespaces: a pod's network, IPC and UTS namespaces, kept alive by
//! bind mounts of their nsfs files so that no process has to hold them.
//!
//! ```text
//!  pin(dir) ─ make dir a shared mount ─ touch dir/{net,ipc,uts}
//!     └─ berthd ns-pin dir net,ipc,uts HOST ─ unshare ─ sethostname ─ lo up
//!                                          └─ bind /proc/thread-self/ns/<kind> -> dir/<kind>
//!  unpin ─ detach dir/<kind> ─ detach dir ─ rm dir/<kind>
//! ```
//!
//! The helper shares berthd's mount namespace, so the pins live there (the
//! host's) and outlive both the helper and berthd.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sched::CloneFlags;
use nix::sys::statfs::{statfs, NSFS_MAGIC};
use serde::{Deserialize, Serialize};

use super::exec::SelfExec;
use super::mountinfo::{detach_all, make_shared_dir};
use super::SandboxError;

/// How long `berthd ns-pin` may take before it is killed.
const PIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Which of a pod's namespaces to create and pin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NsKinds {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
}

impl NsKinds {
    /// All three, for a pod with nothing shared with the host.
    pub const ALL: NsKinds = NsKinds {
        net: true,
        ipc: true,
        uts: true,
    };

    /// The kinds asked for, by their `/proc/<pid>/ns` names.
    pub fn names(&self) -> Vec<&'static str> {
        [("net", self.net), ("ipc", self.ipc), ("uts", self.uts)]
            .into_iter()
            .filter_map(|(n, on)| on.then_some(n))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.names().is_empty()
    }

    /// The `unshare(2)` flags for these kinds.
    pub(crate) fn clone_flags(&self) -> CloneFlags {
        let mut f = CloneFlags::empty();
        f.set(CloneFlags::CLONE_NEWNET, self.net);
        f.set(CloneFlags::CLONE_NEWIPC, self.ipc);
        f.set(CloneFlags::CLONE_NEWUTS, self.uts);
        f
    }

    /// Parses the helper's argument: `net,ipc,uts` or any non-empty subset.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let mut k = NsKinds::default();
        for part in s.split(',') {
            match part {
                "net" => k.net = true,
                "ipc" => k.ipc = true,
                "uts" => k.uts = true,
                other => return Err(format!("unknown namespace kind {other:?}")),
            }
        }
        Ok(k)
    }
}

/// The pinned namespace files of a pod; `None` where the pod uses the host's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedNamespaces {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
}

impl PinnedNamespaces {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [&self.net, &self.ipc, &self.uts]
            .into_iter()
            .filter_map(|p| p.as_deref())
    }
}

/// True while `path` is a pinned namespace (an nsfs bind mount).
pub fn is_pinned(path: &Path) -> bool {
    is_nsfs(path)
}

fn is_nsfs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Creates the namespaces in `want` and pins them as `dir/net`, `dir/ipc`
/// and `dir/uts`; sets `hostname` in a new UTS namespace (ignored without
/// one). Blocking: it runs `berthd ns-pin`. On failure nothing is left behind.
///
/// `dir` becomes a shared bind mount of itself (see the module docs of
/// `sandbox` on propagation) and belongs to the pins: [`unpin`] releases
/// that mount once the directory holds nothing else.
pub fn pin(
    dir: &Path,
    want: NsKinds,
    hostname: Option<&str>,
) -> Result<PinnedNamespaces, SandboxError> {
    pin_with(&SelfExec::current()?, dir, want, hostname)
}

pub(crate) fn pin_with(
    exec: &SelfExec,
    dir: &Path,
    want: NsKinds,
    hostname: Option<&str>,
) -> Result<PinnedNamespaces, SandboxError> {
    if want.is_empty() {
        return Ok(PinnedNamespaces::default());
    }
    let hostname = hostname.filter(|_| want.uts);
    if let Some(h) = hostname {
        if h.is_empty() || h.len() > 64 || h.contains(['\0', '/']) {
            return Err(SandboxError::InvalidArgument {
                what: "hostname",
                reason: format!("{h:?} is not a valid host name (1 to 64 bytes)"),
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| SandboxError::io("create", dir, e))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| SandboxError::io("resolve", dir, e))?;
    let pinned = PinnedNamespaces {
        net: want.net.then(|| dir.join("net")),
        ipc: want.ipc.then(|| dir.join("ipc")),
        uts: want.uts.then(|| dir.join("uts")),
    };
    // Refuse before touching anything: the rollback below would tear down
    // a pin that is still in use.
    if let Some(p) = pinned.paths().find(|p| is_nsfs(p)) {
        return Err(SandboxError::InvalidArgument {
            what: "namespace directory",
            reason: format!("{} is already pinned", p.display()),
        });
    }
    let result = pin_files(exec, &dir, &pinned, want, hostname);
    if let Err(e) = result {
        // Best effort: the pin failure is the error worth reporting.
        let _ = unpin(&pinned);
        return Err(e);
    }
    Ok(pinned)
}

fn pin_files(
    exec: &SelfExec,
    dir: &Path,
    pinned: &PinnedNamespaces,
    want: NsKinds,
    hostname: Option<&str>,
) -> Result<(), SandboxError> {
    make_shared_dir(dir)?;
    for p in pinned.paths() {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(p)
            .map_err(|e| SandboxError::io("create", p, e))?;
    }
    let mut args: Vec<OsString> = vec!["ns-pin".into(), dir.into(), want.names().join(",").into()];
    args.extend(hostname.map(OsString::from));
    exec.run("ns-pin", &args, PIN_TIMEOUT)?;
    if let Some(p) = pinned.paths().find(|p| !is_nsfs(p)) {
        return Err(SandboxError::Helper {
            helper: "ns-pin",
            detail: format!(
                "{} exited without pinning {}",
                exec.program().display(),
                p.display()
            ),
        });
    }
    Ok(())
}

/// Releases pinned namespaces: detaches and removes each file, then
/// releases the directory's own mount once no other entry is left in it.
/// Idempotent: missing files and mounts are fine. Only for what [`pin`]
/// returned (or the same paths read back after a restart).
pub fn unpin(p: &PinnedNamespaces) -> Result<(), SandboxError> {
    let mut first_err = None;
    let mut dirs: Vec<&Path> = Vec::new();
    for path in p.paths() {
        if let Err(e) = detach_all(path) {
            first_err.get_or_insert(e);
            continue;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                first_err.get_or_insert(SandboxError::io("remove", path, e));
            }
        }
        if let Some(d) = path.parent().filter(|d| !dirs.contains(d)) {
            dirs.push(d);
        }
    }
    for d in dirs {
        let empty = match std::fs::read_dir(d) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                first_err.get_or_insert(SandboxError::io("read", d, e));
                false
            }
        };
        if empty {
            if let Err(e) = detach_all(d) {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}
