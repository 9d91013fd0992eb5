//! Exec (`channel.k8s.io` v1–v5, over SPDY or WebSocket): open the client's
//! channels, run `crun exec` with its stdio wired to them, report the exit
//! on the error channel, then end the session.
//!
//! ```text
//! streams opened ──> process running ──exit──> status on error stream ──> session closed
//!                          └──client gone──> process killed ──────────────────┘
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::process::Child;
use tracing::{debug, warn};

use super::cache::ExecRequest;
use super::transport::{Input, Negotiated, Output, Session, Streams};
use crate::engine::exec::PreparedExec;
use crate::engine::Engine;

/// How long output may keep flowing after the process ended (a background
/// child can hold the pipes open).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a terminal exec waits for the client's first size.
const FIRST_SIZE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the client gets to close the session after the status.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one exec session over the upgraded connection `io`.
pub async fn serve<T>(engine: Arc<Engine>, req: ExecRequest, negotiated: Negotiated, io: T)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (session, streams) = match super::open::exec_channels(io, &req, negotiated).await {
        Ok(s) => s,
        Err(e) => {
            warn!(container = %req.container_id, "exec: {e}");
            return;
        }
    };
    let v4 = negotiated.status_v4();
    let id = req.container_id.clone();
    let Streams {
        error,
        stdin,
        stdout,
        stderr,
        resize,
    } = streams;
    // Clients send the terminal's size first thing; starting the process
    // with it spares the command a 0x0 terminal.
    let mut resize = resize.map(super::tty::Resizes::new);
    let mut size = None;
    if let Some(r) = resize.as_mut() {
        size = tokio::time::timeout(FIRST_SIZE_TIMEOUT, r.next())
            .await
            .ok()
            .flatten();
    }
    let prepared = match engine.prepare_exec(&id, req.cmd.clone(), req.tty, size) {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("failed to exec in container {id}: {e}");
            warn!(container = %id, "{msg}");
            finish(session, error, v4, Err(msg)).await;
            return;
        }
    };
    let result = if req.tty {
        super::tty::run(&prepared, &session, stdin, stdout, resize, size).await
    } else {
        run_pipes(&prepared, &session, stdin, stdout, stderr).await
    };
    match result {
        Some(Ok(code)) => finish(session, error, v4, Ok(code)).await,
        Some(Err(msg)) => {
            warn!(container = %id, "exec failed: {msg}");
            finish(session, error, v4, Err(msg)).await
        }
        None => {
            debug!(container = %id, "exec client went away; process killed");
            session.abort();
        }
    }
}

/// Runs the process with pipes. `None` when the client went away (the
/// process is then killed), else its exit code or why it could not run.
async fn run_pipes(
    prepared: &PreparedExec,
    session: &Session,
    stdin: Option<Input>,
    stdout: Option<Output>,
    stderr: Option<Output>,
) -> Option<Result<i32, String>> {
    use std::process::Stdio;
    let mut cmd = prepared.command(None);
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    if stdout.is_some() {
        cmd.stdout(Stdio::piped());
    }
    // The runtime's own errors need a reader even if the client wants none.
    cmd.stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Some(Err(format!("failed to start the runtime: {e}"))),
    };
    let mut copies = tokio::task::JoinSet::new();
    if let (Some(mut from), Some(mut to)) = (stdin, child.stdin.take()) {
        copies.spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
            // Dropping `to` closes the process's stdin.
        });
    }
    let out_pipe = child.stdout.take();
    let err_pipe = child.stderr.take();
    let mut output = tokio::task::JoinSet::new();
    if let (Some(mut from), Some(mut to)) = (out_pipe, stdout) {
        output.spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
            let _ = to.shutdown().await;
        });
    }
    if let Some(mut from) = err_pipe {
        output.spawn(async move {
            match stderr {
                Some(mut to) => {
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                    let _ = to.shutdown().await;
                }
                None => {
                    let _ = tokio::io::copy(&mut from, &mut tokio::io::sink()).await;
                }
            }
        });
    }
    let code = wait_or_kill(prepared, session, &mut child).await;
    copies.abort_all();
    if code.is_some() {
        let drained = async { while output.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drained).await;
    }
    output.abort_all();
    code.map(Ok)
}

/// Waits for the runtime to exit with the process's code; if the session
/// ends first, kills the process and the runtime and returns `None`.
pub(super) async fn wait_or_kill(
    prepared: &PreparedExec,
    session: &Session,
    child: &mut Child,
) -> Option<i32> {
    tokio::select! {
        st = child.wait() => Some(st.ok().and_then(|s| s.code()).unwrap_or(-1)),
        _ = session.closed() => {
            // The runtime waits for the process, so the process goes first;
            // a runtime still starting it writes its pid file shortly.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            loop {
                if let Some(pid) = prepared.pid() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    break;
                }
                if tokio::time::Instant::now() >= deadline || child.try_wait().ok().flatten().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
            None
        }
    }
}

/// Writes the outcome on the error stream, closes it and ends the session.
pub(super) async fn finish(
    session: Session,
    mut error: Output,
    v4: bool,
    outcome: Result<i32, String>,
) {
    let body = status_body(v4, &outcome);
    if !body.is_empty() {
        let _ = error.write_all(&body).await;
    }
    let _ = error.shutdown().await;
    drop(error);
    session.close();
    if tokio::time::timeout(CLOSE_TIMEOUT, session.closed())
        .await
        .is_err()
    {
        session.abort();
    }
}

/// What goes on the error stream: a `metav1.Status` for v4, plain text
/// (nothing on success) before.
fn status_body(v4: bool, outcome: &Result<i32, String>) -> Vec<u8> {
    let status = match outcome {
        Ok(0) if v4 => serde_json::json!({"metadata": {}, "status": "Success"}),
        Ok(0) => return Vec::new(),
        Ok(code) if v4 => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Ok(code) => return format!("command terminated with non-zero exit code: {code}").into(),
        Err(msg) if v4 => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": msg,
            "reason": "InternalError",
            "code": 500,
        }),
        Err(msg) => return msg.clone().into_bytes(),
    };
    serde_json::to_vec(&status).expect("status serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_status_carries_the_exit_code() {
        let v4 = true;
        let ok: serde_json::Value = serde_json::from_slice(&status_body(v4, &Ok(0))).unwrap();
        assert_eq!(ok, serde_json::json!({"metadata": {}, "status": "Success"}));
        let bad: serde_json::Value = serde_json::from_slice(&status_body(v4, &Ok(3))).unwrap();
        assert_eq!(bad["status"], "Failure");
        assert_eq!(bad["reason"], "NonZeroExitCode");
        assert_eq!(bad["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(bad["details"]["causes"][0]["message"], "3");
        assert!(status_body(false, &Ok(0)).is_empty());
    }
}
