//! Errors from building a container's OCI runtime spec.

use std::path::PathBuf;

/// How the CRI front door should report a [`SpecError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecErrorKind {
    /// The request itself is wrong (bad capability, relative path, unknown user...).
    InvalidArgument,
    /// The request is fine but the host or sandbox cannot honour it.
    FailedPrecondition,
    /// Something broke while reading files.
    Internal,
}

/// Why a runtime spec could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no command specified: the container config and the image both lack a command")]
    NoCommand,

    #[error("unknown capability {name:?}")]
    UnknownCapability { name: String },

    #[error("capability {name} is not available on this host")]
    CapabilityUnavailable { name: String },

    #[error("unable to find user {name}: no matching entries in passwd file")]
    UnknownUser { name: String },

    #[error("unable to find group {name}: no matching entries in group file")]
    UnknownGroup { name: String },

    #[error("invalid user {user:?}: {reason}")]
    InvalidUser { user: String, reason: String },

    #[error("working directory {dir:?} must be an absolute path")]
    InvalidWorkingDir { dir: String },

    #[error("failed to read {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid mount {container_path:?}: {reason}")]
    InvalidMount {
        container_path: String,
        reason: String,
    },

    #[error("invalid device {container_path:?}: {reason}")]
    InvalidDevice {
        container_path: String,
        reason: String,
    },

    #[error("failed to look up host device {}: {source}", host_path.display())]
    DeviceLookup {
        host_path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid resources: {reason}")]
    InvalidResources { reason: String },

    #[error("invalid namespace options: {reason}")]
    InvalidNamespace { reason: String },

    #[error("privileged containers are not allowed in a non-privileged pod sandbox")]
    PrivilegedNotAllowed,

    #[error("invalid seccomp profile {profile:?}: {reason}")]
    InvalidSeccompProfile { profile: String, reason: String },

    #[error("failed to read seccomp profile {}: {source}", path.display())]
    ReadSeccompProfile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to parse seccomp profile {}: {source}", path.display())]
    ParseSeccompProfile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("invalid apparmor profile {profile:?}: {reason}")]
    InvalidAppArmorProfile { profile: String, reason: String },

    #[error("apparmor is not enabled on this host, cannot apply profile {profile:?}")]
    AppArmorUnavailable { profile: String },

    #[error("failed to assemble the runtime spec: {0}")]
    Assemble(#[from] oci_spec::OciSpecError),
}

impl SpecError {
    /// The class of failure, for mapping to a wire status once at the edge.
    pub fn kind(&self) -> SpecErrorKind {
        match self {
            SpecError::ReadFile { .. } | SpecError::Assemble(_) => SpecErrorKind::Internal,
            SpecError::DeviceLookup { .. }
            | SpecError::PrivilegedNotAllowed
            | SpecError::CapabilityUnavailable { .. }
            | SpecError::AppArmorUnavailable { .. }
            | SpecError::ReadSeccompProfile { .. }
            | SpecError::ParseSeccompProfile { .. } => SpecErrorKind::FailedPrecondition,
            _ => SpecErrorKind::InvalidArgument,
        }
    }
}
