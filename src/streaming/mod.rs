//! Streaming endpoints (exec, attach, port-forward) the kubelet hands to clients.
//!
//! `cache` keeps the requests the CRI calls validated until their client
//! connects to `server`, which upgrades the connection — to SPDY/3.1 (`spdy`)
//! or WebSocket (`ws`), with the sub-protocol `negotiate` picks — and runs
//! `exec` (with `tty` for terminals), `attach` or `portforward` on it.
//! Those see the connection through `transport`, whichever it is; `open`
//! sets up exec and attach channels on either; `idle` closes connections
//! that carry nothing for `cri.stream_idle_timeout`; `tls` makes the server
//! speak HTTPS when `cri.streaming_tls` is set.

mod attach;
pub mod cache;
mod exec;
pub mod idle;
pub mod negotiate;
mod open;
mod portforward;
pub mod server;
pub mod spdy;
pub mod tls;
mod transport;
mod tty;
pub mod ws;

pub use cache::{ExecRequest, Request};
pub use idle::IdleTimeout;
pub use server::{Server, Streaming};
pub use transport::{Negotiated, Transport};
