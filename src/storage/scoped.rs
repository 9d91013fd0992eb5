//! Paths inside a container's root resolved the way a chroot resolves them:
//! symlinks are followed *inside* the root — an absolute target restarts at
//! the root and `..` never climbs above it (moby's scoped resolver,
//! containerd's secure join) — so nothing outside the root is reached by
//! following what the image or the container put there. Used by `docker
//! cp` and by reading the image's user databases.
//!
//! (Layer unpacking has its own, stricter resolver in [`super::resolve`]: a
//! layer entry that climbs above the root is refused, not clamped.)
//!
//! Resolution is by path, not by descriptor: a running container that swaps
//! a directory for a symlink between the check and the use could race it.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed in one resolution before giving up (the kernel's limit is 40;
/// moby's scoped resolver allows 255).
const MAX_LINKS: usize = 255;

/// `/` + `path`, cleaned lexically (Go's `filepath.Join("/", path)`).
pub fn clean_abs(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The host path of container path `cpath` (absolute, clean) under `root`.
pub fn host_path(root: &Path, cpath: &Path) -> PathBuf {
    root.join(cpath.strip_prefix("/").unwrap_or(cpath))
}

/// Resolves container path `cpath` under `root`, following symlinks inside
/// the root (the last component too when `follow_last`). Missing components
/// are kept as they are, so the result of a broken link is where it points.
/// Returns the resolved container path (absolute, clean).
pub fn resolve(root: &Path, cpath: &Path, follow_last: bool) -> io::Result<PathBuf> {
    let mut todo: Vec<OsString> = names(cpath).into_iter().rev().collect();
    let mut done = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            done.pop();
            continue;
        }
        let next = done.join(&name);
        let last = todo.is_empty();
        let meta = std::fs::symlink_metadata(host_path(root, &next));
        let is_link = meta.as_ref().is_ok_and(|m| m.file_type().is_symlink());
        if !is_link || (last && !follow_last) {
            done = next;
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("too many links resolving {}", cpath.display()),
            ));
        }
        let target = std::fs::read_link(host_path(root, &next))?;
        if target.is_absolute() {
            done = PathBuf::from("/");
        }
        todo.extend(names(&target).into_iter().rev());
    }
    Ok(done)
}

/// The normal and `..` components of a path.
pub(crate) fn names(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}
