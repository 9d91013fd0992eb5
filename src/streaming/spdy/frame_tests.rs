use super::*;
use crate::streaming::spdy::FrameDecoder;

fn hex(s: &str) -> BytesMut {
    let bytes: Vec<u8> = s
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    BytesMut::from(&bytes[..])
}

fn h(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn encode(frames: &[Frame]) -> BytesMut {
    let mut enc = FrameEncoder::new();
    let mut buf = BytesMut::new();
    for f in frames {
        enc.encode(f, &mut buf).unwrap();
    }
    buf
}

fn decode_all(buf: &mut BytesMut) -> Vec<Frame> {
    let mut dec = FrameDecoder::new();
    let mut out = Vec::new();
    while let Some(f) = dec.decode(buf).unwrap() {
        out.push(f);
    }
    assert!(buf.is_empty(), "trailing bytes: {buf:?}");
    out
}

/// Bytes written by Go's `github.com/moby/spdystream/spdy` Framer (the code
/// kubectl and the kubelet use): SYN_STREAM 1 {streamType: error}, SYN_STREAM
/// 3 {streamType: stdout}, then SYN_REPLY 3 with no headers, all through one
/// zlib context (compression level 9, hence the 78 f9 zlib header).
const GO_FRAMES: &str = "\
    80 03 00 01 00 00 00 29 00 00 00 01 00 00 00 00 00 00 78 f9 e3 c6 a7 c2 62 60 60 60 \
    04 a7 b3 92 a2 d4 c4 5c 68 51 c2 9a 0a 0a 68 00 00 00 00 ff ff \
    80 03 00 01 00 00 00 19 00 00 00 03 00 00 00 00 00 00 c2 2a c5 56 5c 92 92 5f 5a 02 \
    00 00 00 ff ff \
    80 03 00 02 00 00 00 0e 00 00 00 03 62 60 60 60 00 00 00 00 ff ff";

#[test]
fn decodes_frames_written_by_go_spdystream() {
    let frames = decode_all(&mut hex(GO_FRAMES));
    let syn = |stream_id, kind| Frame::SynStream {
        stream_id,
        associated_to: 0,
        priority: 0,
        slot: 0,
        flags: 0,
        headers: h(&[("streamtype", kind)]),
    };
    let reply = Frame::SynReply {
        stream_id: 3,
        flags: 0,
        headers: vec![],
    };
    assert_eq!(frames, vec![syn(1, "error"), syn(3, "stdout"), reply]);
}

#[test]
fn fixed_layouts_match_the_spec() {
    let cases = [
        (Frame::Ping { id: 1 }, "80 03 00 06 00 00 00 04 00 00 00 01"),
        (
            Frame::WindowUpdate {
                stream_id: 5,
                delta: 0x8000,
            },
            "80 03 00 09 00 00 00 08 00 00 00 05 00 00 80 00",
        ),
        (
            Frame::RstStream {
                stream_id: 3,
                status: RstStatus::CANCEL,
            },
            "80 03 00 03 00 00 00 08 00 00 00 03 00 00 00 05",
        ),
        (
            Frame::GoAway {
                last_good_stream_id: 7,
                status: GoAwayStatus::OK,
            },
            "80 03 00 07 00 00 00 08 00 00 00 07 00 00 00 00",
        ),
        (
            Frame::Settings {
                flags: 0,
                entries: vec![Setting {
                    flags: 1,
                    id: SETTINGS_INITIAL_WINDOW_SIZE,
                    value: 0x1_0000,
                }],
            },
            "80 03 00 04 00 00 00 0c 00 00 00 01 01 00 00 07 00 01 00 00",
        ),
        (
            Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"abc"),
            },
            "00 00 00 03 01 00 00 03 61 62 63",
        ),
    ];
    for (frame, want) in cases {
        assert_eq!(encode(std::slice::from_ref(&frame)), hex(want), "{frame:?}");
        assert_eq!(decode_all(&mut hex(want)), vec![frame]);
    }
}

