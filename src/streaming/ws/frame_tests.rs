//! Frame codec tests, with the examples of RFC 6455 §5.7.

use bytes::BytesMut;

use super::frame::*;

fn decode_all(d: &FrameDecoder, bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = d.decode(&mut buf)? {
        out.push(f);
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    Ok(out)
}

fn server() -> FrameDecoder {
    FrameDecoder::new(true, 1 << 20)
}

fn client() -> FrameDecoder {
    FrameDecoder::new(false, 1 << 20)
}

#[test]
fn rfc_examples_encode_and_decode() {
    let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let masked = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let mut out = BytesMut::new();
    encode(true, Opcode::Text, b"Hello", None, &mut out);
    assert_eq!(&out[..], unmasked);
    let mut out = BytesMut::new();
    encode(
        true,
        Opcode::Text,
        b"Hello",
        Some([0x37, 0xfa, 0x21, 0x3d]),
        &mut out,
    );
    assert_eq!(&out[..], masked);
    let want = Frame {
        fin: true,
        opcode: Opcode::Text,
        payload: "Hello".into(),
    };
    assert_eq!(
        decode_all(&client(), &unmasked).unwrap(),
        std::slice::from_ref(&want)
    );
    assert_eq!(decode_all(&server(), &masked).unwrap(), [want]);
}

#[test]
fn masking_is_its_own_inverse() {
    let key = [1, 2, 3, 0xff];
    let mut data: Vec<u8> = (0..=255).collect();
    apply_mask(&mut data, key);
    assert_eq!(&data[..4], [1, 3, 1, 0xfc]);
    apply_mask(&mut data, key);
    assert_eq!(data, (0..=255).collect::<Vec<u8>>());
}

#[test]
fn every_length_encoding_round_trips() {
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 200_000] {
        let payload = vec![0xa5u8; len];
        for mask in [None, Some([9, 8, 7, 6])] {
            let mut out = BytesMut::new();
            encode(true, Opcode::Binary, &payload, mask, &mut out);
            let header = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            } + if mask.is_some() { 4 } else { 0 };
            assert_eq!(out.len(), header + len);
            let d = if mask.is_some() { server() } else { client() };
            // Fed a byte short, the decoder waits for more.
            let mut partial = BytesMut::from(&out[..out.len() - 1]);
            assert_eq!(d.decode(&mut partial).unwrap(), None);
            let frames = decode_all(&d, &out).unwrap();
            assert_eq!(frames.len(), 1);
            assert_eq!(frames[0].payload.len(), len);
            assert!(frames[0].payload.iter().all(|b| *b == 0xa5));
        }
    }
}

#[test]
fn fragments_join_with_control_frames_between() {
    // RFC 6455 §5.7: "Hel" + "lo", here with a ping in the middle.
    let bytes = [
        0x01, 0x03, 0x48, 0x65, 0x6c, // text, not final
        0x89, 0x02, b'h', b'i', // ping "hi"
        0x80, 0x02, 0x6c, 0x6f, // continuation, final
    ];
    let mut a = Assembler::new(1024);
    let mut got = Vec::new();
    for f in decode_all(&client(), &bytes).unwrap() {
        if let Some(m) = a.push(f).unwrap() {
            got.push(m);
        }
    }
    assert_eq!(
        got,
        [Message::Ping("hi".into()), Message::Text("Hello".into())]
    );
}

#[test]
fn fragmentation_errors() {
    let frame = |fin, opcode, p: &'static [u8]| Frame {
        fin,
        opcode,
        payload: p.into(),
    };
    let mut a = Assembler::new(4);
    assert_eq!(
        a.push(frame(true, Opcode::Continuation, b"x")),
        Err(FrameError::Continuation)
    );
    a.push(frame(false, Opcode::Binary, b"ab")).unwrap();
    assert_eq!(
        a.push(frame(true, Opcode::Binary, b"x")),
        Err(FrameError::Interleaved)
    );
    let mut a = Assembler::new(4);
    a.push(frame(false, Opcode::Binary, b"abc")).unwrap();
    assert_eq!(
        a.push(frame(true, Opcode::Continuation, b"de")),
        Err(FrameError::TooBig(5))
    );
    let mut a = Assembler::new(64);
    a.push(frame(false, Opcode::Text, &[0xe2, 0x82])).unwrap();
    assert_eq!(
        a.push(frame(true, Opcode::Continuation, &[0xac])).unwrap(),
        Some(Message::Text("€".into())),
        "a character split across fragments"
    );
    assert_eq!(
        a.push(frame(true, Opcode::Text, &[0xff])),
        Err(FrameError::Utf8)
    );
}

#[test]
fn close_frames() {
    let mut a = Assembler::new(64);
    let close = |p: Vec<u8>| Frame {
        fin: true,
        opcode: Opcode::Close,
        payload: p.into(),
    };
    assert_eq!(a.push(close(vec![])).unwrap(), Some(Message::Close(None)));
    assert_eq!(
        a.push(close(close_body(1001, "bye"))).unwrap(),
        Some(Message::Close(Some((1001, "bye".into()))))
    );
    assert_eq!(a.push(close(vec![3])), Err(FrameError::CloseBody));
    // A long reason is cut to fit a control frame, on a char boundary.
    let body = close_body(1000, &"é".repeat(100));
    assert!(body.len() <= 125);
    assert!(std::str::from_utf8(&body[2..]).is_ok());
    assert_eq!(FrameError::Utf8.close_code(), close_code::INVALID_DATA);
}

#[test]
fn malformed_frames_are_refused() {
    // A server refuses unmasked frames, a client masked ones.
    assert_eq!(
        decode_all(&server(), &[0x82, 0x01, 0x00]),
        Err(FrameError::Masking)
    );
    assert_eq!(
        decode_all(&client(), &[0x82, 0x81, 0, 0, 0, 0, 0]),
        Err(FrameError::Masking)
    );
    assert_eq!(
        decode_all(&client(), &[0xc2, 0x00]),
        Err(FrameError::Reserved)
    );
    assert_eq!(
        decode_all(&client(), &[0x83, 0x00]),
        Err(FrameError::Opcode(3))
    );
    // Fragmented ping, and a ping over 125 bytes.
    assert_eq!(
        decode_all(&client(), &[0x09, 0x00]),
        Err(FrameError::Control)
    );
    assert_eq!(
        decode_all(&client(), &[0x89, 0x7e, 0x00, 0x7e]),
        Err(FrameError::Control)
    );
    let small = FrameDecoder::new(false, 10);
    assert_eq!(
        decode_all(&small, &[0x82, 0x0b]),
        Err(FrameError::TooBig(11))
    );
}
