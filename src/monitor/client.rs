//! The daemon's side of a monitor's attach socket (see [`super::attach`]):
//! one client for every front end that attaches to a container — Docker's
//! hijacked attach and CRI's streaming attach — so the protocol is spoken in
//! one place.
//!
//! ```text
//! connect(socket, stdin) ──hello + ack──> (Output, Option<Input>)
//!   Output::next()  -> Some(Frame { stream, data }) … None when the container's output ended
//!   Input (AsyncWrite) -> the container's stdin; shutdown() = half-close (stdin_once)
//! resize(socket, width, height) — its own short connection
//! ```

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::attach::{
    socket_path, ACK, HELLO_OUTPUT_ACK, HELLO_RESIZE, HELLO_STDIN_ACK, TAG_STDERR, TAG_STDOUT,
};
use super::log::Stream;

/// How long the monitor gets to acknowledge a new client.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest frame accepted from a monitor (it sends reads of 32 KiB).
const MAX_FRAME: usize = 1024 * 1024;

/// A piece of the container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub stream: Stream,
    pub data: Vec<u8>,
}

/// The container's output, frame by frame.
pub struct Output {
    rd: OwnedReadHalf,
}

/// The container's stdin. Shutting it down half-closes the connection,
/// which closes the container's stdin when it was made with `stdin_once`.
pub struct Input {
    wr: OwnedWriteHalf,
}

/// Connects to the attach socket at `socket` (long paths are reached
/// through `/proc/self/fd`) and registers for output, and for stdin when
/// `stdin` is set. Returns once the monitor has registered the client:
/// everything the container prints from then on is seen.
pub async fn connect(socket: &Path, stdin: bool) -> io::Result<(Output, Option<Input>)> {
    let mut conn = dial(socket).await?;
    let hello = if stdin {
        HELLO_STDIN_ACK
    } else {
        HELLO_OUTPUT_ACK
    };
    conn.write_all(&[hello]).await?;
    let mut ack = [0u8; 1];
    match tokio::time::timeout(ACK_TIMEOUT, conn.read_exact(&mut ack)).await {
        Ok(Ok(_)) if ack[0] == ACK => {}
        Ok(Ok(_)) => return Err(io::Error::other("the monitor sent a bad acknowledgement")),
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
    Ok((Output { rd }, input))
}

/// Sets the size of the container's terminal (ignored by the monitor when
/// the container has none).
pub async fn resize(socket: &Path, width: u16, height: u16) -> io::Result<()> {
    let mut r = Resizer::connect(socket).await?;
    r.resize(width, height).await?;
    r.conn.shutdown().await
}

/// A resize connection kept open for a stream of sizes (CRI's resize stream).
pub struct Resizer {
    conn: UnixStream,
}

impl Resizer {
    pub async fn connect(socket: &Path) -> io::Result<Resizer> {
        let mut conn = dial(socket).await?;
        conn.write_all(&[HELLO_RESIZE]).await?;
        Ok(Resizer { conn })
    }

    pub async fn resize(&mut self, width: u16, height: u16) -> io::Result<()> {
        let mut msg = [0u8; 4];
        msg[..2].copy_from_slice(&width.to_be_bytes());
        msg[2..].copy_from_slice(&height.to_be_bytes());
        self.conn.write_all(&msg).await
    }
}

async fn dial(socket: &Path) -> io::Result<UnixStream> {
    // `_dir` keeps a /proc/self/fd path valid while connecting.
    let (_dir, short) = socket_path(socket)?;
    UnixStream::connect(&short).await
}

impl Output {
    /// The next frame; `None` once the monitor ended the stream (the
    /// container's output is over, or the monitor dropped a slow client).
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 5];
        match self.rd.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let stream = match head[0] {
            TAG_STDOUT => Stream::Stdout,
            TAG_STDERR => Stream::Stderr,
            t => return Err(io::Error::other(format!("bad attach frame tag {t}"))),
        };
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::other(format!(
                "attach frame too long ({len} bytes)"
            )));
        }
        let mut data = vec![0u8; len];
        self.rd.read_exact(&mut data).await?;
        Ok(Some(Frame { stream, data }))
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

    /// Against the monitor's real attach server on a temp socket: the ack
    /// comes before output, frames keep their streams, stdin flows in and
    /// the half-close closes it, and the end of output ends the stream.
    #[tokio::test]
    async fn talks_to_the_monitor_attach_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attach.sock");
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
        a.close();
        assert_eq!(out.next().await.unwrap(), None);
        assert_eq!(watch.next().await.unwrap(), None);
    }

    /// A fake monitor: frames with a bad tag are an error, not output.
    #[tokio::test]
    async fn rejects_bad_frames_and_reads_resizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.unwrap();
            let mut hello = [0u8; 1];
            c.read_exact(&mut hello).await.unwrap();
            assert_eq!(hello[0], HELLO_OUTPUT_ACK);
            c.write_all(&[ACK, 9, 0, 0, 0, 1, b'x']).await.unwrap();
            let (mut c, _) = listener.accept().await.unwrap();
            let mut msg = Vec::new();
            c.read_to_end(&mut msg).await.unwrap();
            msg
        });
        let (mut out, _) = connect(&path, false).await.unwrap();
        assert!(out.next().await.is_err());
        resize(&path, 80, 24).await.unwrap();
        assert_eq!(server.await.unwrap(), vec![HELLO_RESIZE, 0, 80, 0, 24]);
    }

    #[tokio::test]
    async fn a_closed_monitor_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.unwrap();
            let mut hello = [0u8; 1];
            c.read_exact(&mut hello).await.unwrap();
            drop(c);
        });
        let e = connect(&path, true).await.err().unwrap();
        assert!(e.to_string().contains("exited"), "{e}");
        server.await.unwrap();
    }
}
