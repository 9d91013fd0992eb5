//! Errors from setting up a pod sandbox's namespaces, files and infra process.

use std::path::PathBuf;

/// How a front door should report a [`SandboxError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxErrorKind {
    /// The request itself is wrong (a DNS entry with spaces, no namespace asked...).
    InvalidArgument,
    /// The host cannot do what was asked (a tool or a kernel feature is missing).
    FailedPrecondition,
    /// Something broke on the way.
    Internal,
}

/// Why a sandbox step failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid {what}: {reason}")]
    InvalidArgument { what: &'static str, reason: String },

    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to mount {what} on {}: {source}", target.display())]
    Mount {
        what: &'static str,
        target: PathBuf,
        #[source]
        source: nix::Error,
    },

    #[error("failed to unmount {}: {source}", target.display())]
    Unmount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },

    #[error("failed to run {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A helper (`berthd ns-pin`, `ldd`) ran but failed; `detail` is what it said.
    #[error("{helper} failed: {detail}")]
    Helper {
        helper: &'static str,
        detail: String,
    },

    #[error("{what} is missing on this host: {reason}")]
    Unsupported { what: &'static str, reason: String },

    #[error("failed to build the infra container spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
}

impl SandboxError {
    /// The class of the error, for mapping onto gRPC and HTTP codes.
    pub fn kind(&self) -> SandboxErrorKind {
        match self {
            SandboxError::InvalidArgument { .. } => SandboxErrorKind::InvalidArgument,
            SandboxError::Unsupported { .. } => SandboxErrorKind::FailedPrecondition,
            _ => SandboxErrorKind::Internal,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SandboxError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
