//! One WebSocket connection carrying Kubernetes' channel protocol, server side.
//!
//! Every data message is one channel's: its first byte names the channel
//! (`0` stdin, `1` stdout, `2` stderr, `3` error, `4` resize for exec and
//! attach; `2n`, `2n+1` for port-forward), the rest is payload. In base64
//! mode messages are text: the channel as an ASCII digit, then the payload in
//! base64. With the v5 close signal, the binary message `[255, n]` ends the
//! client's input on channel n. In raw mode (a tunnelled SPDY connection)
//! binary messages are a plain byte stream with no channel byte.
//!
//! The WebSocket protocol itself (framing, masking, fragmentation, control
//! frames, the close handshake, limits) is tungstenite's. One task drives a
//! session in two halves: `inbound` reads messages and hands input to
//! [`ChannelReader`]s (tungstenite answers pings and the peer's close);
//! `outbound` owns the write half and sends what [`ChannelWriter`]s queued,
//! in order.
//!
//! ```text
//! open ──close()──> closing (Close queued) ──peer's Close / timeout──> ended
//!   └──peer's Close, EOF, protocol error, abort()─────────────────────> ended
//! ```

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use base64::Engine as _;
use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// Close status codes used here (RFC 6455 §7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
}

/// Largest message (and frame) accepted from a client.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Largest payload put in one outgoing message.
const MAX_CHUNK: usize = 32 * 1024;
/// Bytes queued for the socket before writers wait.
const QUEUE_LIMIT: usize = 256 * 1024;
/// Messages buffered per input channel before reading the socket pauses.
const INPUT_BACKLOG: usize = 16;
/// How long the peer gets to answer our close frame.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// The v5 close-stream signal's first byte.
const CLOSE_SIGNAL: u8 = 255;

/// The readers of a session's input channels, by channel.
pub type ChannelReaders = HashMap<u8, ChannelReader>;

/// How channel numbers and payloads are put in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// Binary messages: channel byte, payload.
    Binary,
    /// Text messages: channel as an ASCII digit, payload in base64.
    Base64,
    /// Binary messages that are a plain byte stream (SPDY tunnelled over
    /// WebSocket); everything is channel 0.
    Raw,
}

/// What a session carries.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    pub codec: Codec,
    /// `v5.channel.k8s.io`: `[255, n]` closes input channel n.
    pub close_signal: bool,
    /// The channels the client may send on.
    pub inputs: Vec<u8>,
}

#[derive(Default)]
struct Outbox {
    messages: VecDeque<Message>,
    queued: usize,
    /// A close frame is queued or was answered: nothing may follow it.
    closing: bool,
    /// Our close frame (or tungstenite's answer to the peer's) is on the wire.
    close_sent: bool,
    /// The peer sent its close frame (or is not worth waiting for).
    peer_closed: bool,
    ended: bool,
    space: Vec<Waker>,
}

struct Shared {
    outbox: Mutex<Outbox>,
    ready: Notify,
    ended: watch::Sender<bool>,
    codec: Codec,
}

/// Payload bytes of a queued message, for the queue limit.
fn weight(m: &Message) -> usize {
    match m {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(_) | Message::Frame(_) => 0,
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outbox> {
        // A writer that panicked holding the lock left a consistent queue
        // (every change under it is a single push or drain).
        self.outbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn queue(&self, msg: Message) {
        let mut o = self.lock();
        if o.closing || o.ended {
            return;
        }
        o.queued += weight(&msg);
        o.messages.push_back(msg);
        drop(o);
        self.ready.notify_one();
    }

    /// Queues a close frame; later writes fail.
    fn queue_close(&self, code: u16, reason: &str) {
        let mut o = self.lock();
        if o.closing || o.ended {
            return;
        }
        o.messages.push_back(Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_string().into(),
        })));
        o.closing = true;
        let wakers = std::mem::take(&mut o.space);
        drop(o);
        wakers.into_iter().for_each(Waker::wake);
        self.ready.notify_one();
    }

    /// The peer's close frame arrived; tungstenite answers it, nothing else
    /// may be sent.
    fn peer_closed(&self) {
        let mut o = self.lock();
        o.closing = true;
        o.close_sent = true;
        o.peer_closed = true;
        o.messages.clear();
        o.queued = 0;
        let wakers = std::mem::take(&mut o.space);
        drop(o);
        wakers.into_iter().for_each(Waker::wake);
    }

    fn end(&self) {
        let mut o = self.lock();
        o.ended = true;
        o.messages.clear();
        let wakers = std::mem::take(&mut o.space);
        drop(o);
        wakers.into_iter().for_each(Waker::wake);
        self.ready.notify_one();
        self.ended.send_replace(true);
    }
}

