//! Streaming endpoints (exec, attach, port-forward) the kubelet hands to clients.
//!
//! `spdy` is the SPDY/3.1 session layer that kubectl, crictl and the kubelet speak
//! after an HTTP/1.1 `Upgrade: SPDY/3.1`.

pub mod spdy;
