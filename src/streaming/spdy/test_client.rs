//! A small SPDY/3.1 client for the session tests, built on the frame codec.
//!
//! With `flow_control` it behaves like a compliant peer: announces its window
//! with SETTINGS, respects the server's windows and re-credits what the test
//! consumes. Without it, it behaves like Go's spdystream: no SETTINGS, no
//! WINDOW_UPDATE, windows ignored. Either way it checks that the server never
//! overruns the windows it was given.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::decode::FrameDecoder;
use super::frame::{Frame, FrameEncoder, GoAwayStatus, RstStatus, Setting};
use super::frame::{FLAG_FIN, SETTINGS_INITIAL_WINDOW_SIZE};
use super::DEFAULT_WINDOW;

const CHUNK: usize = 16 * 1024;

/// What the client has seen of one stream.
#[derive(Default)]
pub struct StreamSeen {
    pub replied: bool,
    pub data: VecDeque<Bytes>,
    pub fin: bool,
    pub reset: Option<RstStatus>,
    send_window: i64,
    recv_window: i64,
    pub min_recv_window: i64,
}

/// What the client has seen of the session.
#[derive(Default)]
pub struct Seen {
    pub streams: HashMap<u32, StreamSeen>,
    pub pongs: Vec<u32>,
    pub goaway: Option<(u32, GoAwayStatus)>,
    pub resets: Vec<(u32, RstStatus)>,
    pub eof: bool,
    pub window_violations: usize,
    pub min_session_window: i64,
    session_recv: i64,
    session_send: i64,
    initial_window: i64,
}

struct Inner {
    out: tokio::sync::Mutex<Option<(FrameEncoder, WriteHalf<DuplexStream>)>>,
    seen: Mutex<Seen>,
    changed: Notify,
    flow_control: bool,
}

impl Inner {
    async fn send(&self, frame: Frame) {
        let mut out = self.out.lock().await;
        let Some((enc, io)) = out.as_mut() else {
            return;
        };
        let mut buf = BytesMut::new();
        enc.encode(&frame, &mut buf).unwrap();
        // The server may be gone in disconnect tests; that is their business.
        let _ = io.write_all(&buf).await;
    }

    /// Waits until `f` returns something, re-checking after every frame.
    async fn wait_for<T>(&self, mut f: impl FnMut(&mut Seen) -> Option<T>) -> T {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = f(&mut self.seen.lock().unwrap()) {
                return v;
            }
            notified.await;
        }
    }
}

pub struct TestClient {
    inner: Arc<Inner>,
    reader: JoinHandle<()>,
    next_id: u32,
}

impl TestClient {
    /// Connects over `io`; a flow-controlled client announces `window` as its
    /// per-stream receive window.
    pub async fn connect(io: DuplexStream, flow_control: bool, window: u32) -> Self {
        let (rd, wr) = tokio::io::split(io);
        let seen = Seen {
            session_recv: DEFAULT_WINDOW.into(),
            session_send: DEFAULT_WINDOW.into(),
            min_session_window: DEFAULT_WINDOW.into(),
            initial_window: window.into(),
            ..Seen::default()
        };
        let inner = Arc::new(Inner {
            out: tokio::sync::Mutex::new(Some((FrameEncoder::new(), wr))),
            seen: Mutex::new(seen),
            changed: Notify::new(),
            flow_control,
        });
        if flow_control {
            let entry = Setting {
                flags: 0,
                id: SETTINGS_INITIAL_WINDOW_SIZE,
                value: window,
            };
            inner
                .send(Frame::Settings {
                    flags: 0,
                    entries: vec![entry],
                })
                .await;
        }
        let reader = tokio::spawn(read_loop(rd, inner.clone()));
        Self {
            inner,
            reader,
            next_id: 1,
        }
    }

    pub async fn send(&self, frame: Frame) {
        self.inner.send(frame).await;
    }

    pub async fn wait_for<T>(&self, f: impl FnMut(&mut Seen) -> Option<T>) -> T {
        self.inner.wait_for(f).await
    }

    /// Opens a stream with SYN_STREAM; does not wait for the reply.
    pub async fn open(&mut self, headers: &[(&str, &str)], flags: u8) -> ClientStream {
        let id = self.next_id;
        self.next_id += 2;
        {
            let mut seen = self.inner.seen.lock().unwrap();
            let w = seen.initial_window;
            let st = seen.streams.entry(id).or_default();
            (st.send_window, st.recv_window, st.min_recv_window) = (DEFAULT_WINDOW.into(), w, w);
        }
        let headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let syn = Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags,
            headers,
        };
        self.send(syn).await;
        ClientStream {
            inner: self.inner.clone(),
            id,
        }
    }

    /// Drops the connection without any goodbye.
    pub async fn disconnect(self) {
        self.reader.abort();
        let _ = self.reader.await;
        self.inner.out.lock().await.take();
    }
}

pub struct ClientStream {
    inner: Arc<Inner>,
    pub id: u32,
}

impl ClientStream {
    pub async fn wait_reply(&self) {
        let id = self.id;
        self.inner
            .wait_for(|s| s.streams[&id].replied.then_some(()))
            .await;
    }

