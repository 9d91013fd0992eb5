//! The daemon's side of a monitor's socket (see [`super::attach`]): one
//! client for every front end that attaches to a container — Docker's
//! hijacked attach and CRI's streaming attach — so the protocol is spoken in
//! one place. It speaks `berth.monitor.v1` to `monitor.sock` and the v0
//! bytes ([`v0`]) to the `attach.sock` of a monitor an older berthd started
//! (the socket's name tells which, see [`super::proto`]).
//!
//! ```text
//! connect(socket, stdin) ──hello + ack──> (Output, Option<Input>)
//!   Output::next()  -> Some(Frame { stream, data }) … None when the container's output ended
//!   Input (AsyncWrite) -> the container's stdin; shutdown() = half-close (stdin_once)
//! resize(socket, width, height) — its own short connection
//! reopen_log(socket) — v1 only; v0 monitors take SIGUSR1
//! ```

mod v0;

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::attach::socket_path;
use super::log::Stream;
use super::proto::{self, pb, Protocol};

/// How long the monitor gets to acknowledge a new client.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A piece of the container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub stream: Stream,
    pub data: Vec<u8>,
}

/// The container's output, frame by frame.
pub struct Output {
    rd: BufReader<OwnedReadHalf>,
    protocol: Protocol,
}

/// The container's stdin. Shutting it down half-closes the connection,
/// which closes the container's stdin when it was made with `stdin_once`.
pub struct Input {
    wr: OwnedWriteHalf,
}

/// Connects to the monitor's socket at `socket` (long paths are reached
/// through `/proc/self/fd`) and registers for output, and for stdin when
/// `stdin` is set. Returns once the monitor has registered the client:
/// everything the container prints from then on is seen.
pub async fn connect(socket: &Path, stdin: bool) -> io::Result<(Output, Option<Input>)> {
    let protocol = Protocol::of_socket(socket);
    let mut conn = dial(socket).await?;
    let greeted = async {
        match protocol {
            Protocol::V0 => v0::hello(&mut conn, stdin).await,
            Protocol::V1 => {
                let kind = match stdin {
                    true => pb::Kind::Stdin,
                    false => pb::Kind::Output,
                };
                hello(&mut conn, kind).await
            }
        }
    };
    match tokio::time::timeout(ACK_TIMEOUT, greeted).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the monitor closed the attach connection (the container has exited)",
            ))
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the monitor did not acknowledge the attach",
            ))
        }
    }
    let (rd, wr) = conn.into_split();
    let input = stdin.then_some(Input { wr });
    let rd = BufReader::new(rd);
    Ok((Output { rd, protocol }, input))
}

/// Sends a v1 hello and waits for its ack (no timeout: the caller's).
async fn hello(conn: &mut UnixStream, kind: pb::Kind) -> io::Result<()> {
    let h = pb::Hello {
        version: proto::VERSION,
        kind: kind as i32,
    };
    conn.write_all(&h.encode_length_delimited_to_vec()).await?;
    let ack: pb::Ack = read_msg(conn).await?.ok_or(io::ErrorKind::UnexpectedEof)?;
    if !ack.error.is_empty() {
        return Err(io::Error::other(format!(
            "the monitor refused the request: {}",
            ack.error
        )));
    }
    Ok(())
}

/// Sets the size of the container's terminal (ignored by the monitor when
/// the container has none).
pub async fn resize(socket: &Path, width: u16, height: u16) -> io::Result<()> {
    let mut r = Resizer::connect(socket).await?;
    r.resize(width, height).await?;
    r.conn.shutdown().await
}

/// Has the monitor reopen the container's log file; returns once it holds
/// the new file. Only v1 monitors take this request (v0 ones: SIGUSR1).
pub async fn reopen_log(socket: &Path) -> io::Result<()> {
    if Protocol::of_socket(socket) == Protocol::V0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a v0 monitor reopens its log on SIGUSR1 only",
        ));
    }
    let mut conn = dial(socket).await?;
    match tokio::time::timeout(ACK_TIMEOUT, hello(&mut conn, pb::Kind::LogReopen)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the monitor did not answer the log reopen",
        )),
    }
}

/// A resize connection kept open for a stream of sizes (CRI's resize stream).
pub struct Resizer {
    conn: UnixStream,
    protocol: Protocol,
}

