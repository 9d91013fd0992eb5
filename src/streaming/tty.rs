//! The resize stream of exec and attach with a terminal: JSON terminal
//! sizes, read by [`Resizes`] (the engine's process driver applies them to
//! an exec's terminal, the monitor to an attached container's).

use serde::Deserialize;
use tokio::io::AsyncReadExt;

use super::transport::Input;

/// A resize message (`remotecommand.TerminalSize`).
#[derive(Debug, Deserialize, PartialEq, Eq)]
struct TerminalSize {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

/// Reads the resize stream: JSON terminal sizes, one object after another,
/// not necessarily aligned with DATA frames.
pub(super) struct Resizes {
    stream: Input,
    pending: Vec<u8>,
}

impl Resizes {
    pub(super) fn new(stream: Input) -> Self {
        Resizes {
            stream,
            pending: Vec::new(),
        }
    }

    /// The next size; None at the end of the stream or on bad JSON.
    pub(super) async fn next(&mut self) -> Option<(u16, u16)> {
        let mut buf = [0u8; 1024];
        loop {
            let mut it =
                serde_json::Deserializer::from_slice(&self.pending).into_iter::<TerminalSize>();
            match it.next() {
                Some(Ok(size)) => {
                    let used = it.byte_offset();
                    self.pending.drain(..used);
                    return Some((size.width, size.height));
                }
                Some(Err(e)) if !e.is_eof() => return None,
                _ => {}
            }
            match self.stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_messages_parse_as_a_stream() {
        let raw = br#"{"Width":80,"Height":24}{"Width":100,"Height":"#;
        let mut it = serde_json::Deserializer::from_slice(raw).into_iter::<TerminalSize>();
        assert_eq!(
            it.next().unwrap().unwrap(),
            TerminalSize {
                width: 80,
                height: 24
            }
        );
        assert!(it.next().unwrap().unwrap_err().is_eof());
    }
}
