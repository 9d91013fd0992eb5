//! Server side of SPDY/3.1, as spoken by Kubernetes' streaming protocols.
//!
//! After the HTTP/1.1 upgrade (`Upgrade: SPDY/3.1`) the client opens one
//! stream per channel — `streamtype` error, stdin, stdout, stderr, resize for
//! exec/attach; data and error with `port` and `requestid` for port-forward —
//! and the server answers each SYN_STREAM with a SYN_REPLY. [`Session`] drives
//! one such connection over any `AsyncRead + AsyncWrite` and hands each
//! accepted stream out as an [`IncomingStream`].
//!
//! Header names arrive lowercase on the wire (Go's framer lowercases
//! `streamType` to `streamtype`); [`IncomingStream::header`] matches names
//! case-insensitively.

mod decode;
mod dictionary;
pub mod frame;
pub mod headers;
mod inbound;
mod session;
mod state;
mod stream;
mod writer;

#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod test_client;

pub use decode::FrameDecoder;
pub use frame::{Frame, FrameEncoder, FrameError, GoAwayStatus, RstStatus, Setting};
pub use headers::{HeaderError, Headers};
pub use session::{FlowControl, Session, SessionConfig, SessionError};
pub use stream::{IncomingStream, StreamReader, StreamWriter};

/// Initial per-stream and per-session window, in bytes (SPDY/3.1 §2.6.8).
pub const DEFAULT_WINDOW: u32 = 64 * 1024;