/// Handle to a running session.
pub struct Session {
    shared: Arc<Shared>,
    ended: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Session {
    /// Starts serving `io` (the connection after `101 Switching Protocols`);
    /// returns the readers of the configured input channels.
    pub fn new<T>(io: T, config: ChannelConfig) -> (Session, ChannelReaders)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (ended_tx, ended_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            outbox: Mutex::new(Outbox::default()),
            ready: Notify::new(),
            ended: ended_tx,
            codec: config.codec,
        });
        let mut senders = HashMap::new();
        let mut readers = HashMap::new();
        for ch in config.inputs {
            let (tx, rx) = mpsc::channel(INPUT_BACKLOG);
            senders.insert(ch, tx);
            readers.insert(
                ch,
                ChannelReader {
                    rx,
                    buf: Bytes::new(),
                },
            );
        }
        let inbound = Inbound {
            shared: shared.clone(),
            senders,
            close_signal: config.close_signal,
        };
        let out_shared = shared.clone();
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let task = tokio::spawn(async move {
            let ws =
                WebSocketStream::from_raw_socket(Box::pin(io), Role::Server, Some(ws_config)).await;
            let (sink, stream) = ws.split();
            tokio::join!(inbound.run(stream), outbound(sink, out_shared));
        });
        let session = Session {
            shared,
            ended: ended_rx,
            task,
        };
        (session, readers)
    }

    /// A writer for output channel `channel`.
    pub fn writer(&self, channel: u8) -> ChannelWriter {
        ChannelWriter {
            shared: self.shared.clone(),
            channel,
        }
    }

    /// Sends an empty message on `channel`: Kubernetes servers do this on the
    /// first output channel to tell the client its streams are ready.
    pub fn announce(&self, channel: u8) {
        self.shared
            .queue(encode_message(self.shared.codec, channel, &[]));
    }

    /// Sends a close frame after what is queued; the session ends when the
    /// client answers it (or disconnects).
    pub fn close(&self) {
        self.shared.queue_close(close_code::NORMAL, "");
    }

    /// Ends the session now, closing the connection.
    pub fn abort(&self) {
        self.shared.end();
        self.task.abort();
    }

    /// Resolves once the session has ended.
    pub async fn closed(&self) {
        let mut ended = self.ended.clone();
        let _ = ended.wait_for(|e| *e).await;
    }

    /// Waits until the session's task has exited.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// One message for `channel` in `codec`.
fn encode_message(codec: Codec, channel: u8, data: &[u8]) -> Message {
    match codec {
        Codec::Binary => {
            let mut msg = Vec::with_capacity(data.len() + 1);
            msg.push(channel);
            msg.extend_from_slice(data);
            Message::Binary(msg.into())
        }
        Codec::Base64 => {
            let mut msg = String::with_capacity(data.len() * 4 / 3 + 5);
            msg.push(char::from(b'0'.wrapping_add(channel)));
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut msg);
            Message::Text(msg.into())
        }
        Codec::Raw => Message::Binary(Bytes::copy_from_slice(data)),
    }
}

/// A client's data message that is not what its protocol allows.
#[derive(Debug, thiserror::Error)]
#[error("websocket message payload is not base64")]
struct BadPayload;

