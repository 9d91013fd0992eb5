//! Parsing frames off the wire (the layout is drawn in `frame`).

use bytes::{Buf, Bytes, BytesMut};

use super::frame::{kind, Frame, FrameError, GoAwayStatus, RstStatus, Setting};
use super::frame::{HEADER_LEN, STREAM_ID_MASK, VERSION};
use super::headers::HeaderDecoder;

/// Parses frames for one direction of a session.
#[derive(Default)]
pub struct FrameDecoder {
    headers: HeaderDecoder,
}

/// Fails with an `Invalid` error naming the frame type unless `ok`.
fn need(ok: bool, kind: &'static str, reason: &'static str) -> Result<(), FrameError> {
    if ok {
        Ok(())
    } else {
        Err(FrameError::Invalid { kind, reason })
    }
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one whole frame off the front of `src`, or returns `None` (and
    /// reserves room) when more bytes are needed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let word = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        let flags = src[4];
        let len = u32::from_be_bytes([0, src[5], src[6], src[7]]) as usize;
        if src.len() < HEADER_LEN + len {
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let data = src.split_to(len).freeze();
        if word & 0x8000_0000 == 0 {
            let stream_id = word & STREAM_ID_MASK;
            need(stream_id != 0, "DATA", "stream id 0")?;
            return Ok(Some(Frame::Data {
                stream_id,
                flags,
                data,
            }));
        }
        let version = ((word >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        self.control((word & 0xffff) as u16, flags, data).map(Some)
    }

    fn control(&mut self, code: u16, flags: u8, mut p: Bytes) -> Result<Frame, FrameError> {
        let len = p.len();
        Ok(match code {
            kind::SYN_STREAM => {
                need(len >= 10, "SYN_STREAM", "too short")?;
                let stream_id = p.get_u32() & STREAM_ID_MASK;
                let associated_to = p.get_u32() & STREAM_ID_MASK;
                let priority = p.get_u8() >> 5;
                let slot = p.get_u8();
                let headers = self.headers.decode(&p)?;
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    slot,
                    flags,
                    headers,
                }
            }
            kind::SYN_REPLY | kind::HEADERS => {
                need(len >= 4, "SYN_REPLY/HEADERS", "too short")?;
                let stream_id = p.get_u32() & STREAM_ID_MASK;
                let headers = self.headers.decode(&p)?;
                if code == kind::SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            kind::RST_STREAM => {
                need(len == 8, "RST_STREAM", "wrong length")?;
                let stream_id = p.get_u32() & STREAM_ID_MASK;
                Frame::RstStream {
                    stream_id,
                    status: RstStatus(p.get_u32()),
                }
            }
            kind::SETTINGS => {
                need(len >= 4, "SETTINGS", "too short")?;
                let count = p.get_u32() as usize;
                let fits = count.checked_mul(8) == Some(p.len());
                need(fits, "SETTINGS", "entry count does not match length")?;
                let entries = (0..count)
                    .map(|_| {
                        let word = p.get_u32();
                        let (flags, id) = ((word >> 24) as u8, word & 0xff_ffff);
                        Setting {
                            flags,
                            id,
                            value: p.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            kind::PING => {
                need(len == 4, "PING", "wrong length")?;
                Frame::Ping { id: p.get_u32() }
            }
            kind::GOAWAY => {
                need(len == 8, "GOAWAY", "wrong length")?;
                let last_good_stream_id = p.get_u32() & STREAM_ID_MASK;
                Frame::GoAway {
                    last_good_stream_id,
                    status: GoAwayStatus(p.get_u32()),
                }
            }
            kind::WINDOW_UPDATE => {
                need(len == 8, "WINDOW_UPDATE", "wrong length")?;
                let stream_id = p.get_u32() & STREAM_ID_MASK;
                Frame::WindowUpdate {
                    stream_id,
                    delta: p.get_u32() & STREAM_ID_MASK,
                }
            }
            _ => Frame::Unknown {
                kind: code,
                flags,
                payload: p,
            },
        })
    }
}
