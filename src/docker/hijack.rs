//! Hijacked connections (attach, exec start) and `POST /containers/{id}/attach`
//! and `/resize`.
//!
//! The client asks with `Connection: Upgrade` and `Upgrade: tcp`; berth
//! answers `101` and the connection becomes a raw byte pipe: the client's
//! bytes are stdin, the container's output comes back as multiplexed frames
//! (`[stream, 0, 0, 0, len u32 BE]` + payload, see [`MuxWriter`]) or, for a
//! terminal, raw. The client half-closes after its stdin ends (the docker
//! CLI calls `CloseWrite`); berth closes once the output has ended. Clients
//! that ask for no upgrade get `200` with the output as the body.
//!
//! ```text
//! client ──stdin──> [detach keys] ──> monitor attach socket ──> container stdin
//! client <──frames── MuxWriter <──── monitor frames (tag, len) <── container output
//! ```

use std::future::Future;
use std::pin::Pin;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use bytes::Bytes;
use http::{header, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use super::error::{flag, Query};
use super::{ApiError, ApiVersion, Shared};
use crate::engine::attach::{AttachPoint, Handoff};
use crate::engine::records::{ContainerRecord, ContainerState};
use crate::monitor::client;
use crate::monitor::log::Stream;

/// Stream ids of Docker's multiplexed framing.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// Docker's "system error" stream: errors met after the upgrade.
pub const SYSERR: u8 = 3;

/// `application/vnd.docker.multiplexed-stream`: frames of [`MuxWriter`].
pub const MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";
/// `application/vnd.docker.raw-stream`: bytes as the terminal gave them.
pub const RAW: &str = "application/vnd.docker.raw-stream";

/// What the daemon uses when a tty attach names no detach keys.
const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/containers/{id}/attach", post(attach))
        .route("/containers/{id}/resize", post(resize))
}

/// The client's side of a hijacked connection: what it sends (absent for a
/// client that did not upgrade) and where its output goes.
pub struct Conn {
    pub input: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub output: Box<dyn AsyncWrite + Send + Unpin>,
}

/// A boxed future run on the hijacked connection.
pub type Serve = Pin<Box<dyn Future<Output = ()> + Send>>;

/// True when the request asks to take over the connection.
pub fn wants_upgrade(req: &Request) -> bool {
    let has = |name: header::HeaderName, want: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case(want) || want.is_empty())
            })
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "")
}

/// Answers a hijack request and runs `serve` on the connection: `101` and
/// the upgraded connection when the client asked for it, else `200` with
/// `serve`'s output as the body (and no input).
pub fn hijack(
    req: &mut Request,
    content_type: &'static str,
    serve: impl FnOnce(Conn) -> Serve + Send + 'static,
) -> Response {
    if wants_upgrade(req) {
        let on = hyper::upgrade::on(req);
        tokio::spawn(async move {
            match on.await {
                Ok(up) => {
                    let (rd, wr) = tokio::io::split(TokioIo::new(up));
                    serve(Conn {
                        input: Some(Box::new(rd)),
                        output: Box::new(wr),
                    })
                    .await
                }
                Err(e) => debug!(error = %e, "hijack: the upgrade failed"),
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "tcp")
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::empty())
            .expect("static response parts");
    }
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(serve(Conn {
        input: None,
        output: Box::new(ours),
    }));
    let body = futures::stream::unfold(theirs, |mut r| async move {
        let mut buf = vec![0u8; 32 * 1024];
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), r))
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(body))
        .expect("static response parts")
}

/// The content type of an attach or exec stream: frames unless a terminal
/// (API versions before 1.42 always said raw).
pub fn content_type(tty: bool, version: Option<ApiVersion>) -> &'static str {
    if !tty && version.is_none_or(|v| v >= ApiVersion(1, 42)) {
        MULTIPLEXED
    } else {
        RAW
    }
}

/// Writes output for a client: multiplexed frames, or raw bytes for a terminal.
pub struct MuxWriter<W> {
    out: W,
    raw: bool,
}

