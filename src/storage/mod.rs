//! Layer storage: unpacking OCI image layers into snapshot directories that
//! overlayfs stacks as lower layers.
//!
//! On disk, under the store root (mode 0700, so host users cannot reach the
//! set-id binaries that images ship):
//!
//! ```text
//! <root>/<chain id>/fs          the unpacked layer, whiteouts in overlay form
//! <root>/<chain id>/info.json   its SnapshotInfo
//! <root>/.tmp-*                 unpacks and removals in flight
//! ```
//!
//! A snapshot appears by renaming a finished temp directory into place, and
//! disappears by renaming it back to a temp name before deleting it, so a
//! crash never leaves a half-made `<chain id>`; `SnapshotStore::open` sweeps
//! the temp directories a crash leaves behind.

pub mod compression;
pub mod cp;
pub mod diff;
mod resolve;
pub mod scoped;
pub mod snapshot;
#[cfg(test)]
mod testutil;
mod tree;
pub mod unpack;
pub mod usage;
pub mod volumes;

use std::io;
use std::path::PathBuf;

pub use compression::{decompressor, Compression};
pub use snapshot::{SnapshotInfo, SnapshotStore, Usage};
pub use unpack::{unpack_layer, UnpackError};

/// Makes the mount point `dest` (an absolute path inside the container)
/// under `rootfs` as the host's root: a directory, or an empty file when
/// `file`. Symlinks on the way are followed inside `rootfs` only. For
/// user-namespaced containers, whose runtime cannot create them in an image
/// owned by the host's root. Blocking.
pub fn make_mount_point(rootfs: &std::path::Path, dest: &str, file: bool) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let parts = resolve::split_entry_path(dest.trim_start_matches('/').as_bytes())
        .map_err(|_| io::Error::other(format!("bad mount point {dest:?}")))?;
    let (dirs, leaf) = match (file, parts.split_last()) {
        (true, Some((leaf, dirs))) => (dirs, Some(*leaf)),
        _ => (parts.as_slice(), None),
    };
    let parent = resolve::resolve_dir(rootfs, dirs, true)
        .map_err(|e| io::Error::other(format!("mount point {dest:?}: {e:?}")))?;
    if let Some(leaf) = leaf {
        if leaf.as_bytes() == b".." {
            return Err(io::Error::other(format!("bad mount point {dest:?}")));
        }
        let path = parent.join(leaf);
        // An existing entry (even a symlink) is left to the runtime.
        if std::fs::symlink_metadata(&path).is_err() {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
        }
    }
    Ok(())
}

/// Broad classes of [`StorageError`], for mapping to wire status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad key, or a layer that is corrupt, truncated or hostile.
    InvalidArgument,
    /// The snapshot or the layer blob does not exist.
    NotFound,
    /// The host failed: I/O, permissions, disk full.
    Internal,
}

/// Errors from the snapshot store. Messages include their cause, so a bare
/// `{}` names the offending tar entry; `source()` still exposes the chain.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid snapshot key {key:?}: want 64 lowercase hex characters")]
    InvalidKey { key: String },
    #[error("snapshot {key} does not exist")]
    NotFound { key: String },
    #[error("failed to open layer blob {path:?}: {source}")]
    OpenBlob {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to unpack layer {blob:?} into snapshot {key}: {source}")]
    Unpack {
        key: String,
        blob: PathBuf,
        #[source]
        source: UnpackError,
    },
    #[error("failed to {op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl StorageError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::InvalidKey { .. } => ErrorKind::InvalidArgument,
            StorageError::NotFound { .. } => ErrorKind::NotFound,
            StorageError::OpenBlob { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            StorageError::Unpack { source, .. } if source.is_malformed() => {
                ErrorKind::InvalidArgument
            }
            _ => ErrorKind::Internal,
        }
    }

    fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| StorageError::Io { op, path, source }
    }
}

/// True when `path` is a mount point (listed in /proc/self/mountinfo).
pub fn is_mounted(path: &std::path::Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == want)
}

#[cfg(test)]
mod mount_point_tests {
    #[test]
    fn mount_points_stay_inside_the_rootfs() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("evil")).unwrap();
        super::make_mount_point(root.path(), "/evil/vol", false).unwrap();
        super::make_mount_point(root.path(), "/etc/hosts", true).unwrap();
        assert!(
            std::fs::read_dir(outside.path()).unwrap().next().is_none(),
            "nothing made outside the rootfs"
        );
        let inside = root.path().join(outside.path().strip_prefix("/").unwrap());
        assert!(inside.join("vol").is_dir(), "the link was followed inside");
        assert!(root.path().join("etc/hosts").is_file());
        assert!(super::make_mount_point(root.path(), "/a/..", true).is_err());
    }
}
