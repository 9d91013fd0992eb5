//! Streaming endpoints (exec, attach, port-forward) the kubelet hands to clients.
//!
//! `spdy` is the SPDY/3.1 session layer that kubectl, crictl and the kubelet speak
//! after an HTTP/1.1 `Upgrade: SPDY/3.1`. `cache` keeps the requests the CRI
//! calls validated until their client connects to `server`, which upgrades the
//! connection and runs `exec` (with `tty` for terminals), `attach` or
//! `portforward`.

mod attach;
pub mod cache;
mod exec;
mod portforward;
pub mod server;
pub mod spdy;
mod tty;

pub use cache::{ExecRequest, Request};
pub use server::{Server, Streaming};