impl Resizer {
    pub async fn connect(socket: &Path) -> io::Result<Resizer> {
        let protocol = Protocol::of_socket(socket);
        let mut conn = dial(socket).await?;
        match protocol {
            Protocol::V0 => conn.write_all(&[v0::HELLO_RESIZE]).await?,
            Protocol::V1 => {
                match tokio::time::timeout(ACK_TIMEOUT, hello(&mut conn, pb::Kind::Resize)).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the monitor did not acknowledge the resize connection",
                        ))
                    }
                }
            }
        }
        Ok(Resizer { conn, protocol })
    }

    pub async fn resize(&mut self, width: u16, height: u16) -> io::Result<()> {
        match self.protocol {
            Protocol::V0 => self.conn.write_all(&v0::resize(width, height)).await,
            Protocol::V1 => {
                let r = pb::Resize {
                    width: width.into(),
                    height: height.into(),
                };
                self.conn
                    .write_all(&r.encode_length_delimited_to_vec())
                    .await
            }
        }
    }
}

async fn dial(socket: &Path) -> io::Result<UnixStream> {
    // `_dir` keeps a /proc/self/fd path valid while connecting.
    let (_dir, short) = socket_path(socket)?;
    UnixStream::connect(&short).await
}

/// The monitor's answer on its stdout (`pb::Ready`); `Ok(None)` when it
/// ended without one.
pub async fn read_ready(mut stdout: impl AsyncRead + Unpin) -> io::Result<Option<super::Ready>> {
    match read_msg::<pb::Ready>(&mut stdout).await? {
        Some(r) => super::Ready::try_from(r).map(Some).map_err(proto::invalid),
        None => Ok(None),
    }
}

/// Reads one length-delimited message; `Ok(None)` on a clean end of the
/// stream before it. Reads no byte past the message.
async fn read_msg<M: Message + Default>(r: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<M>> {
    let mut len: u64 = 0;
    let mut i = 0;
    loop {
        let b = match r.read_u8().await {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && i == 0 => return Ok(None),
            Err(e) => return Err(e),
        };
        len |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
        i += 1;
        if i == 10 {
            return Err(proto::invalid("bad message length"));
        }
    }
    let mut buf = vec![0u8; proto::check_len(len)?];
    r.read_exact(&mut buf).await?;
    M::decode(buf.as_slice()).map(Some).map_err(proto::invalid)
}

impl Output {
    /// The next frame; `None` once the monitor ended the stream (the
    /// container's output is over, or the monitor dropped a slow client).
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        if self.protocol == Protocol::V0 {
            return v0::next(&mut self.rd).await;
        }
        let Some(out) = read_msg::<pb::Output>(&mut self.rd).await? else {
            return Ok(None);
        };
        let stream = match pb::Stream::try_from(out.stream) {
            Ok(pb::Stream::Stdout) => Stream::Stdout,
            Ok(pb::Stream::Stderr) => Stream::Stderr,
            _ => {
                return Err(proto::invalid(format!(
                    "bad attach frame stream {}",
                    out.stream
                )))
            }
        };
        Ok(Some(Frame {
            stream,
            data: out.data,
        }))
    }
}

impl AsyncWrite for Input {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.wr).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.wr).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.wr).poll_shutdown(cx)
    }
}