impl<W: AsyncWrite + Unpin> MuxWriter<W> {
    pub fn new(out: W, raw: bool) -> Self {
        MuxWriter { out, raw }
    }

    /// Writes `data` of `stream` ([`STDOUT`], [`STDERR`], [`SYSERR`]).
    pub async fn write(&mut self, stream: u8, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if !self.raw {
            let mut head = [0u8; 8];
            head[0] = stream;
            head[4..].copy_from_slice(&(data.len() as u32).to_be_bytes());
            self.out.write_all(&head).await?;
        }
        self.out.write_all(data).await?;
        self.out.flush().await
    }

    /// Ends the output (the client sees EOF).
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.out.shutdown().await
    }
}

#[derive(Deserialize)]
struct AttachParams {
    stream: Option<String>,
    stdin: Option<String>,
    stdout: Option<String>,
    stderr: Option<String>,
    logs: Option<String>,
    #[serde(rename = "detachKeys")]
    detach_keys: Option<String>,
}

/// What an attach was asked for.
struct AttachPlan {
    rec: ContainerRecord,
    stdout: bool,
    stderr: bool,
    logs: bool,
    detach: Option<Vec<u8>>,
    tty: bool,
}

async fn attach(
    State(d): State<Shared>,
    Path(id): Path<String>,
    version: Option<Extension<ApiVersion>>,
    Query(p): Query<AttachParams>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let rec = d.container(&id)?;
    if rec.paused {
        return Err(ApiError::conflict(format!(
            "container {} is paused, unpause the container before attach",
            rec.id
        )));
    }
    let tty = rec.config.tty;
    let detach = match (tty, p.detach_keys.as_deref()) {
        (false, _) => None,
        (true, None | Some("")) => Some(detach_keys(DEFAULT_DETACH_KEYS)?),
        (true, Some(k)) => Some(detach_keys(k)?),
    };
    let want_stdin = flag(&p.stdin) && rec.config.stdin;
    // Connected before the answer: Docker's `run` attaches, then starts the
    // container, and nothing it prints may be missed. A container with no
    // monitor now (exited, or its command could not be executed at create)
    // is attached when its next start makes one (`docker start -a`).
    let monitor = if flag(&p.stream) {
        Some(match d.engine.attach_point(&rec.id)? {
            AttachPoint::Now(sock) => {
                MonitorLink::Now(client::connect(&sock, want_stdin).await.map_err(|e| {
                    ApiError::internal(format!("failed to attach to container {}: {e}", rec.id))
                })?)
            }
            AttachPoint::Next(rx) => MonitorLink::Next(rx, want_stdin),
        })
    } else {
        None
    };
    d.engine.emit_container("attach", &rec, &[]);
    let plan = AttachPlan {
        stdout: flag(&p.stdout),
        stderr: flag(&p.stderr),
        logs: flag(&p.logs),
        detach,
        tty,
        rec,
    };
    let ct = content_type(tty, version.map(|Extension(v)| v));
    let d2 = d.clone();
    Ok(hijack(&mut req, ct, move |conn| {
        Box::pin(run_attach(d2, plan, monitor, conn))
    }))
}

/// The monitor an attach reads from: connected, or the wait for the one
/// of the container's next start (with whether stdin is wanted).
enum MonitorLink {
    Now((client::Output, Option<client::Input>)),
    Next(tokio::sync::oneshot::Receiver<Handoff>, bool),
}

impl MonitorLink {
    /// The connection, once there is a monitor; None when the start failed
    /// or the container went away.
    async fn connected(self, id: &str) -> Option<(client::Output, Option<client::Input>)> {
        match self {
            MonitorLink::Now(c) => Some(c),
            MonitorLink::Next(rx, stdin) => {
                let handoff = rx.await.ok()?;
                let c = client::connect(&handoff.socket, stdin).await;
                // Registered (or failed): the start may go on.
                drop(handoff.registered);
                match c {
                    Ok(c) => Some(c),
                    Err(e) => {
                        debug!(container = %id, error = %e, "attach: the new monitor refused");
                        None
                    }
                }
            }
        }
    }
}

