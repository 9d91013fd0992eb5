//! A small SPDY/3.1 streaming client for the tests, built on berth's frame
//! codec and behaving like Go's spdystream as crictl uses it: HTTP/1.1
//! upgrade, client-opened streams with `streamType` headers, no flow control.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth::streaming::spdy::{Frame, FrameDecoder, FrameEncoder};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

const FIN: u8 = 0x01;

/// What the client has received on one stream.
#[derive(Default, Debug)]
pub struct Received {
    pub data: Vec<u8>,
    pub fin: bool,
    pub reset: bool,
}

#[derive(Default)]
struct Seen {
    streams: HashMap<u32, Received>,
    eof: bool,
}

/// One upgraded connection.
pub struct Client {
    out: mpsc::UnboundedSender<Frame>,
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
    next_id: u32,
    /// The sub-protocol the server chose.
    pub protocol: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Asks `url` for an upgrade offering `protocols`; on refusal returns the
/// status code and body.
pub async fn connect(url: &str, protocols: &[&str]) -> Result<Client, (u16, String)> {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_at(rest.find('/').expect("path"));
    let mut tcp = TcpStream::connect(host).await.expect("connect streaming");
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    );
    for p in protocols {
        req.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let code: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if code != 101 {
        let mut body = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut body)).await;
        return Err((code, format!("{head}{}", String::from_utf8_lossy(&body))));
    }
    let protocol = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("x-stream-protocol-version")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let (mut rd, mut wr) = tcp.into_split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<Frame>();
    let writer = tokio::spawn(async move {
        let mut enc = FrameEncoder::new();
        while let Some(f) = out_rx.recv().await {
            let mut buf = BytesMut::new();
            enc.encode(&f, &mut buf).unwrap();
            if wr.write_all(&buf).await.is_err() {
                return;
            }
        }
    });
    let seen = Arc::new(Mutex::new(Seen::default()));
    let changed = Arc::new(Notify::new());
    let reader = {
        let (seen, changed, out) = (seen.clone(), changed.clone(), out.clone());
        tokio::spawn(async move {
            let mut dec = FrameDecoder::new();
            let mut buf = BytesMut::new();
            loop {
                while let Ok(Some(f)) = dec.decode(&mut buf) {
                    let mut s = seen.lock().unwrap();
                    match f {
                        Frame::Data {
                            stream_id,
                            flags,
                            data,
                        } => {
                            let r = s.streams.entry(stream_id).or_default();
                            r.data.extend_from_slice(&data);
                            r.fin |= flags & FIN != 0;
                        }
                        Frame::SynReply {
                            stream_id, flags, ..
                        } => s.streams.entry(stream_id).or_default().fin |= flags & FIN != 0,
                        Frame::RstStream { stream_id, .. } => {
                            s.streams.entry(stream_id).or_default().reset = true
                        }
                        Frame::Ping { id } => {
                            let _ = out.send(Frame::Ping { id });
                        }
                        _ => {}
                    }
                    drop(s);
                    changed.notify_waiters();
                }
                match rd.read_buf(&mut buf).await {
                    Ok(n) if n > 0 => {}
                    _ => {
                        seen.lock().unwrap().eof = true;
                        changed.notify_waiters();
                        return;
                    }
                }
            }
        })
    };
    Ok(Client {
        out,
        seen,
        changed,
        next_id: 1,
        protocol,
        tasks: vec![reader, writer],
    })
}

impl Client {
    /// Opens a stream with `headers`; returns its id.
    pub fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        let headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        self.out
            .send(Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                slot: 0,
                flags: 0,
                headers,
            })
            .unwrap();
        id
    }

    /// Opens an exec stream of `kind` (error, stdin, stdout, stderr, resize).
    pub fn open_typed(&mut self, kind: &str) -> u32 {
        self.open(&[("streamType", kind)])
    }

    /// Sends `data` on stream `id`, with FIN when `fin`.
    pub fn send(&self, id: u32, data: &[u8], fin: bool) {
        let _ = self.out.send(Frame::Data {
            stream_id: id,
            flags: if fin { FIN } else { 0 },
            data: Bytes::copy_from_slice(data),
        });
    }

    /// Waits until `f` holds for what stream `id` received (or the
    /// connection ended), up to `limit`; returns a copy of the data.
    pub async fn wait(&self, id: u32, limit: Duration, f: impl Fn(&Received) -> bool) -> Received {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = self.seen.lock().unwrap();
                let r = s.streams.get(&id);
                let done = r.is_some_and(&f) || s.eof;
                if done || tokio::time::Instant::now() >= deadline {
                    return r
                        .map(|r| Received {
                            data: r.data.clone(),
                            fin: r.fin,
                            reset: r.reset,
                        })
                        .unwrap_or_default();
                }
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// Everything stream `id` receives until FIN, reset or disconnect.
    pub async fn read_to_end(&self, id: u32) -> Received {
        self.wait(id, Duration::from_secs(30), |r| r.fin || r.reset)
            .await
    }

    /// Drops the TCP connection without any goodbye.
    pub fn disconnect(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
