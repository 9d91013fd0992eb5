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
//! Two tasks drive a session: `inbound` reads frames, answers pings and
//! closes, and hands input to [`ChannelReader`]s; `outbound` owns the write
//! half and sends what [`ChannelWriter`]s queued, in order.
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
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use super::frame::{self, close_code, Assembler, FrameDecoder, Message, Opcode};

/// Largest message accepted from a client.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Largest payload put in one outgoing message.
const MAX_CHUNK: usize = 32 * 1024;
/// Bytes queued for the socket before writers wait.
const QUEUE_LIMIT: usize = 256 * 1024;
/// Messages buffered per input channel before reading the socket pauses.
const INPUT_BACKLOG: usize = 16;
const READ_CHUNK: usize = 32 * 1024;
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
    frames: VecDeque<Bytes>,
    queued: usize,
    /// Our close frame is queued: nothing may follow it.
    closing: bool,
    /// Our close frame is on the wire.
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

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().expect("websocket outbox lock")
    }

    fn queue(&self, frame: Bytes) {
        let mut o = self.lock();
        if o.closing || o.ended {
            return;
        }
        o.queued += frame.len();
        o.frames.push_back(frame);
        drop(o);
        self.ready.notify_one();
    }

    /// Queues a close frame; later writes fail.
    fn queue_close(&self, code: u16, reason: &str) {
        let mut o = self.lock();
        if o.closing || o.ended {
            return;
        }
        let mut buf = BytesMut::new();
        frame::encode(
            true,
            Opcode::Close,
            &frame::close_body(code, reason),
            None,
            &mut buf,
        );
        o.frames.push_back(buf.freeze());
        o.closing = true;
        let wakers = std::mem::take(&mut o.space);
        drop(o);
        wakers.into_iter().for_each(Waker::wake);
        self.ready.notify_one();
    }

    fn end(&self) {
        let mut o = self.lock();
        o.ended = true;
        o.frames.clear();
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
    tasks: [JoinHandle<()>; 2],
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
        let (rd, wr) = tokio::io::split(io);
        let inbound = Inbound {
            shared: shared.clone(),
            senders,
            close_signal: config.close_signal,
        };
        let tasks = [
            tokio::spawn(inbound.run(rd)),
            tokio::spawn(outbound(wr, shared.clone())),
        ];
        let session = Session {
            shared,
            ended: ended_rx,
            tasks,
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
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Resolves once the session has ended.
    pub async fn closed(&self) {
        let mut ended = self.ended.clone();
        let _ = ended.wait_for(|e| *e).await;
    }

    /// Waits until both tasks have exited.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// One message for `channel` in `codec`, as an unmasked frame.
fn encode_message(codec: Codec, channel: u8, data: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    match codec {
        Codec::Binary => {
            let mut msg = Vec::with_capacity(data.len() + 1);
            msg.push(channel);
            msg.extend_from_slice(data);
            frame::encode(true, Opcode::Binary, &msg, None, &mut buf);
        }
        Codec::Base64 => {
            let mut msg = String::with_capacity(data.len() * 4 / 3 + 5);
            msg.push(char::from(b'0' + channel));
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut msg);
            frame::encode(true, Opcode::Text, msg.as_bytes(), None, &mut buf);
        }
        Codec::Raw => frame::encode(true, Opcode::Binary, data, None, &mut buf),
    }
    buf.freeze()
}

/// Splits a client's data message into (channel, payload); `None` for a
/// message that names no channel.
fn decode_message(codec: Codec, msg: Message) -> Result<Option<(u8, Bytes)>, frame::FrameError> {
    match (codec, msg) {
        (Codec::Raw, Message::Binary(b)) => Ok(Some((0, b))),
        (Codec::Binary, Message::Binary(b)) if !b.is_empty() => Ok(Some((b[0], b.slice(1..)))),
        (Codec::Base64, Message::Text(t)) if !t.is_empty() => {
            let ch = t[0].wrapping_sub(b'0');
            let data = base64::engine::general_purpose::STANDARD
                .decode(&t[1..])
                .map_err(|_| frame::FrameError::Utf8)?;
            Ok(Some((ch, data.into())))
        }
        _ => Ok(None),
    }
}

struct Inbound {
    shared: Arc<Shared>,
    senders: HashMap<u8, mpsc::Sender<Bytes>>,
    close_signal: bool,
}

impl Inbound {
    async fn run<R: AsyncRead>(mut self, rd: R) {
        tokio::pin!(rd);
        let mut ended = self.shared.ended.subscribe();
        tokio::select! {
            _ = self.read_loop(&mut rd) => {}
            _ = ended.wait_for(|e| *e) => {}
        }
        // Input ends with the connection.
        self.senders.clear();
    }

    /// Reads until the peer's close, EOF or a protocol error.
    async fn read_loop<R: AsyncRead>(&mut self, rd: &mut Pin<&mut R>) {
        let decoder = FrameDecoder::new(true, MAX_MESSAGE as u64);
        let mut assembler = Assembler::new(MAX_MESSAGE);
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    buf.reserve(READ_CHUNK);
                    match rd.read_buf(&mut buf).await {
                        Ok(0) => break,
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::debug!(error = %e, "websocket read failed");
                            break;
                        }
                    }
                }
                Err(e) => return self.protocol_error(e),
            };
            let msg = match assembler.push(frame) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => return self.protocol_error(e),
            };
            match msg {
                Message::Ping(p) => {
                    let mut out = BytesMut::new();
                    frame::encode(true, Opcode::Pong, &p, None, &mut out);
                    self.shared.queue(out.freeze());
                }
                Message::Pong(_) => {}
                Message::Close(code) => {
                    // Answer with the same code (§5.5.1) unless our own close
                    // went first; the session ends once both are through.
                    let code = code.map_or(close_code::NORMAL, |(c, _)| c);
                    self.shared.queue_close(code, "");
                    let mut o = self.shared.lock();
                    o.peer_closed = true;
                    let done = o.close_sent;
                    drop(o);
                    if done {
                        self.shared.end();
                    }
                    return;
                }
                Message::Text(_) | Message::Binary(_) => self.data(msg).await,
            }
        }
        // The peer vanished without a close: nothing more can be sent.
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

    fn protocol_error(&self, e: frame::FrameError) {
        tracing::debug!(error = %e, "closing websocket session after a protocol error");
        self.shared.queue_close(e.close_code(), &e.to_string());
        // No answer is awaited from a peer that broke the protocol.
        self.shared.lock().peer_closed = true;
    }
}

