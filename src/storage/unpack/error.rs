//! Errors of layer unpacking.

use std::io;
use std::path::PathBuf;

use crate::storage::resolve::ResolveError;

/// Why a layer could not be unpacked. Paths are the entry's name in the tar.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("failed to read layer tar stream: {source}")]
    Read {
        #[source]
        source: io::Error,
    },
    #[error("failed to read data of tar entry {path:?}: {source}")]
    ReadEntry {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("tar entry {path:?} is truncated: expected {expected} bytes, got {got}")]
    Truncated {
        path: String,
        expected: u64,
        got: u64,
    },
    #[error("uncompressed layer digest {actual} does not match the diff ID {expected} in the image config")]
    DiffIdMismatch { expected: String, actual: String },
    #[error("tar entry {path:?} escapes the layer root")]
    EscapesRoot { path: String },
    #[error("tar entry {path:?} has an absolute path")]
    AbsolutePath { path: String },
    #[error("tar entry {path:?} resolves through symlink {link:?} to outside the layer root")]
    SymlinkEscape { path: String, link: PathBuf },
    #[error("too many levels of symbolic links resolving tar entry {path:?}")]
    SymlinkLoop { path: String },
    #[error("parent of tar entry {path:?} is not a directory: {at:?}")]
    NotADirectory { path: String, at: PathBuf },
    #[error("tar entry {path:?} is a hard link to {target:?} outside the layer root")]
    LinkEscapes { path: String, target: String },
    #[error("tar entry {path:?} is a hard link to {target:?}, which is not in the layer")]
    LinkTargetMissing { path: String, target: String },
    #[error("tar entry {path:?} is invalid: {reason}")]
    InvalidEntry { path: String, reason: &'static str },
    #[error("tar entry {path:?} has unsupported type {typeflag:?}")]
    UnsupportedType { path: String, typeflag: char },
    #[error("failed to {op} for tar entry {path:?}: {source}")]
    Io {
        path: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("failed to set xattr {name:?} on tar entry {path:?}: {source}")]
    Xattr {
        path: String,
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to measure unpacked layer in {dir:?}: {source}")]
    Measure {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl UnpackError {
    /// True when the layer itself is at fault (corrupt, truncated or hostile),
    /// false when the host failed (disk full, permissions, ...).
    pub fn is_malformed(&self) -> bool {
        match self {
            UnpackError::Read { source } | UnpackError::ReadEntry { source, .. } => {
                source.raw_os_error().is_none()
            }
            UnpackError::Io { .. } | UnpackError::Xattr { .. } | UnpackError::Measure { .. } => {
                false
            }
            _ => true,
        }
    }
}

pub(super) fn resolve_error(e: ResolveError, path: &str) -> UnpackError {
    let path = path.to_string();
    match e {
        ResolveError::Escapes { link } => UnpackError::SymlinkEscape { path, link },
        ResolveError::Loop => UnpackError::SymlinkLoop { path },
        ResolveError::NotADirectory { at } => UnpackError::NotADirectory { path, at },
        ResolveError::Missing => UnpackError::Io {
            path,
            op: "resolve parent directory",
            source: io::ErrorKind::NotFound.into(),
        },
        ResolveError::Io(source) => UnpackError::Io {
            path,
            op: "resolve parent directory",
            source,
        },
    }
}

pub(super) fn io_error(path: &str, op: &'static str, source: io::Error) -> UnpackError {
    UnpackError::Io {
        path: path.to_string(),
        op,
        source,
    }
}

pub(super) fn invalid(path: &str, reason: &'static str) -> UnpackError {
    UnpackError::InvalidEntry {
        path: path.to_string(),
        reason,
    }
}
