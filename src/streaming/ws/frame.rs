//! RFC 6455 frames and their reassembly into messages.
//!
//! ```text
//! |FIN|RSV1-3|opcode(4)|MASK|len(7)|len ext (16 or 64)|mask key (0 or 4)|payload
//! ```
//!
//! Clients mask every frame, servers none (§5.1); a decoder is told which
//! side it reads and refuses frames of the wrong kind. Control frames (close,
//! ping, pong) carry at most 125 bytes, are never fragmented and may arrive
//! between the fragments of a message (§5.4, §5.5).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Frame opcodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(b: u8) -> Option<Self> {
        Some(match b {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xa => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xa,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// One frame, payload unmasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: Opcode,
    pub payload: Bytes,
}

/// A whole message, or a control frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// Status code and reason; `None` when the close frame had no body.
    Close(Option<(u16, String)>),
}

/// Close status codes used here (§7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
}

/// Why bytes on the wire are not a valid frame or message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("reserved bits set in a websocket frame")]
    Reserved,
    #[error("unknown websocket opcode {0:#x}")]
    Opcode(u8),
    #[error("websocket frame masking is wrong for its direction")]
    Masking,
    #[error("websocket control frame fragmented or longer than 125 bytes")]
    Control,
    #[error("websocket message of {0} bytes is over the limit")]
    TooBig(u64),
    #[error("websocket continuation frame without a message to continue")]
    Continuation,
    #[error("websocket data frame inside a fragmented message")]
    Interleaved,
    #[error("websocket text message is not utf-8")]
    Utf8,
    #[error("websocket close frame with a malformed body")]
    CloseBody,
}

impl FrameError {
    /// The close code a peer gets for this error.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::TooBig(_) => close_code::TOO_BIG,
            FrameError::Utf8 => close_code::INVALID_DATA,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

/// Appends one frame to `out`; `mask` is the client's key (servers pass None).
pub fn encode(
    fin: bool,
    opcode: Opcode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
    out: &mut BytesMut,
) {
    out.reserve(payload.len() + 14);
    out.put_u8(u8::from(fin) << 7 | opcode.bits());
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.put_u8(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.put_u8(mask_bit | 126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(mask_bit | 127);
            out.put_u64(n as u64);
        }
    }
    match mask {
        Some(key) => {
            out.put_slice(&key);
            let start = out.len();
            out.put_slice(payload);
            apply_mask(&mut out[start..], key);
        }
        None => out.put_slice(payload),
    }
}

/// XORs `data` with the repeating `key` (masking and unmasking are the same).
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Cuts frames off the front of a buffer.
pub struct FrameDecoder {
    /// True on the server: every frame must be masked; false on a client:
    /// none may be.
    expect_masked: bool,
    max_payload: u64,
}

impl FrameDecoder {
    pub fn new(expect_masked: bool, max_payload: u64) -> Self {
        FrameDecoder {
            expect_masked,
            max_payload,
        }
    }

    /// The next whole frame in `buf`, consumed; `None` if more bytes are needed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        if b0 & 0x70 != 0 {
            return Err(FrameError::Reserved);
        }
        let opcode = Opcode::from_bits(b0 & 0x0f).ok_or(FrameError::Opcode(b0 & 0x0f))?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        if masked != self.expect_masked {
            return Err(FrameError::Masking);
        }
        let (len, mut head) = match b1 & 0x7f {
            126 if buf.len() < 4 => return Ok(None),
            126 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 if buf.len() < 10 => return Ok(None),
            127 => (
                u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")),
                10,
            ),
            n => (u64::from(n), 2),
        };
        if opcode.is_control() && (!fin || len > 125) {
            return Err(FrameError::Control);
        }
        if len > self.max_payload {
            return Err(FrameError::TooBig(len));
        }
        let key = if masked {
            if buf.len() < head + 4 {
                return Ok(None);
            }
            let k = [buf[head], buf[head + 1], buf[head + 2], buf[head + 3]];
            head += 4;
            Some(k)
        } else {
            None
        };
        let len = len as usize;
        if buf.len() < head + len {
            buf.reserve(head + len - buf.len());
            return Ok(None);
        }
        buf.advance(head);
        let mut payload = buf.split_to(len);
        if let Some(k) = key {
            apply_mask(&mut payload, k);
        }
        Ok(Some(Frame {
            fin,
            opcode,
            payload: payload.freeze(),
        }))
    }
}

/// Joins fragments into messages; control frames pass straight through.
#[derive(Default)]
pub struct Assembler {
    partial: Option<(Opcode, BytesMut)>,
    max_message: usize,
}

impl Assembler {
    pub fn new(max_message: usize) -> Self {
        Assembler {
            partial: None,
            max_message,
        }
    }

    /// Feeds one frame; returns a message once one is complete.
    pub fn push(&mut self, frame: Frame) -> Result<Option<Message>, FrameError> {
        match frame.opcode {
            Opcode::Ping => return Ok(Some(Message::Ping(frame.payload))),
            Opcode::Pong => return Ok(Some(Message::Pong(frame.payload))),
            Opcode::Close => return parse_close(&frame.payload).map(|c| Some(Message::Close(c))),
            Opcode::Text | Opcode::Binary if self.partial.is_some() => {
                return Err(FrameError::Interleaved)
            }
            Opcode::Text | Opcode::Binary if frame.fin => {
                return finish(frame.opcode, frame.payload).map(Some)
            }
            Opcode::Text | Opcode::Binary => {
                self.partial = Some((frame.opcode, BytesMut::from(&frame.payload[..])));
            }
            Opcode::Continuation => {
                let Some((_, buf)) = self.partial.as_mut() else {
                    return Err(FrameError::Continuation);
                };
                buf.extend_from_slice(&frame.payload);
            }
        }
        let size = self.partial.as_ref().map_or(0, |(_, b)| b.len());
        if size > self.max_message {
            return Err(FrameError::TooBig(size as u64));
        }
        if frame.fin {
            let (op, buf) = self.partial.take().expect("continuing a message");
            return finish(op, buf.freeze()).map(Some);
        }
        Ok(None)
    }
}

fn finish(op: Opcode, payload: Bytes) -> Result<Message, FrameError> {
    match op {
        Opcode::Text => {
            std::str::from_utf8(&payload).map_err(|_| FrameError::Utf8)?;
            Ok(Message::Text(payload))
        }
        _ => Ok(Message::Binary(payload)),
    }
}

fn parse_close(body: &[u8]) -> Result<Option<(u16, String)>, FrameError> {
    match body {
        [] => Ok(None),
        [_] => Err(FrameError::CloseBody),
        [a, b, reason @ ..] => {
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::CloseBody)?;
            Ok(Some((u16::from_be_bytes([*a, *b]), reason.to_string())))
        }
    }
}

/// The body of a close frame.
pub fn close_body(code: u16, reason: &str) -> Vec<u8> {
    let mut b = code.to_be_bytes().to_vec();
    // Control frames hold 125 bytes; the code takes two.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    b.extend_from_slice(&reason.as_bytes()[..end]);
    b
}