/// Splits a client's data message into (channel, payload); `None` for a
/// message that names no channel.
fn decode_message(codec: Codec, msg: Message) -> Result<Option<(u8, Bytes)>, BadPayload> {
    match (codec, msg) {
        (Codec::Raw, Message::Binary(b)) => Ok(Some((0, b))),
        (Codec::Binary, Message::Binary(b)) => match b.first() {
            Some(&ch) => Ok(Some((ch, b.slice(1..)))),
            None => Ok(None),
        },
        (Codec::Base64, Message::Text(t)) => {
            let t = t.as_bytes();
            let Some((&ch, payload)) = t.split_first() else {
                return Ok(None);
            };
            let data = base64::engine::general_purpose::STANDARD
                .decode(payload)
                .map_err(|_| BadPayload)?;
            Ok(Some((ch.wrapping_sub(b'0'), data.into())))
        }
        _ => Ok(None),
    }
}

/// The close code a peer gets for what tungstenite refused in its input;
/// `None` when the connection itself failed or ended.
fn refusal_code(e: &WsError) -> Option<u16> {
    match e {
        WsError::Capacity(_) => Some(close_code::TOO_BIG),
        WsError::Utf8(_) => Some(close_code::INVALID_DATA),
        // EOF without a close frame: the peer is gone, nobody to tell.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) | WsError::AttackAttempt => Some(close_code::PROTOCOL_ERROR),
        _ => None,
    }
}

struct Inbound {
    shared: Arc<Shared>,
    senders: HashMap<u8, mpsc::Sender<Bytes>>,
    close_signal: bool,
}

impl Inbound {
    async fn run<S>(mut self, stream: S)
    where
        S: Stream<Item = Result<Message, WsError>> + Unpin,
    {
        let mut ended = self.shared.ended.subscribe();
        tokio::select! {
            _ = self.read_loop(stream) => {}
            _ = ended.wait_for(|e| *e) => {}
        }
        // Input ends with the connection.
        self.senders.clear();
    }

    /// Reads until the close handshake is done, EOF or a protocol error.
    /// tungstenite answers pings and the peer's close itself, on the next
    /// read.
    async fn read_loop<S>(&mut self, mut stream: S)
    where
        S: Stream<Item = Result<Message, WsError>> + Unpin,
    {
        while let Some(next) = stream.next().await {
            match next {
                Ok(Message::Close(_)) => self.shared.peer_closed(),
                Ok(msg @ (Message::Text(_) | Message::Binary(_))) => self.data(msg).await,
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Err(e) => {
                    match refusal_code(&e) {
                        Some(code) => return self.protocol_error(code, &e),
                        None => tracing::debug!(error = %e, "websocket connection ended"),
                    }
                    break;
                }
            }
        }
        // The close handshake is through, or the peer vanished: nothing more
        // can be sent.
        self.shared.end();
    }

    async fn data(&mut self, msg: Message) {
        if self.close_signal {
            if let Message::Binary(b) = &msg {
                if b.first() == Some(&CLOSE_SIGNAL) {
                    if let [_, ch] = b[..] {
                        self.senders.remove(&ch);
                    } else {
                        tracing::debug!("websocket close signal without exactly one channel");
                    }
                    return;
                }
            }
        }
        let (ch, data) = match decode_message(self.shared.codec, msg) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "dropping a websocket message");
                return;
            }
        };
        if data.is_empty() {
            return;
        }
        // Output-only and unknown channels are ignored, as the kubelet does;
        // a reader that was dropped stops taking data.
        if let Some(tx) = self.senders.get(&ch) {
            if tx.send(data).await.is_err() {
                self.senders.remove(&ch);
            }
        }
    }

    fn protocol_error(&self, code: u16, e: &WsError) {
        tracing::debug!(error = %e, "closing websocket session after a protocol error");
        // A close reason is at most 123 bytes (§5.5).
        let mut reason = e.to_string();
        if reason.len() > 123 {
            let mut cut = 123;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        self.shared.queue_close(code, &reason);
        // No answer is awaited from a peer that broke the protocol.
        self.shared.lock().peer_closed = true;
    }
}