async fn run_attach(d: Shared, plan: AttachPlan, monitor: Option<MonitorLink>, conn: Conn) {
    let Conn { input, output } = conn;
    let mut out = MuxWriter::new(output, plan.tty);
    if plan.logs {
        if let Err(e) = replay_log(&plan, &mut out).await {
            debug!(container = %plan.rec.id, error = %e, "attach: log replay ended");
        }
    }
    let link = match monitor {
        Some(m) => m.connected(&plan.rec.id).await,
        None => None,
    };
    let Some((mut frames, stdin)) = link else {
        let _ = out.shutdown().await;
        return;
    };
    let (detached_tx, detached_rx) = tokio::sync::oneshot::channel::<()>();
    let feeder = match (input, stdin) {
        (Some(mut from), Some(to)) => {
            let keys = plan.detach.clone();
            Some(tokio::spawn(async move {
                if feed_stdin(&mut from, to, keys.as_deref()).await {
                    let _ = detached_tx.send(());
                }
            }))
        }
        _ => None,
    };
    let detached = relay(
        &mut frames,
        detached_rx,
        &mut out,
        (plan.stdout, plan.stderr),
        &plan.rec.id,
    )
    .await;
    if let Some(f) = feeder {
        f.abort();
    }
    if detached {
        d.engine.emit_container("detach", &plan.rec, &[]);
    }
    let _ = out.shutdown().await;
}

/// Passes the container's output to the client (the `wanted` streams,
/// stdout and stderr) until it ends or the client detaches (true).
async fn relay<W: AsyncWrite + Unpin>(
    frames: &mut client::Output,
    mut detached: tokio::sync::oneshot::Receiver<()>,
    out: &mut MuxWriter<W>,
    wanted: (bool, bool),
    container: &str,
) -> bool {
    let mut client_gone = false;
    // A oneshot receiver must not be polled again once it has resolved: a
    // feeder that ended without detaching drops the sender, after which
    // only the output is waited for.
    let mut detach_pending = true;
    loop {
        let frame = tokio::select! {
            f = frames.next() => f,
            r = &mut detached, if detach_pending => match r {
                Ok(()) => return true,
                Err(_) => {
                    detach_pending = false;
                    continue;
                }
            },
        };
        match frame {
            Ok(Some(f)) => {
                let (id, wanted) = match f.stream {
                    Stream::Stdout => (STDOUT, wanted.0),
                    Stream::Stderr => (STDERR, wanted.1),
                };
                // A client that went away no longer gets output, but the
                // attach lasts as long as Docker's would: to the end.
                if wanted && !client_gone && out.write(id, &f.data).await.is_err() {
                    client_gone = true;
                }
            }
            Ok(None) => return false,
            Err(e) => {
                debug!(%container, error = %e, "attach: monitor stream failed");
                return false;
            }
        }
    }
}

/// Copies the client's stdin to the container until it ends (then the
/// monitor sees the half-close) or the detach keys are typed (true).
async fn feed_stdin(
    from: &mut (dyn AsyncRead + Send + Unpin),
    mut to: client::Input,
    keys: Option<&[u8]>,
) -> bool {
    let mut buf = vec![0u8; 16 * 1024];
    let mut scan = keys.map(DetachScanner::new);
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (pass, detach) = match scan.as_mut() {
            Some(s) => s.feed(&buf[..n]),
            None => (buf[..n].to_vec(), false),
        };
        if !pass.is_empty() && to.write_all(&pass).await.is_err() {
            return false;
        }
        if detach {
            return true;
        }
    }
    let _ = to.shutdown().await;
    false
}

/// Replays the container's log before the live stream (`logs=1`).
async fn replay_log(
    plan: &AttachPlan,
    out: &mut MuxWriter<Box<dyn AsyncWrite + Send + Unpin>>,
) -> std::io::Result<()> {
    let Some(path) = &plan.rec.log_path else {
        return Ok(());
    };
    let mut parser = super::logs::Parser::default();
    let mut msgs = Vec::new();
    crate::engine::logfiles::read_lines(path, |l| msgs.extend(parser.line(l))).await?;
    for m in msgs.into_iter().chain(parser.flush()) {
        let wanted = if m.stream == STDOUT {
            plan.stdout
        } else {
            plan.stderr
        };
        if wanted {
            out.write(m.stream, &m.line).await?;
        }
    }
    Ok(())
}

