//! Session tests with an in-memory tungstenite client (client role: it
//! masks its frames as a real one must).

use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::session::{close_code, ChannelConfig, Codec, Session, Tunnel};

struct Client {
    ws: WebSocketStream<DuplexStream>,
}

impl Client {
    async fn new(io: DuplexStream) -> Self {
        Client {
            ws: WebSocketStream::from_raw_socket(io, Role::Client, None).await,
        }
    }

    /// One frame as given (fragments and control frames included).
    async fn frame(&mut self, fin: bool, op: OpCode, payload: &[u8]) {
        let f = Frame::message(payload.to_vec(), op, fin);
        self.ws.send(Message::Frame(f)).await.unwrap();
    }

    async fn binary(&mut self, payload: &[u8]) {
        self.ws
            .send(Message::Binary(payload.to_vec().into()))
            .await
            .unwrap();
    }

    async fn close(&mut self, code: u16, reason: &str) {
        self.ws
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.to_string().into(),
            })))
            .await
            .unwrap();
    }

    /// The next message, or None once the connection has ended.
    async fn recv(&mut self) -> Option<Message> {
        let next = tokio::time::timeout(Duration::from_secs(5), self.ws.next())
            .await
            .expect("server answered");
        match next {
            Some(Ok(m)) => Some(m),
            Some(Err(_)) | None => None,
        }
    }
}

fn close_of(m: Option<Message>) -> Option<(u16, String)> {
    match m {
        Some(Message::Close(Some(f))) => Some((u16::from(f.code), f.reason.to_string())),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

async fn start(
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
    (session, readers, Client::new(b).await)
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
    let (session, mut readers, mut c) = start(Codec::Binary, false, vec![0, 4]).await;
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
    let (session, mut readers, mut c) = start(Codec::Base64, false, vec![0]).await;
    c.ws.send(Message::Text("0YWJj".into())).await.unwrap();
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
    let (_session, mut readers, mut c) = start(Codec::Binary, false, vec![0]).await;
    c.frame(false, OpCode::Data(Data::Binary), b"\x00he").await;
    c.ws.send(Message::Frame(Frame::ping(&b"p1"[..])))
        .await
        .unwrap();
    c.frame(false, OpCode::Data(Data::Continue), b"ll").await;
    c.frame(true, OpCode::Data(Data::Continue), b"o").await;
    assert_eq!(c.recv().await, Some(Message::Pong("p1".into())));
    assert_eq!(read_some(readers.get_mut(&0).unwrap()).await, b"hello");
}

#[tokio::test]
async fn v5_close_signal_ends_one_input() {
    let (session, mut readers, mut c) = start(Codec::Binary, true, vec![0, 4]).await;
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
    let (_s, mut readers, mut c) = start(Codec::Binary, false, vec![0]).await;
    c.binary(&[255, 0]).await;
    c.binary(b"\x00still open").await;
    assert_eq!(read_some(readers.get_mut(&0).unwrap()).await, b"still open");
}

#[tokio::test]
async fn server_close_waits_for_the_answer() {
    let (session, _readers, mut c) = start(Codec::Binary, false, vec![]).await;
    let mut out = session.writer(1);
    out.write_all(b"bye").await.unwrap();
    session.close();
    assert_eq!(
        c.recv().await,
        Some(Message::Binary(b"\x01bye".to_vec().into()))
    );
    assert_eq!(
        close_of(c.recv().await),
        Some((close_code::NORMAL, String::new()))
    );
    assert!(out.write_all(b"more").await.is_err(), "nothing after close");
    // The client's answer (tungstenite queued it) goes out on this flush.
    c.ws.flush().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .expect("session ended");
    assert_eq!(c.recv().await, None, "connection closed");
}

#[tokio::test]
async fn client_close_is_answered() {
    let (session, mut readers, mut c) = start(Codec::Binary, false, vec![0]).await;
    c.close(1001, "going").await;
    // Answered with the same code (RFC 6455 §5.5.1).
    assert_eq!(close_of(c.recv().await).map(|(code, _)| code), Some(1001));
    tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .expect("session ended");
    assert_eq!(read_some(readers.get_mut(&0).unwrap()).await, b"");
}

#[tokio::test]
async fn vanished_client_ends_the_session() {
    let (session, mut readers, c) = start(Codec::Binary, false, vec![0]).await;
    drop(c);
    tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .expect("session ended");
    assert_eq!(read_some(readers.get_mut(&0).unwrap()).await, b"");
    assert!(session.writer(1).write_all(b"x").await.is_err());
}

#[tokio::test]
async fn protocol_errors_close_with_a_code() {
    let (session, _readers, mut c) = start(Codec::Binary, false, vec![0]).await;
    // Unmasked client frame.
    c.ws.get_mut().write_all(&[0x82, 0x01, 0x00]).await.unwrap();
    assert_eq!(
        close_of(c.recv().await).map(|(code, _)| code),
        Some(close_code::PROTOCOL_ERROR)
    );
    tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .expect("session ended");
}

#[tokio::test]
async fn tunnel_is_a_byte_stream() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let mut t = Tunnel::new(a);
    let mut c = Client::new(b).await;
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
