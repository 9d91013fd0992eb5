//! Exec with a terminal: the runtime creates the pty and sends its master end
//! over a console socket (see `monitor::tty`, shared with Docker's exec);
//! berth copies between the master and the client's stdin/stdout streams and
//! applies resize messages. [`Resizes`] also feeds attach's resize stream.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::exec::wait_or_kill;
use super::transport::{Input, Output, Session};
use crate::engine::exec::PreparedExec;
use crate::monitor::tty::{ConsoleSocket, PtyMaster};

/// How long the runtime gets to hand over the terminal.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(30);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A resize message (`remotecommand.TerminalSize`).
#[derive(Debug, Deserialize, PartialEq, Eq)]
struct TerminalSize {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
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
    // directory (root only), or in the temp dir when that path is too long.
    let (listener, path) = match ConsoleSocket::bind(&prepared.pid_path.with_extension("sock"))
        .and_then(ConsoleSocket::into_tokio)
    {
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
        let _ = master.resize(width, height);
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
        if let Err(e) = master.resize(width, height) {
            tracing::debug!(error = %e, "failed to resize the terminal");
        }
    }
}

/// Receives the terminal's master from the runtime's connection.
async fn receive_fd(conn: tokio::net::UnixStream) -> io::Result<std::os::fd::OwnedFd> {
    let conn = conn.into_std()?;
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(CONSOLE_TIMEOUT))?;
    tokio::task::spawn_blocking(move || crate::monitor::tty::receive_fd(&conn))
        .await
        .map_err(io::Error::other)?
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
