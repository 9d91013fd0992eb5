//! Images: references, the registry client (OCI distribution), the content store
//! and the pull pipeline that turns a reference into verified blobs and unpacked
//! snapshots.

pub mod archive;
pub mod auth;
pub mod content;
pub mod digest;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod remote;
pub mod service;
pub mod session;

pub use digest::Digest;
pub use reference::Reference;
pub use service::{ImageRecord, ImageService, SnapshotHolds};

use std::path::PathBuf;

/// How an error should be reported to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    /// The image's content is bad: digest or size mismatch, unsafe tar, bad manifest.
    BadContent,
    Unavailable,
    Internal,
}

/// Errors of the image subsystem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("failed to fetch {what} from {url}: {status}{}", fmt_detail(.detail))]
    Registry {
        what: String,
        url: String,
        status: u16,
        detail: String,
    },
    #[error("failed to reach registry at {url}: {source:#}")]
    Network {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("authentication with {registry} failed: {reason}")]
    Auth { registry: String, reason: String },
    /// Docker's words for refused credentials.
    #[error("login attempt to {url} failed with status: {status}")]
    LoginFailed { url: String, status: String },
    #[error("failed to search {registry}: {reason}")]
    Search { registry: String, reason: String },
    #[error("no answer from {url} in {after:?}")]
    Timeout {
        url: String,
        after: std::time::Duration,
    },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what}: {reason}")]
    BadManifest { what: String, reason: String },
    #[error("failed to unpack layer {layer}: {source}")]
    Unpack {
        layer: String,
        #[source]
        source: Box<crate::storage::StorageError>,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("image metadata store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("operation cancelled: {0}")]
    Cancelled(String),
}

fn fmt_detail(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(": {d}")
    }
}

impl Error {
    /// The class of this error, for mapping onto gRPC / HTTP codes.
    pub fn kind(&self) -> Kind {
        match self {
            Error::InvalidReference { .. } => Kind::InvalidArgument,
            Error::NotFound(_) => Kind::NotFound,
            Error::Registry { status, .. } => match status {
                401 => Kind::Unauthenticated,
                403 => Kind::PermissionDenied,
                404 => Kind::NotFound,
                400..=499 => Kind::InvalidArgument,
                _ => Kind::Unavailable,
            },
            Error::Network { .. } => Kind::Unavailable,
            Error::Auth { .. } | Error::LoginFailed { .. } => Kind::Unauthenticated,
            Error::Search { .. } | Error::Timeout { .. } => Kind::Unavailable,
            Error::DigestMismatch { .. }
            | Error::SizeMismatch { .. }
            | Error::BadManifest { .. } => Kind::BadContent,
            Error::Unpack { source, .. }
                if source.kind() == crate::storage::ErrorKind::InvalidArgument =>
            {
                Kind::BadContent
            }
            Error::Unpack { .. } | Error::Io { .. } | Error::Store(_) => Kind::Internal,
            Error::Cancelled(_) => Kind::Unavailable,
        }
    }

    pub(crate) fn unpack(layer: impl Into<String>, source: crate::storage::StorageError) -> Self {
        Error::Unpack {
            layer: layer.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Where the image subsystem keeps its files under the persistent root.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `<root>/blobs/sha256/<hex>`
    pub blobs: PathBuf,
    /// `<root>/ingest/`, partial downloads
    pub ingest: PathBuf,
    /// `<root>/snapshots/<chain-id-hex>/fs`
    pub snapshots: PathBuf,
}

impl Paths {
    /// The standard layout below `root`.
    pub fn under(root: &std::path::Path) -> Self {
        Paths {
            blobs: root.join("blobs"),
            ingest: root.join("ingest"),
            snapshots: root.join("snapshots"),
        }
    }
}
#[cfg(test)]
mod tests;