    /// Sends `data`, within the server's windows when flow-controlled.
    pub async fn write_all(&self, mut data: &[u8]) {
        let id = self.id;
        while !data.is_empty() {
            let n = self
                .inner
                .wait_for(|s| {
                    let want = data.len().min(CHUNK) as i64;
                    let st = s.streams.get_mut(&id).unwrap();
                    assert!(st.reset.is_none(), "stream {id} reset while writing");
                    if !self.inner.flow_control {
                        return Some(want);
                    }
                    let n = want.min(st.send_window).min(s.session_send);
                    (n > 0).then(|| {
                        s.streams.get_mut(&id).unwrap().send_window -= n;
                        s.session_send -= n;
                        n
                    })
                })
                .await as usize;
            let chunk = Bytes::copy_from_slice(&data[..n]);
            self.inner
                .send(Frame::Data {
                    stream_id: id,
                    flags: 0,
                    data: chunk,
                })
                .await;
            data = &data[n..];
        }
    }

    pub async fn finish(&self) {
        self.inner
            .send(Frame::Data {
                stream_id: self.id,
                flags: FLAG_FIN,
                data: Bytes::new(),
            })
            .await;
    }

    /// Next chunk of data, or `None` at FIN; re-credits what it returns.
    pub async fn read(&self) -> Option<Bytes> {
        let id = self.id;
        let chunk = self
            .inner
            .wait_for(|s| {
                let st = s.streams.get_mut(&id).unwrap();
                match st.data.pop_front() {
                    Some(b) => Some(Some(b)),
                    None if st.fin || st.reset.is_some() || s.eof => Some(None),
                    None => None,
                }
            })
            .await?;
        if self.inner.flow_control {
            let delta = chunk.len() as u32;
            if let Some(st) = self.inner.seen.lock().unwrap().streams.get_mut(&id) {
                st.recv_window += i64::from(delta);
            }
            self.inner
                .send(Frame::WindowUpdate {
                    stream_id: id,
                    delta,
                })
                .await;
        }
        Some(chunk)
    }

    pub async fn read_to_end(&self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = self.read().await {
            out.extend_from_slice(&chunk);
        }
        out
    }

    /// Bytes received but not yet read by the test.
    pub fn pending(&self) -> usize {
        let seen = self.inner.seen.lock().unwrap();
        seen.streams[&self.id].data.iter().map(Bytes::len).sum()
    }
}

async fn read_loop(mut rd: ReadHalf<DuplexStream>, inner: Arc<Inner>) {
    let mut dec = FrameDecoder::new();
    let mut buf = BytesMut::new();
    loop {
        let frame = match dec.decode(&mut buf).unwrap() {
            Some(frame) => frame,
            None => {
                if rd.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    inner.seen.lock().unwrap().eof = true;
                    inner.changed.notify_waiters();
                    return;
                }
                continue;
            }
        };
        let credit = match &frame {
            Frame::Data { data, .. } if inner.flow_control && !data.is_empty() => data.len() as u32,
            _ => 0,
        };
        if let Frame::Ping { id } = frame {
            if id.is_multiple_of(2) {
                inner.send(Frame::Ping { id }).await;
            }
        }
        apply(&mut inner.seen.lock().unwrap(), frame);
        if credit > 0 {
            // Like the server, credit the session window on arrival so one
            // unread stream cannot starve the others.
            inner.seen.lock().unwrap().session_recv += i64::from(credit);
            inner
                .send(Frame::WindowUpdate {
                    stream_id: 0,
                    delta: credit,
                })
                .await;
        }
        inner.changed.notify_waiters();
    }
}

fn apply(s: &mut Seen, frame: Frame) {
    match frame {
        Frame::SynReply { stream_id, .. } => s.streams.entry(stream_id).or_default().replied = true,
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            s.session_recv -= data.len() as i64;
            s.min_session_window = s.min_session_window.min(s.session_recv);
            let st = s.streams.entry(stream_id).or_default();
            st.recv_window -= data.len() as i64;
            st.min_recv_window = st.min_recv_window.min(st.recv_window);
            let overrun = st.recv_window < 0 || s.session_recv < 0;
            if !data.is_empty() {
                st.data.push_back(data);
            }
            st.fin |= flags & FLAG_FIN != 0;
            s.window_violations += usize::from(overrun);
        }
        Frame::RstStream { stream_id, status } => {
            s.resets.push((stream_id, status));
            if let Some(st) = s.streams.get_mut(&stream_id) {
                st.reset = Some(status);
            }
        }
        Frame::WindowUpdate {
            stream_id: 0,
            delta,
        } => s.session_send += i64::from(delta),
        Frame::WindowUpdate { stream_id, delta } => {
            s.streams.entry(stream_id).or_default().send_window += i64::from(delta);
        }
        Frame::Ping { id } => s.pongs.push(id),
        Frame::GoAway {
            last_good_stream_id,
            status,
        } => s.goaway = Some((last_good_stream_id, status)),
        _ => {}
    }
}