/// Writes queued messages until the session ends or a close frame is out.
async fn outbound<S>(mut sink: S, shared: Arc<Shared>)
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    loop {
        let notified = shared.ready.notified();
        let (batch, closing) = {
            let mut o = shared.lock();
            if o.ended {
                break;
            }
            let batch: Vec<Message> = o.messages.drain(..).collect();
            (batch, o.closing)
        };
        if batch.is_empty() {
            notified.await;
            continue;
        }
        let mut failed = None;
        let mut sent = 0;
        for m in batch {
            let w = weight(&m);
            if let Err(e) = sink.feed(m).await {
                failed = Some(e);
                break;
            }
            sent += w;
        }
        if failed.is_none() {
            failed = sink.flush().await.err();
        }
        {
            let mut o = shared.lock();
            o.queued = o.queued.saturating_sub(sent);
            let wakers = std::mem::take(&mut o.space);
            drop(o);
            wakers.into_iter().for_each(Waker::wake);
        }
        if let Some(e) = failed {
            let handshake = matches!(
                e,
                WsError::Protocol(ProtocolError::SendAfterClosing) | WsError::ConnectionClosed
            );
            if handshake && shared.lock().peer_closed {
                // The peer's close came while writing: the reading side
                // finishes the handshake and ends the session.
                return;
            }
            tracing::debug!(error = %e, "websocket write failed");
            break;
        }
        if closing && shared.lock().messages.is_empty() {
            // Our close is out: nothing else will be written. The session
            // ends when the peer's close has come too, or after CLOSE_WAIT.
            let peer_closed = {
                let mut o = shared.lock();
                o.close_sent = true;
                o.peer_closed
            };
            if !peer_closed {
                let mut ended = shared.ended.subscribe();
                let _ = tokio::time::timeout(CLOSE_WAIT, ended.wait_for(|e| *e)).await;
            }
            break;
        }
    }
    shared.end();
}

/// Input the client sends on one channel; EOF when the client closes the
/// channel (v5) or the session ends.
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    buf: Bytes,
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.buf.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(b)) => self.buf = b,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.buf.len().min(out.remaining());
        out.put_slice(&self.buf.split_to(n));
        Poll::Ready(Ok(()))
    }
}

/// Output to one channel. The channel protocol has no per-channel close, so
/// `shutdown` only stops this writer.
pub struct ChannelWriter {
    shared: Arc<Shared>,
    channel: u8,
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut o = self.shared.lock();
        if o.ended || o.closing {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "websocket session closed",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if o.queued >= QUEUE_LIMIT {
            o.space.push(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(MAX_CHUNK);
        let m = encode_message(self.shared.codec, self.channel, &buf[..n]);
        o.queued += weight(&m);
        o.messages.push_back(m);
        drop(o);
        self.shared.ready.notify_one();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A raw-mode session as one byte stream, for SPDY tunnelled over
/// WebSocket (`SPDY/3.1+portforward.k8s.io`).
pub struct Tunnel {
    reader: ChannelReader,
    writer: ChannelWriter,
    session: Session,
}

impl Tunnel {
    /// Starts a raw session over `io`.
    pub fn new<T>(io: T) -> Tunnel
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let config = ChannelConfig {
            codec: Codec::Raw,
            close_signal: false,
            inputs: vec![0],
        };
        let (session, mut readers) = Session::new(io, config);
        Tunnel {
            reader: readers.remove(&0).unwrap_or_else(|| ChannelReader {
                rx: mpsc::channel(1).1,
                buf: Bytes::new(),
            }),
            writer: session.writer(0),
            session,
        }
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The SPDY session is done with the connection: close the WebSocket.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.session.close();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.session.close();
    }
}
