//! SPDY/3.1 frames and their wire encoding.
//!
//! ```text
//! control: |1| version (15) | type (16) | flags (8) | length (24) | payload
//! data:    |0| stream id (31)           | flags (8) | length (24) | payload
//! ```
//!
//! All integers are big-endian. SYN_STREAM, SYN_REPLY and HEADERS end in a
//! compressed name/value block (see `headers`), which is why encoding and
//! decoding need the session's per-direction zlib context.

use bytes::{BufMut, Bytes, BytesMut};

use super::headers::{HeaderEncoder, HeaderError, Headers};

/// The only protocol version spoken.
pub const VERSION: u16 = 3;
/// Last frame the sender will send on this stream.
pub const FLAG_FIN: u8 = 0x01;
/// SYN_STREAM only: the recipient may not send on this stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// Largest payload the 24-bit length field can describe.
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;
/// SETTINGS id of the initial per-stream send window.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

pub(super) const STREAM_ID_MASK: u32 = 0x7fff_ffff;
pub(super) const HEADER_LEN: usize = 8;

/// Control frame type codes.
pub(super) mod kind {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// A RST_STREAM status code; unknown codes are kept as they came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RstStatus(pub u32);

impl RstStatus {
    pub const PROTOCOL_ERROR: Self = Self(1);
    pub const INVALID_STREAM: Self = Self(2);
    pub const REFUSED_STREAM: Self = Self(3);
    pub const UNSUPPORTED_VERSION: Self = Self(4);
    pub const CANCEL: Self = Self(5);
    pub const INTERNAL_ERROR: Self = Self(6);
    pub const FLOW_CONTROL_ERROR: Self = Self(7);
    pub const STREAM_IN_USE: Self = Self(8);
    pub const STREAM_ALREADY_CLOSED: Self = Self(9);
    pub const FRAME_TOO_LARGE: Self = Self(11);
}

/// A GOAWAY status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoAwayStatus(pub u32);

impl GoAwayStatus {
    pub const OK: Self = Self(0);
    pub const PROTOCOL_ERROR: Self = Self(1);
    pub const INTERNAL_ERROR: Self = Self(2);
}

/// One SETTINGS entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        slot: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: RstStatus,
    },
    Settings {
        flags: u8,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: GoAwayStatus,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame of a type this version does not define; the spec says
    /// to ignore it.
    Unknown {
        kind: u16,
        flags: u8,
        payload: Bytes,
    },
}

/// Why bytes could not be turned into a frame (or a frame into bytes).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("unsupported spdy version {0}")]
    UnsupportedVersion(u16),
    #[error("invalid {kind} frame: {reason}")]
    Invalid {
        kind: &'static str,
        reason: &'static str,
    },
    #[error("frame payload of {0} bytes exceeds the 24-bit length field")]
    TooLarge(usize),
    #[error(transparent)]
    Headers(#[from] HeaderError),
}

/// Serialises frames for one direction of a session.
#[derive(Default)]
pub struct FrameEncoder {
    headers: HeaderEncoder,
}

impl FrameEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `frame` to `dst`. Frames carrying headers must be encoded in
    /// the order they are written, since they share one zlib stream.
    pub fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let mut p = Vec::new();
        let (kind, flags) = match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                check_len(data.len())?;
                dst.reserve(HEADER_LEN + data.len());
                dst.put_u32(stream_id & STREAM_ID_MASK);
                dst.put_u32(u32::from(*flags) << 24 | data.len() as u32);
                dst.put_slice(data);
                return Ok(());
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                flags,
                headers,
            } => {
                p.put_u32(stream_id & STREAM_ID_MASK);
                p.put_u32(associated_to & STREAM_ID_MASK);
                p.put_u8((priority & 0x7) << 5);
                p.put_u8(*slot);
                self.headers.encode(headers, &mut p)?;
                (kind::SYN_STREAM, *flags)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                p.put_u32(stream_id & STREAM_ID_MASK);
                self.headers.encode(headers, &mut p)?;
                (kind::SYN_REPLY, *flags)
            }
            Frame::RstStream { stream_id, status } => {
                p.put_u32(stream_id & STREAM_ID_MASK);
                p.put_u32(status.0);
                (kind::RST_STREAM, 0)
            }
            Frame::Settings { flags, entries } => {
                p.put_u32(entries.len() as u32);
                for e in entries {
                    p.put_u32(u32::from(e.flags) << 24 | (e.id & 0xff_ffff));
                    p.put_u32(e.value);
                }
                (kind::SETTINGS, *flags)
            }
            Frame::Ping { id } => {
                p.put_u32(*id);
                (kind::PING, 0)
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                p.put_u32(last_good_stream_id & STREAM_ID_MASK);
                p.put_u32(status.0);
                (kind::GOAWAY, 0)
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                p.put_u32(stream_id & STREAM_ID_MASK);
                self.headers.encode(headers, &mut p)?;
                (kind::HEADERS, *flags)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                p.put_u32(stream_id & STREAM_ID_MASK);
                p.put_u32(delta & STREAM_ID_MASK);
                (kind::WINDOW_UPDATE, 0)
            }
            Frame::Unknown {
                kind,
                flags,
                payload,
            } => {
                p.extend_from_slice(payload);
                (*kind, *flags)
            }
        };
        check_len(p.len())?;
        dst.reserve(HEADER_LEN + p.len());
        dst.put_u16(0x8000 | VERSION);
        dst.put_u16(kind);
        dst.put_u32(u32::from(flags) << 24 | p.len() as u32);
        dst.put_slice(&p);
        Ok(())
    }
}

fn check_len(len: usize) -> Result<(), FrameError> {
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(len));
    }
    Ok(())
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
