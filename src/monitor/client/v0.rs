//! The v0 attach protocol, as monitors started by a berthd from before
//! `proto/` still serve it on their `attach.sock`: the client sends one
//! byte, `I` (output and stdin) or `O` (output only), and the monitor
//! answers one byte `0` once the client is registered, then sends frames
//! `tag (1 stdout, 2 stderr) | length (u32 BE) | bytes`; stdin is the
//! client's raw bytes, half-close its end. A resize connection sends `r`,
//! then `width (u16 BE) | height (u16 BE)` per size and gets nothing back.
//! v0 monitors reopen their log on SIGUSR1.
//!
//! Only the daemon's side is kept: no new monitor speaks it.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::Frame;
use crate::monitor::log::Stream;
use crate::monitor::proto;

const HELLO_STDIN_ACK: u8 = b'I';
const HELLO_OUTPUT_ACK: u8 = b'O';
pub(super) const HELLO_RESIZE: u8 = b'r';
const ACK: u8 = 0;
const TAG_STDOUT: u8 = 1;
const TAG_STDERR: u8 = 2;

/// Registers for output (and stdin) and waits for the ack.
pub(super) async fn hello(conn: &mut UnixStream, stdin: bool) -> io::Result<()> {
    let hello = match stdin {
        true => HELLO_STDIN_ACK,
        false => HELLO_OUTPUT_ACK,
    };
    conn.write_all(&[hello]).await?;
    match conn.read_u8().await? {
        ACK => Ok(()),
        _ => Err(io::Error::other("the monitor sent a bad acknowledgement")),
    }
}

/// One resize message.
pub(super) fn resize(width: u16, height: u16) -> [u8; 4] {
    let mut msg = [0u8; 4];
    msg[..2].copy_from_slice(&width.to_be_bytes());
    msg[2..].copy_from_slice(&height.to_be_bytes());
    msg
}

/// The next frame; `None` at the end of the stream.
pub(super) async fn next(rd: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 5];
    match rd.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let stream = match head[0] {
        TAG_STDOUT => Stream::Stdout,
        TAG_STDERR => Stream::Stderr,
        t => return Err(io::Error::other(format!("bad attach frame tag {t}"))),
    };
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    let mut data = vec![0u8; proto::check_len(len.into())?];
    rd.read_exact(&mut data).await?;
    Ok(Some(Frame { stream, data }))
}

#[cfg(test)]
mod tests {
    use super::super::{connect, resize as resize_at, Resizer};
    use super::*;
    use tokio::net::UnixListener;
    use tokio::sync::mpsc;

    /// What a fake v0 monitor saw.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Stdin(Vec<u8>),
        Sizes(Vec<(u16, u16)>),
    }

    /// A fake v0 monitor, byte for byte as the v0 server answered: an
    /// acknowledged output client gets two frames and the end; a stdin
    /// client's bytes are collected; a resize connection's sizes too.
    fn fake_v0_monitor(listener: UnixListener) -> mpsc::UnboundedReceiver<Seen> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let hello = c.read_u8().await.unwrap();
                    if hello == HELLO_RESIZE {
                        let mut sizes = Vec::new();
                        let mut msg = [0u8; 4];
                        while c.read_exact(&mut msg).await.is_ok() {
                            let w = u16::from_be_bytes([msg[0], msg[1]]);
                            sizes.push((w, u16::from_be_bytes([msg[2], msg[3]])));
                        }
                        let _ = tx.send(Seen::Sizes(sizes));
                        return;
                    }
                    assert!(hello == HELLO_STDIN_ACK || hello == HELLO_OUTPUT_ACK);
                    c.write_all(&[ACK]).await.unwrap();
                    c.write_all(b"\x01\x00\x00\x00\x03out\x02\x00\x00\x00\x03err")
                        .await
                        .unwrap();
                    if hello == HELLO_STDIN_ACK {
                        let mut got = Vec::new();
                        c.read_to_end(&mut got).await.unwrap();
                        let _ = tx.send(Seen::Stdin(got));
                    }
                });
            }
        });
        rx
    }

    /// A container whose monitor an older berthd started stays attachable
    /// and resizable through the same client calls, chosen by the name of
    /// its socket.
    #[tokio::test]
    async fn the_client_speaks_v0_to_an_attach_sock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(proto::SOCKET_V0);
        let mut seen = fake_v0_monitor(UnixListener::bind(&path).unwrap());
        let (mut out, input) = connect(&path, true).await.unwrap();
        let f = out.next().await.unwrap().unwrap();
        assert_eq!((f.stream, f.data.as_slice()), (Stream::Stdout, &b"out"[..]));
        let f = out.next().await.unwrap().unwrap();
        assert_eq!((f.stream, f.data.as_slice()), (Stream::Stderr, &b"err"[..]));
        input.unwrap().feed(&mut &b"typed"[..]).await.unwrap();
        assert_eq!(out.next().await.unwrap(), None);
        assert_eq!(seen.recv().await, Some(Seen::Stdin(b"typed".to_vec())));

        let (mut watch, none) = connect(&path, false).await.unwrap();
        assert!(none.is_none());
        assert_eq!(watch.next().await.unwrap().unwrap().data, b"out");

        resize_at(&path, 80, 24).await.unwrap();
        assert_eq!(seen.recv().await, Some(Seen::Sizes(vec![(80, 24)])));
        let mut r = Resizer::connect(&path).await.unwrap();
        r.resize(132, 43).await.unwrap();
        r.resize(100, 30).await.unwrap();
        drop(r);
        assert_eq!(
            seen.recv().await,
            Some(Seen::Sizes(vec![(132, 43), (100, 30)]))
        );
        let e = super::super::reopen_log(&path).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    }

    /// Bad v0 frames and a monitor gone before its ack are errors.
    #[tokio::test]
    async fn bad_v0_frames_and_a_closed_v0_monitor_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(proto::SOCKET_V0);
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.unwrap();
            assert_eq!(c.read_u8().await.unwrap(), HELLO_OUTPUT_ACK);
            c.write_all(&[ACK, 9, 0, 0, 0, 1, b'x']).await.unwrap();
            let (mut c, _) = listener.accept().await.unwrap();
            let _ = c.read_u8().await.unwrap();
            drop(c);
        });
        let (mut out, _) = connect(&path, false).await.unwrap();
        let e = out.next().await.unwrap_err();
        assert!(e.to_string().contains("tag 9"), "{e}");
        let e = connect(&path, true).await.err().unwrap();
        assert!(e.to_string().contains("exited"), "{e}");
        server.await.unwrap();
    }
}