/// Docker's detach keys: comma-separated `ctrl-<x>` or single characters.
pub fn detach_keys(spec: &str) -> Result<Vec<u8>, ApiError> {
    let bad = || ApiError::bad_request(format!("Invalid detach keys ({spec}) provided"));
    let mut out = Vec::new();
    for key in spec.split(',') {
        let k = key.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let c = match c.as_bytes() {
                [c] => *c,
                _ => return Err(bad()),
            };
            out.push(match c {
                b'a'..=b'z' => c - b'a' + 1,
                b'@' => 0,
                b'[' => 27,
                b'\\' => 28,
                b']' => 29,
                b'^' => 30,
                b'_' => 31,
                _ => return Err(bad()),
            });
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(bad());
        }
    }
    Ok(out)
}

/// Finds the detach sequence in stdin: bytes that may start it are held
/// back until it is clear whether they do.
struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    fn new(keys: &[u8]) -> Self {
        DetachScanner {
            keys: keys.to_vec(),
            matched: 0,
        }
    }

    /// The bytes to pass on, and whether the sequence is complete (the
    /// bytes after it are dropped).
    fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut pass = Vec::with_capacity(data.len());
        for &b in data {
            if self.keys.is_empty() {
                pass.push(b);
                continue;
            }
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (pass, true);
                }
            } else {
                pass.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                } else {
                    pass.push(b);
                }
            }
        }
        (pass, false)
    }
}

#[derive(Deserialize)]
struct ResizeParams {
    h: Option<String>,
    w: Option<String>,
}

/// `h` and `w` of a resize: numbers that fit a terminal's u16.
pub fn terminal_size(h: Option<&str>, w: Option<&str>) -> Result<(u16, u16), ApiError> {
    let num = |name: &str, v: Option<&str>| -> Result<u16, ApiError> {
        let v = v.unwrap_or("").trim();
        v.parse::<u16>()
            .map_err(|e| ApiError::bad_request(format!("invalid resize {name} {v:?}: {e}")))
    };
    Ok((num("width", w)?, num("height", h)?))
}

