//! Creating and removing cgroup directories, and where a cgroup's OOM counter lives.
//!
//! berth creates only cgroupfs pod parents (`/berth`, `/kubepods/...` when the
//! kubelet runs with the cgroupfs driver and nothing made them); the OCI runtime
//! creates each container's own cgroup, and systemd owns slices and scopes.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{join, read_optional, relative_dir, CgroupError, Hierarchy, Mode};

/// rmdir of a cgroup whose last process just exited can fail with EBUSY for a
/// moment while the kernel finishes tearing the task down; retry this often.
const RMDIR_ATTEMPTS: u32 = 5;
const RMDIR_FIRST_DELAY: Duration = Duration::from_millis(10);

impl Hierarchy {
    /// The files holding `cgroup_path`'s OOM-kill counter (the `oom_kill` line):
    /// v1 `memory.oom_control`, v2 `memory.events`.
    pub fn oom_files(&self, cgroup_path: &str) -> Vec<PathBuf> {
        let file = match self.mode {
            Mode::V2 => "memory.events",
            Mode::V1 | Mode::Hybrid if self.v1.contains_key("memory") => "memory.oom_control",
            // A hybrid host with memory on the v2 side.
            Mode::V1 | Mode::Hybrid if self.unified.is_some() => "memory.events",
            Mode::V1 | Mode::Hybrid => return Vec::new(),
        };
        vec![self.resolve_dir("memory", cgroup_path).join(file)]
    }

    /// The directory of `cgroup_path` in every hierarchy (see [`Hierarchy::mounts`]).
    pub fn dirs(&self, cgroup_path: &str) -> Vec<PathBuf> {
        let rel = relative_dir(cgroup_path);
        self.mounts().iter().map(|m| join(m, &rel)).collect()
    }

    /// Removes `cgroup_path` from every hierarchy, child cgroups first. A hierarchy
    /// where it does not exist is skipped; one where it still holds processes is
    /// [`CgroupError::Busy`] naming the directory. Every hierarchy is tried before
    /// the first error is returned. Blocks for up to ~150 ms on a busy cgroup.
    pub fn remove(&self, cgroup_path: &str) -> Result<(), CgroupError> {
        if relative_dir(cgroup_path).as_os_str().is_empty() {
            return Err(CgroupError::InvalidPath {
                path: cgroup_path.to_string(),
                reason: "refusing to remove the root cgroup".into(),
            });
        }
        let mut first_error = None;
        for dir in self.dirs(cgroup_path) {
            if let Err(e) = remove_tree(&dir) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Creates `cgroup_path` (a cgroupfs path) and its missing ancestors in every
    /// hierarchy. In a v1 cpuset hierarchy each new directory gets its parent's
    /// `cpuset.cpus` and `cpuset.mems`, since an empty cpuset admits no process.
    /// On v2 the runtime enables controllers in `cgroup.subtree_control` itself.
    pub fn create_parent(&self, cgroup_path: &str) -> Result<(), CgroupError> {
        let rel = relative_dir(cgroup_path);
        let cpuset_mount = self.v1.get("cpuset");
        for mount in self.mounts() {
            let dir = join(&mount, &rel);
            std::fs::create_dir_all(&dir).map_err(|source| CgroupError::Create {
                path: dir.clone(),
                source,
            })?;
            if cpuset_mount == Some(&mount) {
                let mut cur = mount.clone();
                for part in rel.components() {
                    let parent = cur.clone();
                    cur.push(part);
                    inherit_cpuset(&parent, &cur)?;
                }
            }
        }
        Ok(())
    }
}

/// Copies `cpuset.cpus` and `cpuset.mems` from `parent` into `dir` where `dir`'s are empty.
fn inherit_cpuset(parent: &Path, dir: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        let current = read_optional(&own)?.unwrap_or_default();
        if !current.trim().is_empty() {
            continue;
        }
        let Some(value) = read_optional(&parent.join(file))? else {
            continue;
        };
        std::fs::write(&own, value.trim()).map_err(|source| CgroupError::Write {
            path: own.clone(),
            source,
        })?;
    }
    Ok(())
}

/// rmdir of `dir` after its child cgroups (a cgroup directory holds only control
/// files, which go with it).
fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Remove {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    let mut delay = RMDIR_FIRST_DELAY;
    for attempt in 1..=RMDIR_ATTEMPTS {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if attempt == RMDIR_ATTEMPTS {
                    return Err(CgroupError::Busy {
                        path: dir.to_path_buf(),
                    });
                }
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "manage_tests.rs"]
mod tests;
