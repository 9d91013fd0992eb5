//! Running one exec's process: `crun exec` with pipes, or with a console
//! socket for a terminal; output goes to the client through one writer
//! task, and the exit is recorded before the client's stream ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::warn;

use super::super::hijack::{Conn, MuxWriter, STDERR, STDOUT};
use super::super::Shared;
use super::Exec;
use crate::engine::exec::PreparedExec;
use crate::engine::records::ContainerRecord;
use crate::monitor::tty::{ConsoleSocket, PtyMaster};

/// How long output may keep flowing after the process ended (a background
/// child can hold the pipes open).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the runtime gets to hand over an exec's terminal.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One exec's process, from start to its recorded exit.
pub(super) struct Run {
    pub d: Shared,
    pub exec: Arc<Exec>,
    pub rec: ContainerRecord,
    pub prepared: PreparedExec,
    pub size: Option<(u16, u16)>,
}

impl Run {
    /// Runs the process (stdio on `conn`, or nowhere when detached), records
    /// the exit, then ends the client's stream: the CLI inspects the exec
    /// for its exit code as soon as the stream ends.
    pub async fn go(self, conn: Option<Conn>) {
        let (input, output) = match conn {
            Some(Conn { input, output }) => (input, Some(output)),
            None => (None, None),
        };
        let cfg = &self.exec.config;
        let input = input.filter(|_| cfg.attach_stdin);
        let (tx, rx) = mpsc::channel::<(u8, Vec<u8>)>(64);
        let writer = output.map(|out| {
            tokio::spawn(write_output(
                MuxWriter::new(out, cfg.tty),
                rx,
                cfg.attach_stdout,
                cfg.attach_stderr,
            ))
        });
        // Held until the exit is recorded: the writer ends the client's
        // stream only once every sender is gone.
        let hold = tx.clone();
        let code = if cfg.tty {
            self.run_tty(input, tx).await
        } else {
            self.run_pipes(input, tx).await
        };
        let code = match code {
            Ok(c) => c,
            Err(msg) => {
                warn!(container = %self.rec.id, exec = %self.exec.id, "{msg}");
                126
            }
        };
        {
            let mut st = self.exec.lock();
            st.running = false;
            st.exit_code = Some(code);
        }
        self.exec.master.send_replace(None);
        drop(hold);
        let code_s = code.to_string();
        self.d.engine.emit_container(
            "exec_die",
            &self.rec,
            &[("execID", self.exec.id.as_str()), ("exitCode", &code_s)],
        );
        if let Some(w) = writer {
            let _ = w.await;
        }
    }

