//! Session tests with an in-memory client that masks its frames as a real
//! one must.

use std::time::Duration;

use base64::Engine as _;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::frame::{self, Assembler, FrameDecoder, Message, Opcode};
use super::session::{ChannelConfig, Codec, Session, Tunnel};

struct Client {
    io: DuplexStream,
    buf: BytesMut,
    assembler: Assembler,
}

impl Client {
    fn new(io: DuplexStream) -> Self {
        Client {
            io,
            buf: BytesMut::new(),
            assembler: Assembler::new(1 << 20),
        }
    }

    async fn frame(&mut self, fin: bool, op: Opcode, payload: &[u8]) {
        let mut out = BytesMut::new();
        frame::encode(fin, op, payload, Some([0xde, 0xad, 0xbe, 0xef]), &mut out);
        self.io.write_all(&out).await.unwrap();
    }

    async fn binary(&mut self, payload: &[u8]) {
        self.frame(true, Opcode::Binary, payload).await;
    }

    /// The next message, or None at EOF.
    async fn recv(&mut self) -> Option<Message> {
        let d = FrameDecoder::new(false, 1 << 20);
        loop {
            if let Some(f) = d.decode(&mut self.buf).unwrap() {
                if let Some(m) = self.assembler.push(f).unwrap() {
                    return Some(m);
                }
                continue;
            }
            let read =
                tokio::time::timeout(Duration::from_secs(5), self.io.read_buf(&mut self.buf))
                    .await
                    .expect("server answered");
            if read.unwrap() == 0 {
                return None;
            }
        }
    }
}

fn start(
    codec: Codec,
    close_signal: bool,
    inputs: Vec<u8>,
) -> (Session, super::session::ChannelReaders, Client) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (session, readers) = Session::new(
        a,
        ChannelConfig {
            codec,
            close_signal,
            inputs,
        },
    );
    (session, readers, Client::new(b))
}

async fn read_some(r: &mut super::ChannelReader) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), r.read(&mut buf))
        .await
        .expect("input arrived")
        .unwrap();
    buf.truncate(n);
    buf
}