/// `POST /containers/{id}/resize?h=&w=`: the container's terminal size.
async fn resize(
    State(d): State<Shared>,
    Path(id): Path<String>,
    Query(p): Query<ResizeParams>,
) -> Result<StatusCode, ApiError> {
    let (width, height) = terminal_size(p.h.as_deref(), p.w.as_deref())?;
    let rec = d.container(&id)?;
    if rec.state != ContainerState::Running {
        return Err(ApiError::conflict(format!(
            "container {} is not running",
            rec.id
        )));
    }
    if !rec.config.tty {
        return Ok(StatusCode::OK);
    }
    let sock = d.engine.attach_socket_early(&rec.id)?;
    client::resize(&sock, width, height)
        .await
        .map_err(|e| ApiError::internal(format!("failed to resize container {}: {e}", rec.id)))?;
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_carry_stream_and_length() {
        let mut buf = Vec::new();
        let mut w = MuxWriter::new(&mut buf, false);
        w.write(STDOUT, b"out\n").await.unwrap();
        w.write(STDERR, b"e").await.unwrap();
        w.write(STDOUT, b"").await.unwrap();
        assert_eq!(
            buf,
            b"\x01\x00\x00\x00\x00\x00\x00\x04out\n\x02\x00\x00\x00\x00\x00\x00\x01e"
        );
        let mut raw = Vec::new();
        let mut w = MuxWriter::new(&mut raw, true);
        w.write(STDOUT, b"a").await.unwrap();
        w.write(STDERR, b"b").await.unwrap();
        assert_eq!(raw, b"ab");
    }

    #[test]
    fn content_types_follow_tty_and_version() {
        assert_eq!(content_type(false, None), MULTIPLEXED);
        assert_eq!(content_type(true, None), RAW);
        assert_eq!(content_type(false, Some(ApiVersion(1, 41))), RAW);
        assert_eq!(content_type(false, Some(ApiVersion(1, 47))), MULTIPLEXED);
    }

    #[test]
    fn detach_keys_parse_like_docker() {
        assert_eq!(detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(detach_keys("a,ctrl-@,ctrl-[").unwrap(), vec![b'a', 0, 27]);
        assert!(detach_keys("ctrl-").is_err());
        assert!(detach_keys("abc").is_err());
    }

    #[test]
    fn detach_sequence_is_held_back_and_released() {
        let mut s = DetachScanner::new(&[16, 17]);
        assert_eq!(s.feed(b"ab\x10"), (b"ab".to_vec(), false));
        // Not the sequence after all: the held byte goes through.
        assert_eq!(s.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(s.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(s.feed(b"\x11rest"), (Vec::new(), true));
    }

    #[test]
    fn resize_sizes_are_checked() {
        assert_eq!(terminal_size(Some("24"), Some("80")).unwrap(), (80, 24));
        let e = terminal_size(Some("-1"), Some("80")).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(terminal_size(None, Some("80")).is_err());
    }

    /// A client that asks for no upgrade gets the output as a 200 body.
    #[tokio::test]
    async fn without_upgrade_output_is_the_body() {
        let mut req = Request::post("/x").body(Body::empty()).unwrap();
        let res = hijack(&mut req, MULTIPLEXED, |conn| {
            Box::pin(async move {
                assert!(conn.input.is_none());
                let mut w = MuxWriter::new(conn.output, false);
                w.write(STDOUT, b"hi").await.unwrap();
                w.shutdown().await.unwrap();
            })
        });
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], MULTIPLEXED);
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"\x01\x00\x00\x00\x00\x00\x00\x02hi");
    }

    /// Output that keeps coming after the stdin feeder has ended (the
    /// sender dropped) reaches the client whole; the closed detach channel
    /// is not polled again (it panicked "called after complete" before).
    #[tokio::test]
    async fn output_after_stdin_ended_is_relayed_whole() {
        use crate::monitor::attach::Attach;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.sock");
        let a = Attach::serve(&path, None, false, None).unwrap();
        let (mut frames, _) = client::connect(&path, false).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        drop(tx);
        let sender = {
            let a = a.clone();
            tokio::spawn(async move {
                for i in 0..200u32 {
                    a.broadcast(Stream::Stdout, &i.to_be_bytes());
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                a.close();
            })
        };
        let mut buf = Vec::new();
        let mut out = MuxWriter::new(&mut buf, true);
        assert!(!relay(&mut frames, rx, &mut out, (true, true), "c1").await);
        sender.await.unwrap();
        let want: Vec<u8> = (0..200u32).flat_map(|i| i.to_be_bytes()).collect();
        assert_eq!(buf, want);
    }

    /// The detach keys end the relay with true while output is still open.
    #[tokio::test]
    async fn detach_ends_the_relay() {
        use crate::monitor::attach::Attach;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.sock");
        let _a = Attach::serve(&path, None, false, None).unwrap();
        let (mut frames, _) = client::connect(&path, false).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tx.send(()).unwrap();
        let mut out = MuxWriter::new(Vec::new(), true);
        assert!(relay(&mut frames, rx, &mut out, (true, true), "c1").await);
    }

    #[test]
    fn upgrade_is_recognised() {
        let req = |conn: &str, up: Option<&str>| {
            let mut b = Request::post("/x").header(header::CONNECTION, conn);
            if let Some(u) = up {
                b = b.header(header::UPGRADE, u);
            }
            b.body(Body::empty()).unwrap()
        };
        assert!(wants_upgrade(&req("Upgrade", Some("tcp"))));
        assert!(wants_upgrade(&req("keep-alive, upgrade", Some("tcp"))));
        assert!(!wants_upgrade(&req("keep-alive", Some("tcp"))));
        assert!(!wants_upgrade(&req("Upgrade", None)));
    }
}