    async fn run_pipes(
        &self,
        input: Option<Box<dyn AsyncRead + Send + Unpin>>,
        tx: mpsc::Sender<(u8, Vec<u8>)>,
    ) -> Result<i32, String> {
        use std::process::Stdio;
        let mut cmd = self.prepared.command(None);
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        // The client may leave; the process stays, as with Docker.
        cmd.kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("failed to start the runtime: {e}"))?;
        self.watch_pid();
        let stdin_task = match (input, child.stdin.take()) {
            (Some(mut from), Some(mut to)) => Some(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from, &mut to).await;
                let _ = to.shutdown().await;
                // Dropping `to` closes the process's stdin.
            })),
            _ => None,
        };
        let mut output = tokio::task::JoinSet::new();
        for (pipe, id) in [
            (child.stdout.take().map(boxed), STDOUT),
            (child.stderr.take().map(boxed), STDERR),
        ] {
            if let Some(p) = pipe {
                output.spawn(pump(p, id, tx.clone()));
            }
        }
        drop(tx);
        let st = child.wait().await;
        if let Some(t) = stdin_task {
            t.abort();
        }
        let drained = async { while output.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drained).await;
        output.abort_all();
        Ok(exit_code(st))
    }

    async fn run_tty(
        &self,
        input: Option<Box<dyn AsyncRead + Send + Unpin>>,
        tx: mpsc::Sender<(u8, Vec<u8>)>,
    ) -> Result<i32, String> {
        let sock = ConsoleSocket::bind(&self.prepared.pid_path.with_extension("sock"))
            .and_then(ConsoleSocket::into_tokio)
            .map_err(|e| format!("failed to create the console socket: {e}"))?;
        let (listener, file) = sock;
        let mut cmd = self.prepared.command(Some(&file.0));
        cmd.stderr(std::process::Stdio::piped());
        cmd.kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("failed to start the runtime: {e}"))?;
        self.watch_pid();
        let mut err_pipe = child.stderr.take().expect("piped");
        let runtime_errors = tokio::spawn(async move {
            let mut s = Vec::new();
            let _ = err_pipe.read_to_end(&mut s).await;
            s
        });
        let accepted = tokio::select! {
            c = tokio::time::timeout(CONSOLE_TIMEOUT, listener.accept()) => c,
            st = child.wait() => {
                // The runtime failed before making the terminal: its errors
                // are what the client gets.
                let errors = runtime_errors.await.unwrap_or_default();
                let _ = tx.send((STDOUT, errors)).await;
                return Ok(exit_code(st));
            }
        };
        let master = match accepted {
            Ok(Ok((conn, _))) => receive(conn).await,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::other("the runtime sent no terminal")),
        };
        drop(listener);
        drop(file);
        let master = match master.and_then(PtyMaster::new) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                let _ = child.kill().await;
                return Err(format!("failed to receive the terminal: {e}"));
            }
        };
        if let Some((w, h)) = self.size {
            let _ = master.resize(w, h);
        }
        self.exec.master.send_replace(Some(master.clone()));
        let stdin_task = input.map(|mut from| {
            let m = master.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = from.read(&mut buf).await {
                    if n == 0 || m.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            })
        });
        let mut out = {
            let m = master.clone();
            tokio::spawn(async move {
                // Read to the end even with no client (detached, or gone),
                // so the process never blocks on a full terminal.
                let mut buf = vec![0u8; 16 * 1024];
                let mut open = true;
                while let Ok(n) = m.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if open && tx.send((STDOUT, buf[..n].to_vec())).await.is_err() {
                        open = false;
                    }
                }
            })
        };
        let st = child.wait().await;
        if let Some(t) = stdin_task {
            t.abort();
        }
        // A background child may keep the terminal open: stop reading then.
        if tokio::time::timeout(DRAIN_TIMEOUT, &mut out).await.is_err() {
            out.abort();
        }
        Ok(exit_code(st))
    }

    /// Records the process's pid once the runtime wrote it (in the background).
    fn watch_pid(&self) {
        let exec = self.exec.clone();
        let pid_path = self.prepared.pid_path.clone();
        tokio::spawn(async move {
            for _ in 0..250 {
                if let Some(pid) = std::fs::read_to_string(&pid_path)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                {
                    exec.lock().pid = pid;
                    return;
                }
                if !exec.lock().running {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
}

fn boxed(r: impl AsyncRead + Send + Unpin + 'static) -> Box<dyn AsyncRead + Send + Unpin> {
    Box::new(r)
}

/// The process's exit code as `crun exec` reports it.
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

/// Reads one output pipe into the writer's channel; when the writer is gone
/// (the client left) the pipe is still drained so the process never blocks.
async fn pump(
    mut from: Box<dyn AsyncRead + Send + Unpin>,
    id: u8,
    tx: mpsc::Sender<(u8, Vec<u8>)>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut open = true;
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if open && tx.send((id, buf[..n].to_vec())).await.is_err() {
                    open = false;
                }
            }
        }
    }
}

/// Writes output to the client until every sender is gone, then ends the
/// stream; a client that left is drained into nothing.
async fn write_output(
    mut out: MuxWriter<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    mut rx: mpsc::Receiver<(u8, Vec<u8>)>,
    stdout: bool,
    stderr: bool,
) {
    let mut ok = true;
    while let Some((id, data)) = rx.recv().await {
        let wanted = if id == STDERR { stderr } else { stdout };
        if ok && wanted && out.write(id, &data).await.is_err() {
            ok = false;
        }
    }
    if ok {
        let _ = out.shutdown().await;
    }
}

/// Receives the terminal's master from the runtime's connection.
async fn receive(conn: tokio::net::UnixStream) -> std::io::Result<std::os::fd::OwnedFd> {
    let conn = conn.into_std()?;
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(CONSOLE_TIMEOUT))?;
    tokio::task::spawn_blocking(move || crate::monitor::tty::receive_fd(&conn))
        .await
        .map_err(std::io::Error::other)?
}
