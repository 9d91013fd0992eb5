//! Errors from reading and changing the host's cgroup hierarchies.

use std::path::PathBuf;

/// How a caller should report a [`CgroupError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupErrorKind {
    /// The cgroup does not exist (the container is gone or never started).
    NotFound,
    /// The cgroup path given is not acceptable.
    InvalidArgument,
    /// The host's state prevents the operation (a cgroup still has processes).
    FailedPrecondition,
    /// Something broke while reading or writing the cgroup filesystem.
    Internal,
}

/// Why a cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to parse {}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },

    #[error("failed to parse mountinfo line {line}: {reason}")]
    MountInfo { line: usize, reason: String },

    #[error("no cgroup filesystem is mounted (no cgroup or cgroup2 entry in mountinfo)")]
    NoCgroupMounts,

    #[error("cgroup {} does not exist", path.display())]
    NotFound { path: PathBuf },

    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },

    #[error("failed to remove cgroup {}: it still holds processes or child cgroups", path.display())]
    Busy { path: PathBuf },

    #[error("failed to remove cgroup {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to create cgroup {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CgroupError {
    /// The class of failure, for mapping to a wire status once at the edge.
    pub fn kind(&self) -> CgroupErrorKind {
        match self {
            CgroupError::NotFound { .. } => CgroupErrorKind::NotFound,
            CgroupError::InvalidPath { .. } => CgroupErrorKind::InvalidArgument,
            CgroupError::Busy { .. } | CgroupError::NoCgroupMounts => {
                CgroupErrorKind::FailedPrecondition
            }
            _ => CgroupErrorKind::Internal,
        }
    }
}
