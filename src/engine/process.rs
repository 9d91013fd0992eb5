//! The one driver of a process exec'd into a container (`crun exec`), for
//! Docker's exec instances and CRI's streaming exec alike.
//!
//! ```text
//! run(prepared, tty, io, cancel)
//!   pipes: stdin ─> process ─> stdout/stderr ─> io.output (Stream, bytes)
//!   tty:   the runtime hands the pty's master over a console socket;
//!          stdin ─> master ─> io.output (Stdout), io.resizes ─> master
//!   ──exit──> Exited(code) after the output drained (bounded)
//!   ──cancel─> the process killed, Cancelled
//! ```
//!
//! Output is read to its end whether or not anyone still listens, so a
//! process never blocks on a full pipe or terminal when its client left.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio::sync::{mpsc, watch};

use super::exec::{read_pid, PreparedExec};
use crate::monitor::log::Stream;
use crate::monitor::tty::{ConsoleSocket, PtyMaster};

/// How long output may keep flowing after the process ended (a background
/// child can hold the pipes or the terminal open).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the runtime gets to hand over the terminal.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a cancelled process's runtime gets to write its pid, and to
/// exit once the process is killed.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A reader feeding the process's stdin.
pub type Input = Box<dyn AsyncRead + Send + Unpin>;

/// The process's stdio as its caller sees it.
#[derive(Default)]
pub struct ProcessIo {
    /// Copied to the process's stdin (for a terminal: into the pty); its
    /// end closes the process's stdin (a terminal stays open).
    pub stdin: Option<Input>,
    /// Where output goes, chunk by chunk; `None` drains it into nothing.
    pub output: Option<mpsc::Sender<(Stream, Vec<u8>)>>,
    /// Terminal sizes (width, height) after the first.
    pub resizes: Option<mpsc::Receiver<(u16, u16)>>,
}

/// What the caller may watch while the process runs.
#[derive(Default)]
pub struct Watch {
    /// Set to the process's pid once the runtime has written it.
    pub pid: Option<watch::Sender<i32>>,
    /// The terminal's master while the process runs (resizes from elsewhere).
    pub master: Option<watch::Sender<Option<Arc<PtyMaster>>>>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The process ended with this code (128 + signal when killed by one).
    Exited(i32),
    /// The runtime exited before it handed over the terminal: its exit code
    /// and what it said (the command could not be run).
    RuntimeFailed { code: i32, errors: String },
    /// berth could not run the runtime or take the terminal.
    Failed(String),
    /// `cancel` completed first: the process was killed.
    Cancelled,
}

/// Runs the prepared process; a terminal starts at `size` (width, height).
/// When `cancel` completes first the process is killed (CRI: the client
/// went away); Docker passes a future that never completes (its exec goes
/// on without a client).
pub async fn run(
    prepared: &PreparedExec,
    tty: bool,
    size: Option<(u16, u16)>,
    io: ProcessIo,
    watch: Watch,
    cancel: impl Future<Output = ()>,
) -> Outcome {
    if tty {
        run_tty(prepared, size, io, watch, cancel).await
    } else {
        run_pipes(prepared, io, watch, cancel).await
    }
}

async fn run_pipes(
    prepared: &PreparedExec,
    io: ProcessIo,
    watch: Watch,
    cancel: impl Future<Output = ()>,
) -> Outcome {
    use std::process::Stdio;
    let mut cmd = prepared.command(None);
    if io.stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    // The runtime's own errors come on stderr too: always read.
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.kill_on_drop(false);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("failed to start the runtime: {e}")),
    };
    watch_pid(prepared, watch.pid);
    let stdin_task = match (io.stdin, child.stdin.take()) {
        (Some(mut from), Some(mut to)) => Some(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
            let _ = to.shutdown().await;
            // Dropping `to` closes the process's stdin.
        })),
        _ => None,
    };
    let mut output = tokio::task::JoinSet::new();
    if let Some(p) = child.stdout.take() {
        output.spawn(pump(Box::new(p), Stream::Stdout, io.output.clone()));
    }
    if let Some(p) = child.stderr.take() {
        output.spawn(pump(Box::new(p), Stream::Stderr, io.output.clone()));
    }
    drop(io.output);
    let code = wait_or_kill(prepared, &mut child, cancel).await;
    if let Some(t) = stdin_task {
        t.abort();
    }
    let Some(code) = code else {
        output.abort_all();
        return Outcome::Cancelled;
    };
    let drained = async { while output.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drained).await;
    output.abort_all();
    Outcome::Exited(code)
}

