//! A small WebSocket streaming client for the tests, behaving like
//! client-go's WebSocket executor: an RFC 6455 upgrade offering
//! `channel.k8s.io` sub-protocols, then tungstenite in the client role
//! (masked frames, pings and the server's close answered), one channel byte
//! per message (an ASCII digit plus base64 in the base64 protocols), and
//! `[255, n]` to close a channel under v5.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

#[derive(Default)]
struct Seen {
    channels: HashMap<u8, Vec<u8>>,
    /// Messages per channel, in order (empty ones included).
    messages: HashMap<u8, Vec<Vec<u8>>>,
    close: Option<Option<(u16, String)>>,
    eof: bool,
}

/// One upgraded connection.
pub struct WsClient {
    out: mpsc::UnboundedSender<Message>,
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
    /// The sub-protocol the server chose ("" if none).
    pub protocol: String,
    base64: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Asks `url` for a WebSocket upgrade offering `protocols`; on refusal
/// returns the status code and the response.
pub async fn connect(url: &str, protocols: &[&str]) -> Result<WsClient, (u16, String)> {
    connect_with(url, protocols, None).await
}

/// Like [`connect`] for an https URL whose server certificate `ca` signed.
pub async fn connect_tls(
    url: &str,
    protocols: &[&str],
    ca: &Path,
) -> Result<WsClient, (u16, String)> {
    connect_with(url, protocols, Some(ca)).await
}

async fn connect_with(
    url: &str,
    protocols: &[&str],
    ca: Option<&Path>,
) -> Result<WsClient, (u16, String)> {
    let rest = match ca {
        Some(_) => url.strip_prefix("https://").expect("https url"),
        None => url.strip_prefix("http://").expect("http url"),
    };
    let (host, path) = rest.split_at(rest.find('/').expect("path"));
    let tcp = TcpStream::connect(host).await.expect("connect streaming");
    let mut tcp: Box<dyn Io> = match ca {
        None => Box::new(tcp),
        Some(ca) => Box::new(tls(tcp, host, ca).await),
    };
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    );
    if !protocols.is_empty() {
        req.push_str(&format!(
            "Sec-WebSocket-Protocol: {}\r\n",
            protocols.join(", ")
        ));
    }
    req.push_str("\r\n");
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
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    assert_eq!(
        header("sec-websocket-accept").as_deref(),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    let protocol = header("sec-websocket-protocol").unwrap_or_default();
    let ws = WebSocketStream::from_raw_socket(tcp, Role::Client, None).await;
    let (mut sink, mut stream) = ws.split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
    });
    let seen = Arc::new(Mutex::new(Seen::default()));
    let changed = Arc::new(Notify::new());
    let base64 = protocol.contains("base64");
    let reader = {
        let (seen, changed) = (seen.clone(), changed.clone());
        tokio::spawn(async move {
            // tungstenite answers pings and the server's close on the next read.
            while let Some(Ok(m)) = stream.next().await {
                let mut s = seen.lock().unwrap();
                match m {
                    Message::Binary(b) if !b.is_empty() => record(&mut s, b[0], &b[1..]),
                    Message::Text(t) if !t.is_empty() => {
                        let t = t.as_bytes();
                        let data = base64::engine::general_purpose::STANDARD
                            .decode(&t[1..])
                            .expect("base64 payload");
                        record(&mut s, t[0] - b'0', &data);
                    }
                    Message::Close(c) => {
                        s.close = Some(c.map(|f| (u16::from(f.code), f.reason.to_string())));
                    }
                    _ => {}
                }
                drop(s);
                changed.notify_waiters();
            }
            seen.lock().unwrap().eof = true;
            changed.notify_waiters();
        })
    };
    Ok(WsClient {
        out,
        seen,
        changed,
        protocol,
        base64,
        tasks: vec![reader, writer],
    })
}

/// A TLS client connection trusting only `ca`.
async fn tls(tcp: TcpStream, host: &str, ca: &Path) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let ip = host.rsplit_once(':').expect("host:port").0.to_string();
    let name = rustls_pki_types::ServerName::try_from(ip).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

fn record(s: &mut Seen, ch: u8, data: &[u8]) {
    s.channels.entry(ch).or_default().extend_from_slice(data);
    s.messages.entry(ch).or_default().push(data.to_vec());
}

impl WsClient {
    /// Sends `data` on channel `ch`.
    pub fn send(&self, ch: u8, data: &[u8]) {
        let msg = if self.base64 {
            let mut t = String::from(char::from(b'0' + ch));
            t.push_str(&base64::engine::general_purpose::STANDARD.encode(data));
            Message::Text(t.into())
        } else {
            let mut b = vec![ch];
            b.extend_from_slice(data);
            Message::Binary(b.into())
        };
        let _ = self.out.send(msg);
    }

    /// v5: closes channel `ch` (stdin half-close).
    pub fn close_channel(&self, ch: u8) {
        let _ = self.out.send(Message::Binary(vec![255, ch].into()));
    }

    /// Waits until `f` holds for what channel `ch` received (or the
    /// connection ended), up to `limit`; returns it.
    pub async fn wait(&self, ch: u8, limit: Duration, f: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = self.seen.lock().unwrap();
                let data = s.channels.get(&ch).cloned().unwrap_or_default();
                if f(&data) || s.eof || tokio::time::Instant::now() >= deadline {
                    return data;
                }
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// Waits (up to 30 s) until the server closed the connection; returns
    /// its close code and reason, `None` for a bare TCP close.
    pub async fn closed(&self) -> Option<(u16, String)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = self.seen.lock().unwrap();
                if s.eof {
                    return s.close.clone().flatten();
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the server did not close the connection"
                );
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// Everything channel `ch` received, once the connection has ended.
    pub async fn read_to_end(&self, ch: u8) -> Vec<u8> {
        self.closed().await;
        self.received(ch)
    }

    /// What channel `ch` received so far.
    pub fn received(&self, ch: u8) -> Vec<u8> {
        let s = self.seen.lock().unwrap();
        s.channels.get(&ch).cloned().unwrap_or_default()
    }

    /// The messages channel `ch` received so far, empty ones included.
    pub fn messages(&self, ch: u8) -> Vec<Vec<u8>> {
        let s = self.seen.lock().unwrap();
        s.messages.get(&ch).cloned().unwrap_or_default()
    }

    /// Drops the TCP connection without any goodbye.
    pub fn disconnect(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for WsClient {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
