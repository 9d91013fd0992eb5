//! Exec with a terminal: the runtime creates the pty and sends its master end
//! over a console socket (SCM_RIGHTS); berth copies between the master and
//! the client's stdin/stdout streams and applies resize messages.
//!
//! Unsafe code here is limited to two calls with no safe equivalent in nix:
//! adopting the received descriptor and the TIOCSWINSZ ioctl.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde::Deserialize;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use super::exec::wait_or_kill;
use super::transport::{Input, Output, Session};
use crate::engine::exec::PreparedExec;

/// How long the runtime gets to hand over the terminal.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(30);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

/// A resize message (`remotecommand.TerminalSize`).
#[derive(Debug, Deserialize, PartialEq, Eq)]
struct TerminalSize {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

/// Removes the console socket file when the exec is done with it.
struct SocketPath(PathBuf);

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the process on a terminal; see `exec::run_pipes` for the result.
pub(super) async fn run(
    prepared: &PreparedExec,
    session: &Session,
    stdin: Option<Input>,
    stdout: Option<Output>,
    resize: Option<Resizes>,
    initial: Option<(u16, u16)>,
) -> Option<Result<i32, String>> {
    // The socket sits beside the exec's other files in the container's
    // directory (root only), unless that path is too long for a socket
    // address (108 bytes); then it goes to the temp dir.
    let beside = prepared.pid_path.with_extension("sock");
    let path = if beside.as_os_str().len() < 108 {
        beside
    } else {
        let name = prepared
            .pid_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::env::temp_dir().join(format!("berth-{name}.sock"))
    };
    let path = SocketPath(path);
    let listener = match UnixListener::bind(&path.0) {
        Ok(l) => l,
        Err(e) => return Some(Err(format!("failed to create the console socket: {e}"))),
    };
    let mut cmd = prepared.command(Some(&path.0));
    cmd.stderr(std::process::Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Some(Err(format!("failed to start the runtime: {e}"))),
    };
    let mut err_pipe = child.stderr.take().expect("piped");
    let runtime_errors = tokio::spawn(async move {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s).await;
        s
    });
    let accepted = tokio::select! {
        c = tokio::time::timeout(CONSOLE_TIMEOUT, listener.accept()) => c,
        st = child.wait() => {
            let errors = runtime_errors.await.unwrap_or_default();
            let code = st.ok().and_then(|s| s.code()).unwrap_or(-1);
            return Some(Err(format!("the runtime exited ({code}) before handing over the terminal: {}", errors.trim())));
        }
    };
    let master = match accepted {
        Ok(Ok((conn, _))) => receive_fd(conn).await,
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::other("the runtime sent no terminal")),
    };
    drop(listener);
    drop(path);
    let master = match master.and_then(PtyMaster::new) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            let _ = child.kill().await;
            return Some(Err(format!("failed to receive the terminal: {e}")));
        }
    };
    // The spec's consoleSize already asked for this size; setting it on the
    // master too covers runtimes that ignore it for exec.
    if let Some((width, height)) = initial {
        let _ = master.resize(&TerminalSize { width, height });
    }
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(s) = stdin {
        let m = master.clone();
        tasks.spawn(async move {
            // Keep our half of stdin open (see `exec::run_pipes`).
            let mut s = s;
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 || m.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
    if let Some(r) = resize {
        let m = master.clone();
        tasks.spawn(async move { apply_resizes(r, &m).await });
    }
    let mut output = tokio::task::JoinSet::new();
    if let Some(mut out) = stdout {
        let m = master.clone();
        output.spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = m.read(&mut buf).await {
                if n == 0 || out.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = out.shutdown().await;
        });
    }
    let code = wait_or_kill(prepared, session, &mut child).await;
    tasks.abort_all();
    if code.is_some() {
        let drained = async { while output.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drained).await;
    }
    output.abort_all();
    code.map(Ok)
}

/// Reads the resize stream: JSON terminal sizes, one object after another,
/// not necessarily aligned with DATA frames.
pub(super) struct Resizes {
    stream: Input,
    pending: Vec<u8>,
}

impl Resizes {
    pub(super) fn new(stream: Input) -> Self {
        Resizes {
            stream,
            pending: Vec::new(),
        }
    }

    /// The next size; None at the end of the stream or on bad JSON.
    pub(super) async fn next(&mut self) -> Option<(u16, u16)> {
        let mut buf = [0u8; 1024];
        loop {
            let mut it =
                serde_json::Deserializer::from_slice(&self.pending).into_iter::<TerminalSize>();
            match it.next() {
                Some(Ok(size)) => {
                    let used = it.byte_offset();
                    self.pending.drain(..used);
                    return Some((size.width, size.height));
                }
                Some(Err(e)) if !e.is_eof() => return None,
                _ => {}
            }
            match self.stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            }
        }
    }
}