async fn run_tty(
    prepared: &PreparedExec,
    size: Option<(u16, u16)>,
    io: ProcessIo,
    watch: Watch,
    cancel: impl Future<Output = ()>,
) -> Outcome {
    // The socket sits beside the exec's other files in the container's
    // directory (root only), or is reached through /proc/self/fd when that
    // path is too long.
    let (listener, path) = match ConsoleSocket::bind(&prepared.pid_path.with_extension("sock"))
        .and_then(ConsoleSocket::into_tokio)
    {
        Ok(l) => l,
        Err(e) => return Outcome::Failed(format!("failed to create the console socket: {e}")),
    };
    let mut cmd = prepared.command(Some(&path.0));
    cmd.stderr(std::process::Stdio::piped());
    cmd.kill_on_drop(false);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("failed to start the runtime: {e}")),
    };
    watch_pid(prepared, watch.pid);
    let runtime_errors = child.stderr.take().map(|mut pipe| {
        tokio::spawn(async move {
            let mut s = Vec::new();
            let _ = pipe.read_to_end(&mut s).await;
            String::from_utf8_lossy(&s).into_owned()
        })
    });
    // The code of a runtime that ended before its terminal was taken.
    let mut ended = None;
    let accepted = tokio::select! {
        biased;
        c = tokio::time::timeout(CONSOLE_TIMEOUT, listener.accept()) => {
            c.map(|r| r.map(|(conn, _)| conn))
        }
        st = child.wait() => match accept_pending(&listener) {
            // A short command can run and end, and its runtime with it,
            // before the terminal it handed over is taken: its output is
            // still in the terminal.
            Some(conn) => {
                ended = Some(exit_code(st));
                Ok(Ok(conn))
            }
            None => {
                let errors = match runtime_errors {
                    Some(t) => t.await.unwrap_or_default(),
                    None => String::new(),
                };
                return Outcome::RuntimeFailed { code: exit_code(st), errors };
            }
        },
    };
    let master = match accepted {
        Ok(Ok(conn)) => receive_fd(conn).await,
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::other("the runtime sent no terminal")),
    };
    drop(listener);
    drop(path);
    let master = match master.and_then(PtyMaster::new) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            let _ = child.kill().await;
            return Outcome::Failed(format!("failed to receive the terminal: {e}"));
        }
    };
    // The spec's consoleSize already asked for this size; setting it on the
    // master too covers runtimes that ignore it for exec.
    if let Some((width, height)) = size {
        let _ = master.resize(width, height);
    }
    if let Some(m) = &watch.master {
        m.send_replace(Some(master.clone()));
    }
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(mut from) = io.stdin {
        let m = master.clone();
        tasks.spawn(async move {
            // The terminal stays open at the end of stdin: other processes
            // may hold it.
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = from.read(&mut buf).await {
                if n == 0 || m.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
    if let Some(mut sizes) = io.resizes {
        let m = master.clone();
        tasks.spawn(async move {
            while let Some((width, height)) = sizes.recv().await {
                if let Err(e) = m.resize(width, height) {
                    tracing::debug!(error = %e, "failed to resize the terminal");
                }
            }
        });
    }
    let mut out = {
        let (m, tx) = (master.clone(), io.output);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut tx = tx;
            while let Ok(n) = m.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Some(t) = &tx {
                    if t.send((Stream::Stdout, buf[..n].to_vec())).await.is_err() {
                        tx = None;
                    }
                }
            }
        })
    };
    let code = match ended {
        Some(code) => Some(code),
        None => wait_or_kill(prepared, &mut child, cancel).await,
    };
    tasks.abort_all();
    if code.is_some() {
        // A background child may keep the terminal open: stop reading then.
        if tokio::time::timeout(DRAIN_TIMEOUT, &mut out).await.is_err() {
            out.abort();
        }
    } else {
        out.abort();
    }
    if let Some(m) = &watch.master {
        m.send_replace(None);
    }
    code.map_or(Outcome::Cancelled, Outcome::Exited)
}

