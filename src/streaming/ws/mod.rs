//! Server side of WebSocket (RFC 6455) as Kubernetes' streaming protocols use
//! it: the `channel.k8s.io` family for exec and attach (v1 to v5, binary or
//! base64), the same channels for port-forward, and SPDY tunnelled in binary
//! messages for port-forward from newer clients.
//!
//! The wire protocol (RFC 6455 framing, masking, control frames, the close
//! handshake) is tungstenite's; `session` is one connection's channels. The
//! HTTP upgrade itself is answered by the streaming server (`negotiate`),
//! with [`accept_key`].

mod session;

#[cfg(test)]
mod session_tests;

pub use session::{
    close_code, ChannelConfig, ChannelReader, ChannelReaders, ChannelWriter, Codec, Session, Tunnel,
};

use base64::Engine as _;
use sha1::{Digest as _, Sha1};

/// The GUID RFC 6455 §1.3 appends to the client's key.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for the client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    let digest = sha.finalize();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

#[cfg(test)]
mod tests {
    #[test]
    fn accept_key_matches_rfc6455_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            super::accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