impl Input {
    /// Copies `from` into the container's stdin until `from` ends, then
    /// half-closes (the container's stdin closes with `stdin_once`).
    pub async fn feed(mut self, from: &mut (impl AsyncRead + Unpin)) -> io::Result<u64> {
        let n = tokio::io::copy(from, &mut self).await?;
        self.shutdown().await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::attach::Attach;
    use std::fs::File;
    use std::io::Read;

    /// Against the monitor's real socket server on a temp socket: the ack
    /// comes before output, frames keep their streams, stdin flows in and
    /// the half-close closes it, and the end of output ends the stream.
    #[tokio::test]
    async fn talks_to_the_monitor_socket_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(proto::SOCKET_V1);
        let (r, w) = nix::unistd::pipe().unwrap();
        let a = Attach::serve(&path, Some(File::from(w)), true, None).unwrap();
        let (mut out, input) = connect(&path, true).await.unwrap();
        let (mut watch, none) = connect(&path, false).await.unwrap();
        assert!(none.is_none());
        // Registered: a broadcast right after connect() is not lost.
        a.broadcast(Stream::Stdout, b"one");
        a.broadcast(Stream::Stderr, b"two");
        for o in [&mut out, &mut watch] {
            let f = o.next().await.unwrap().unwrap();
            assert_eq!((f.stream, f.data.as_slice()), (Stream::Stdout, &b"one"[..]));
            let f = o.next().await.unwrap().unwrap();
            assert_eq!((f.stream, f.data.as_slice()), (Stream::Stderr, &b"two"[..]));
        }
        input.unwrap().feed(&mut &b"typed"[..]).await.unwrap();
        let got = tokio::task::spawn_blocking(move || {
            let mut s = String::new();
            File::from(r).read_to_string(&mut s).unwrap();
            s
        })
        .await
        .unwrap();
        assert_eq!(got, "typed");
        // Control connections: a resize is taken (no terminal: ignored) and
        // a reopen without a log is refused with the monitor's words.
        resize(&path, 80, 24).await.unwrap();
        let e = reopen_log(&path).await.unwrap_err();
        assert!(e.to_string().contains("keeps no log"), "{e}");
        a.on_log_reopen(Box::new(|| Ok(())));
        reopen_log(&path).await.unwrap();
        a.close();
        assert_eq!(out.next().await.unwrap(), None);
        assert_eq!(watch.next().await.unwrap(), None);
    }

    /// A fake v1 monitor: a frame of no known stream is an error, not
    /// output; resizes arrive as length-delimited messages after the hello.
    #[tokio::test]
    async fn rejects_bad_frames_and_sends_resizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(proto::SOCKET_V1);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let ok = pb::Ack {
                version: proto::VERSION,
                error: String::new(),
            };
            let (mut c, _) = listener.accept().await.unwrap();
            let h: pb::Hello = read_msg(&mut c).await.unwrap().unwrap();
            assert_eq!(
                (h.version, h.kind),
                (proto::VERSION, pb::Kind::Output as i32)
            );
            c.write_all(&ok.encode_length_delimited_to_vec())
                .await
                .unwrap();
            let bad = pb::Output {
                stream: 9,
                data: b"x".to_vec(),
            };
            c.write_all(&bad.encode_length_delimited_to_vec())
                .await
                .unwrap();
            let (mut c, _) = listener.accept().await.unwrap();
            let h: pb::Hello = read_msg(&mut c).await.unwrap().unwrap();
            assert_eq!(h.kind, pb::Kind::Resize as i32);
            c.write_all(&ok.encode_length_delimited_to_vec())
                .await
                .unwrap();
            let mut sizes = Vec::new();
            while let Some(r) = read_msg::<pb::Resize>(&mut c).await.unwrap() {
                sizes.push((r.width, r.height));
            }
            sizes
        });
        let (mut out, _) = connect(&path, false).await.unwrap();
        let e = out.next().await.unwrap_err();
        assert!(e.to_string().contains("stream 9"), "{e}");
        let mut r = Resizer::connect(&path).await.unwrap();
        r.resize(80, 24).await.unwrap();
        r.resize(132, 43).await.unwrap();
        drop(r);
        assert_eq!(server.await.unwrap(), vec![(80, 24), (132, 43)]);
    }

    /// A monitor that refuses the hello (a later protocol's monitor, say)
    /// is an error with its words; one that hangs up means the exit.
    #[tokio::test]
    async fn refusals_and_closed_monitors_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(proto::SOCKET_V1);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.unwrap();
            let _: pb::Hello = read_msg(&mut c).await.unwrap().unwrap();
            let no = pb::Ack {
                version: 2,
                error: "unsupported protocol version 1".into(),
            };
            c.write_all(&no.encode_length_delimited_to_vec())
                .await
                .unwrap();
            let (mut c, _) = listener.accept().await.unwrap();
            let _: pb::Hello = read_msg(&mut c).await.unwrap().unwrap();
            drop(c);
        });
        let e = connect(&path, true).await.err().unwrap();
        assert!(
            e.to_string().contains("unsupported protocol version"),
            "{e}"
        );
        let e = connect(&path, true).await.err().unwrap();
        assert!(e.to_string().contains("exited"), "{e}");
        server.await.unwrap();
    }
}