#[test]
fn round_trips_every_frame_type_through_one_context() {
    let frames = vec![
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 7,
            slot: 0,
            flags: FLAG_FIN | FLAG_UNIDIRECTIONAL,
            headers: h(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]),
        },
        Frame::SynReply {
            stream_id: 1,
            flags: FLAG_FIN,
            headers: vec![],
        },
        Frame::Headers {
            stream_id: 1,
            flags: 0,
            headers: h(&[("x", "y\u{0}z")]),
        },
        Frame::RstStream {
            stream_id: 9,
            status: RstStatus(99),
        },
        Frame::Settings {
            flags: 1,
            entries: vec![],
        },
        Frame::Ping { id: 0xffff_fffe },
        Frame::GoAway {
            last_good_stream_id: 0x7fff_ffff,
            status: GoAwayStatus::PROTOCOL_ERROR,
        },
        Frame::WindowUpdate {
            stream_id: 0,
            delta: 0x7fff_ffff,
        },
        Frame::Data {
            stream_id: 0x7fff_ffff,
            flags: 0,
            data: Bytes::from(vec![7u8; 70_000]),
        },
        Frame::Data {
            stream_id: 1,
            flags: FLAG_FIN,
            data: Bytes::new(),
        },
        Frame::Unknown {
            kind: 10,
            flags: 0,
            payload: Bytes::from_static(b"credential"),
        },
    ];
    assert_eq!(decode_all(&mut encode(&frames)), frames);
}

#[test]
fn waits_for_a_whole_frame() {
    let frame = Frame::Data {
        stream_id: 1,
        flags: 0,
        data: Bytes::from_static(b"hello"),
    };
    let wire = encode(std::slice::from_ref(&frame));
    let mut dec = FrameDecoder::new();
    let mut buf = BytesMut::new();
    for (i, byte) in wire.iter().enumerate() {
        assert_eq!(dec.decode(&mut buf).unwrap(), None, "after {i} bytes");
        buf.put_u8(*byte);
    }
    assert_eq!(dec.decode(&mut buf).unwrap(), Some(frame));
}

#[test]
fn rejects_malformed_frames() {
    let bad = [
        "80 02 00 06 00 00 00 04 00 00 00 01",
        "80 03 00 03 00 00 00 04 00 00 00 01",
        "80 03 00 04 00 00 00 04 00 00 00 02",
        "80 03 00 01 00 00 00 02 00 00",
        "00 00 00 00 00 00 00 01 61",
    ];
    for wire in bad {
        assert!(
            FrameDecoder::new().decode(&mut hex(wire)).is_err(),
            "{wire}"
        );
    }
    let huge = Frame::Data {
        stream_id: 1,
        flags: 0,
        data: Bytes::from(vec![0; MAX_PAYLOAD + 1]),
    };
    let err = FrameEncoder::new().encode(&huge, &mut BytesMut::new());
    assert!(matches!(err, Err(FrameError::TooLarge(_))));
}

/// A seeded fuzz loop over the frame and header-block decoder: real frames
/// (Go's, and one of every type through one zlib context) with bits
/// flipped, bytes cut, inserted or overwritten (lengths, versions, types),
/// and pure noise. The decoder must never panic, must consume bytes for
/// every frame it returns, and must end (a frame, `None` or an error).
#[test]
fn fuzzed_frames_never_panic_and_always_make_progress() {
    let mut seeds = vec![hex(GO_FRAMES).to_vec()];
    seeds.push(
        encode(&[
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 7,
                slot: 0,
                flags: FLAG_FIN,
                headers: h(&[("streamtype", "data"), ("port", "80")]),
            },
            Frame::Headers {
                stream_id: 1,
                flags: 0,
                headers: h(&[("x", "y")]),
            },
            Frame::Settings {
                flags: 1,
                entries: vec![],
            },
            Frame::Ping { id: 3 },
            Frame::Data {
                stream_id: 1,
                flags: 0,
                data: Bytes::from_static(b"payload"),
            },
        ])
        .to_vec(),
    );
    let mut x: u64 = 0x5eed_0015;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..20_000u32 {
        let mut b = seeds[(next() % seeds.len() as u64) as usize].clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % b.len().max(1);
            match next() % 6 {
                0 if !b.is_empty() => b[at] ^= 1 << (next() % 8),
                1 => b.truncate(at),
                2 => b.insert(at.min(b.len()), next() as u8),
                3 if b.len() > at + 4 => {
                    b[at..at + 4].copy_from_slice(&(next() as u32).to_be_bytes())
                }
                4 if b.len() >= 8 => b[5..8].copy_from_slice(&(next() as u32).to_be_bytes()[1..]),
                _ => b = (0..next() % 64).map(|_| next() as u8).collect(),
            }
        }
        let mut buf = BytesMut::from(&b[..]);
        let mut dec = FrameDecoder::new();
        for _ in 0..1024 {
            let before = buf.len();
            match dec.decode(&mut buf) {
                Ok(Some(_)) => assert!(buf.len() < before, "round {round}: no progress"),
                Ok(None) | Err(_) => break,
            }
        }
    }
}