#[tokio::test]
async fn binary_channels_both_ways() {
    let (session, mut readers, mut c) = start(Codec::Binary, false, vec![0, 4]);
    session.announce(1);
    assert_eq!(c.recv().await, Some(Message::Binary(vec![1].into())));
    c.binary(b"\x00abc").await;
    c.binary(b"\x04{\"Width\":1}").await;
    // Output-only and unknown channels are ignored.
    c.binary(b"\x01ignored").await;
    c.binary(b"\x09ignored").await;
    let mut stdin = readers.remove(&0).unwrap();
    assert_eq!(read_some(&mut stdin).await, b"abc");
    assert_eq!(
        read_some(readers.get_mut(&4).unwrap()).await,
        b"{\"Width\":1}"
    );
    let mut out = session.writer(1);
    out.write_all(b"out").await.unwrap();
    assert_eq!(
        c.recv().await,
        Some(Message::Binary(b"\x01out".to_vec().into()))
    );
    // A large write is split into several messages, in order.
    let big = vec![7u8; 100_000];
    out.write_all(&big).await.unwrap();
    let mut got = Vec::new();
    while got.len() < big.len() {
        match c.recv().await {
            Some(Message::Binary(b)) => {
                assert_eq!(b[0], 1);
                got.extend_from_slice(&b[1..]);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, big);
}

#[tokio::test]
async fn base64_channels_use_text_and_digits() {
    let (session, mut readers, mut c) = start(Codec::Base64, false, vec![0]);
    c.frame(true, Opcode::Text, b"0YWJj").await;
    assert_eq!(read_some(readers.get_mut(&0).unwrap()).await, b"abc");
    session.writer(2).write_all(b"\xff\x00out").await.unwrap();
    let want = format!(
        "2{}",
        base64::engine::general_purpose::STANDARD.encode(b"\xff\x00out")
    );
    assert_eq!(c.recv().await, Some(Message::Text(want.into())));
    session.announce(1);
    assert_eq!(c.recv().await, Some(Message::Text("1".into())));
}

#[tokio::test]
async fn fragmented_input_and_pings() {
    let (_session, mut readers, mut c) = start(Codec::Binary, false, vec![0]);
    c.frame(false, Opcode::Binary, b"\x00he").await;
    c.frame(true, Opcode::Ping, b"p1").await;
    c.frame(false, Opcode::Continuation, b"ll").await;
    c.frame(true, Opcode::Continuation, b"o").await;
    assert_eq!(c.recv().await, Some(Message::Pong("p1".into())));
    assert_eq!(read_some(readers.get_mut(&0).unwrap()).await, b"hello");
}

#[tokio::test]
async fn v5_close_signal_ends_one_input() {
    let (session, mut readers, mut c) = start(Codec::Binary, true, vec![0, 4]);
    c.binary(b"\x00last").await;
    c.binary(&[255, 0]).await;
    let mut stdin = readers.remove(&0).unwrap();
    assert_eq!(read_some(&mut stdin).await, b"last");
    assert_eq!(
        read_some(&mut stdin).await,
        b"",
        "EOF after the close signal"
    );
    // The session and the other channels go on.
    c.binary(b"\x04more").await;
    assert_eq!(read_some(readers.get_mut(&4).unwrap()).await, b"more");
    session.writer(1).write_all(b"x").await.unwrap();
    assert_eq!(
        c.recv().await,
        Some(Message::Binary(b"\x01x".to_vec().into()))
    );

    // Without v5, 255 is just an unknown channel.
    let (_s, mut readers, mut c) = start(Codec::Binary, false, vec![0]);
    c.binary(&[255, 0]).await;
    c.binary(b"\x00still open").await;
    assert_eq!(read_some(readers.get_mut(&0).unwrap()).await, b"still open");
}

#[tokio::test]
async fn server_close_waits_for_the_answer() {
    let (session, _readers, mut c) = start(Codec::Binary, false, vec![]);
    let mut out = session.writer(1);
    out.write_all(b"bye").await.unwrap();
    session.close();
    assert_eq!(
        c.recv().await,
        Some(Message::Binary(b"\x01bye".to_vec().into()))
    );
    assert_eq!(
        c.recv().await,
        Some(Message::Close(Some((
            frame::close_code::NORMAL,
            String::new()
        ))))
    );
    assert!(out.write_all(b"more").await.is_err(), "nothing after close");
    c.frame(true, Opcode::Close, &frame::close_body(1000, ""))
        .await;
    tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .expect("session ended");
    assert_eq!(c.recv().await, None, "connection closed");
}

#[tokio::test]
async fn client_close_is_answered() {
    let (session, mut readers, mut c) = start(Codec::Binary, false, vec![0]);
    c.frame(true, Opcode::Close, &frame::close_body(1001, "going"))
        .await;
    assert_eq!(
        c.recv().await,
        Some(Message::Close(Some((1001, String::new()))))
    );
    tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .expect("session ended");
    assert_eq!(read_some(readers.get_mut(&0).unwrap()).await, b"");
}

#[tokio::test]
async fn vanished_client_ends_the_session() {
    let (session, mut readers, c) = start(Codec::Binary, false, vec![0]);
    drop(c);
    tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .expect("session ended");
    assert_eq!(read_some(readers.get_mut(&0).unwrap()).await, b"");
    assert!(session.writer(1).write_all(b"x").await.is_err());
}

#[tokio::test]
async fn protocol_errors_close_with_a_code() {
    let (session, _readers, mut c) = start(Codec::Binary, false, vec![0]);
    // Unmasked client frame.
    c.io.write_all(&[0x82, 0x01, 0x00]).await.unwrap();
    match c.recv().await {
        Some(Message::Close(Some((code, _)))) => {
            assert_eq!(code, frame::close_code::PROTOCOL_ERROR)
        }
        other => panic!("{other:?}"),
    }
    tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .expect("session ended");
}

#[tokio::test]
async fn tunnel_is_a_byte_stream() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let mut t = Tunnel::new(a);
    let mut c = Client::new(b);
    c.binary(b"spdy").await;
    c.binary(b" bytes").await;
    let mut buf = [0u8; 10];
    t.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"spdy bytes");
    t.write_all(b"back").await.unwrap();
    assert_eq!(c.recv().await, Some(Message::Binary("back".into())));
    drop(t);
    assert!(matches!(c.recv().await, Some(Message::Close(_))));
}