/// Applies every size the client sends.
async fn apply_resizes(mut resizes: Resizes, master: &PtyMaster) {
    while let Some((width, height)) = resizes.next().await {
        if let Err(e) = master.resize(&TerminalSize { width, height }) {
            tracing::debug!(error = %e, "failed to resize the terminal");
        }
    }
}

/// Receives one descriptor sent with SCM_RIGHTS.
async fn receive_fd(conn: tokio::net::UnixStream) -> io::Result<OwnedFd> {
    let conn = conn.into_std()?;
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(CONSOLE_TIMEOUT))?;
    tokio::task::spawn_blocking(move || {
        let mut data = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut data)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                let mut owned: Vec<OwnedFd> = fds
                    .into_iter()
                    // SAFETY: the kernel just installed these descriptors in
                    // our table for this message; nothing else refers to them.
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                    .collect();
                if !owned.is_empty() {
                    return Ok(owned.swap_remove(0));
                }
            }
        }
        Err(io::Error::other(
            "no descriptor in the console socket message",
        ))
    })
    .await
    .map_err(io::Error::other)?
}

/// The master end of a pty, non-blocking, driven by tokio.
struct PtyMaster(AsyncFd<File>);

impl PtyMaster {
    fn new(fd: OwnedFd) -> io::Result<Self> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        let file = File::from(fd);
        // SAFETY: `register` needs the descriptor to stay open while the
        // AsyncFd exists; it owns the File, which closes it only on drop.
        let fd = unsafe { AsyncFd::register(file) }?;
        Ok(PtyMaster(fd))
    }

    /// Reads output; 0 once the terminal's last user closed it (EIO).
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut g = self.0.readable().await?;
            match g.try_io(|f| (&mut f.get_ref()).read(buf)) {
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(r) => return r,
                Err(_) => continue,
            }
        }
    }

    async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let mut g = self.0.writable().await?;
            match g.try_io(|f| (&mut f.get_ref()).write(buf)) {
                Ok(Ok(n)) => buf = &buf[n..],
                Ok(Err(e)) => return Err(e),
                Err(_) => continue,
            }
        }
        Ok(())
    }

    fn resize(&self, size: &TerminalSize) -> io::Result<()> {
        let ws = libc::winsize {
            ws_row: size.height,
            ws_col: size.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: the descriptor is a live pty master we own, and `ws` is a
        // valid winsize that outlives the call.
        unsafe { set_winsize(self.0.get_ref().as_raw_fd(), &ws) }?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_messages_parse_as_a_stream() {
        let raw = br#"{"Width":80,"Height":24}{"Width":100,"Height":"#;
        let mut it = serde_json::Deserializer::from_slice(raw).into_iter::<TerminalSize>();
        assert_eq!(
            it.next().unwrap().unwrap(),
            TerminalSize {
                width: 80,
                height: 24
            }
        );
        assert!(it.next().unwrap().unwrap_err().is_eof());
    }
}