/// Writes queued frames until the session ends or a close frame is out.
async fn outbound<W: AsyncWrite>(wr: W, shared: Arc<Shared>) {
    tokio::pin!(wr);
    loop {
        let notified = shared.ready.notified();
        let (batch, closing) = {
            let mut o = shared.lock();
            if o.ended {
                break;
            }
            let batch: Vec<Bytes> = o.frames.drain(..).collect();
            (batch, o.closing)
        };
        if batch.is_empty() {
            notified.await;
            continue;
        }
        let mut failed = false;
        let mut sent = 0;
        for f in &batch {
            if wr.write_all(f).await.is_err() {
                failed = true;
                break;
            }
            sent += f.len();
        }
        if !failed && wr.flush().await.is_err() {
            failed = true;
        }
        {
            let mut o = shared.lock();
            o.queued = o.queued.saturating_sub(sent);
            let wakers = std::mem::take(&mut o.space);
            drop(o);
            wakers.into_iter().for_each(Waker::wake);
        }
        if failed {
            break;
        }
        if closing && shared.lock().frames.is_empty() {
            // Our close is out: nothing else will be written. The session
            // ends when the peer's close has come too, or after CLOSE_WAIT.
            let _ = wr.shutdown().await;
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
        let f = encode_message(self.shared.codec, self.channel, &buf[..n]);
        o.queued += f.len();
        o.frames.push_back(f);
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
            reader: readers.remove(&0).expect("channel 0 configured"),
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
