//! Errors from loading CNI network configs and running CNI plugins.

use std::path::PathBuf;

/// How a front door should report a [`CniError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniErrorKind {
    /// Something the caller named does not exist (no cached attachment).
    NotFound,
    /// The caller passed something unusable (a container id with a `/`).
    InvalidArgument,
    /// The node cannot do it as configured (no plugin binary, bad config).
    FailedPrecondition,
    /// A plugin or the host failed on the way.
    Internal,
}

/// Why a CNI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid network config {}: {reason}", path.display())]
    InvalidConfig { path: PathBuf, reason: String },

    #[error("invalid {what}: {reason}")]
    InvalidArgument { what: &'static str, reason: String },

    #[error("cni plugin {plugin:?} not found in {}", join_dirs(dirs))]
    PluginNotFound { plugin: String, dirs: Vec<PathBuf> },

    #[error("failed to run cni plugin {}: {source}", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The plugin answered with a CNI error object `{code, msg, details}`.
    #[error("cni plugin {plugin} failed on {command} (code {code}): {msg}{}",
        if details.is_empty() { String::new() } else { format!(": {details}") })]
    Plugin {
        plugin: String,
        command: &'static str,
        code: u64,
        msg: String,
        details: String,
    },

    /// The plugin failed without a CNI error object on stdout.
    #[error("cni plugin {plugin} failed on {command} ({status}): {output}")]
    Exit {
        plugin: String,
        command: &'static str,
        status: String,
        output: String,
    },

    #[error("cni plugin {plugin} timed out on {command} after {secs} s")]
    Timeout {
        plugin: String,
        command: &'static str,
        secs: u64,
    },

    #[error("cni plugin {plugin} returned an invalid result on {command}: {reason}")]
    BadResult {
        plugin: String,
        command: &'static str,
        reason: String,
    },

    #[error("no cni attachment is recorded for container {container_id}")]
    NotAttached { container_id: String },
}

impl CniError {
    /// The class of this error, for mapping to a wire status.
    pub fn kind(&self) -> CniErrorKind {
        match self {
            Self::NotAttached { .. } => CniErrorKind::NotFound,
            Self::InvalidArgument { .. } => CniErrorKind::InvalidArgument,
            Self::InvalidConfig { .. } | Self::PluginNotFound { .. } => {
                CniErrorKind::FailedPrecondition
            }
            _ => CniErrorKind::Internal,
        }
    }

    /// True for the CNI "try again later" error (code 11).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Plugin { code: 11, .. })
    }
}

fn join_dirs(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "(no plugin directories configured)".into();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