/// Records the process's pid once the runtime wrote it (in the background).
fn watch_pid(prepared: &PreparedExec, tx: Option<watch::Sender<i32>>) {
    let Some(tx) = tx else { return };
    let pid_path = prepared.pid_path.clone();
    tokio::spawn(async move {
        for _ in 0..250 {
            if let Some(pid) = read_pid(&pid_path) {
                tx.send_replace(pid);
                return;
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// Waits for the runtime to exit with the process's code; if `cancel`
/// completes first, kills the process and the runtime and returns `None`.
async fn wait_or_kill(
    prepared: &PreparedExec,
    child: &mut Child,
    cancel: impl Future<Output = ()>,
) -> Option<i32> {
    tokio::select! {
        st = child.wait() => Some(exit_code(st)),
        _ = cancel => {
            // The runtime waits for the process, so the process goes first;
            // a runtime still starting it writes its pid file shortly.
            let deadline = tokio::time::Instant::now() + KILL_WAIT;
            loop {
                if let Some(pid) = prepared.pid() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    break;
                }
                if tokio::time::Instant::now() >= deadline
                    || child.try_wait().ok().flatten().is_some()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if tokio::time::timeout(KILL_WAIT, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
            None
        }
    }
}

/// Reads one output pipe into `tx`; once nobody listens the pipe is still
/// drained, so the process never blocks on it.
async fn pump(
    mut from: Box<dyn AsyncRead + Send + Unpin>,
    stream: Stream,
    mut tx: Option<mpsc::Sender<(Stream, Vec<u8>)>>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Some(t) = &tx {
                    if t.send((stream, buf[..n].to_vec())).await.is_err() {
                        tx = None;
                    }
                }
            }
        }
    }
}

/// The process's exit code as the runtime reports it (128 + signal when
/// the runtime itself was killed by one).
fn exit_code(st: std::io::Result<std::process::ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match st {
        Ok(s) => s
            .code()
            .or_else(|| s.signal().map(|sig| 128 + sig))
            .unwrap_or(-1),
        Err(_) => -1,
    }
}

/// A connection already waiting on the console socket, without waiting for
/// one (a duplicate of the listener's descriptor, non-blocking like it).
fn accept_pending(listener: &tokio::net::UnixListener) -> Option<tokio::net::UnixStream> {
    use std::os::fd::AsFd;
    let fd = listener.as_fd().try_clone_to_owned().ok()?;
    let (conn, _) = std::os::unix::net::UnixListener::from(fd).accept().ok()?;
    conn.set_nonblocking(true).ok()?;
    tokio::net::UnixStream::from_std(conn).ok()
}

/// Receives the terminal's master from the runtime's connection.
async fn receive_fd(conn: tokio::net::UnixStream) -> std::io::Result<std::os::fd::OwnedFd> {
    let conn = conn.into_std()?;
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(CONSOLE_TIMEOUT))?;
    tokio::task::spawn_blocking(move || crate::monitor::tty::receive_fd(&conn))
        .await
        .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pipe_is_drained_after_its_listener_left() {
        let (tx, mut rx) = mpsc::channel(1);
        let data = vec![7u8; 200 * 1024];
        let reader: Box<dyn AsyncRead + Send + Unpin> = Box::new(std::io::Cursor::new(data));
        let first = tokio::spawn(async move {
            let got = rx.recv().await;
            drop(rx);
            got
        });
        // Returns although nobody reads past the first chunk.
        tokio::time::timeout(
            Duration::from_secs(5),
            pump(reader, Stream::Stderr, Some(tx)),
        )
        .await
        .expect("pump ends");
        let (stream, chunk) = first.await.unwrap().expect("a chunk");
        assert_eq!(stream, Stream::Stderr);
        assert_eq!(chunk.len(), 32 * 1024);
    }

    #[tokio::test]
    async fn a_connection_already_made_is_taken_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        assert!(
            accept_pending(&listener).is_none(),
            "nothing is waiting yet"
        );
        let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        assert!(
            accept_pending(&listener).is_some(),
            "the waiting connection"
        );
        assert!(accept_pending(&listener).is_none(), "taken once");
    }

    #[test]
    fn a_signal_is_128_plus_its_number() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(Ok(std::process::ExitStatus::from_raw(9))), 137);
        assert_eq!(exit_code(Ok(std::process::ExitStatus::from_raw(3 << 8))), 3);
        assert_eq!(exit_code(Err(std::io::Error::other("x"))), -1);
    }
}
