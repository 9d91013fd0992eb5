//! Exec (`channel.k8s.io` v1–v5, over SPDY or WebSocket): open the client's
//! channels, run the process through the engine's one process driver (an
//! exec instance, as Docker's exec: `docker inspect` lists it and `docker
//! events` shows it) with its stdio wired to them, report the exit on the
//! error channel, then end the session.
//!
//! ```text
//! streams opened ──> process running ──exit──> status on error stream ──> session closed
//!                          └──client gone──> process killed ──────────────────┘
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::cache::ExecRequest;
use super::transport::{Negotiated, Output, Session, Streams};
use crate::engine::execs::ExecSpec;
use crate::engine::process::{Outcome, ProcessIo};
use crate::engine::Engine;
use crate::monitor::log::Stream;

/// How long output may keep flowing to the client after the process ended.
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
    let spec = ExecSpec {
        cmd: req.cmd.clone(),
        tty: req.tty,
        attach_stdin: stdin.is_some(),
        attach_stdout: stdout.is_some(),
        attach_stderr: stderr.is_some(),
        size,
        ..Default::default()
    };
    let started = engine
        .create_exec(&id, spec)
        .and_then(|exec| engine.start_exec(&exec, None));
    let started = match started {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("failed to exec in container {id}: {}", e.chain());
            warn!(container = %id, "{msg}");
            finish(session, error, v4, Err(msg)).await;
            return;
        }
    };
    let (tx, rx) = mpsc::channel(64);
    let mut forward = tokio::spawn(forward(rx, stdout, stderr));
    let resizes = resize.map(|mut r| {
        let (rtx, rrx) = mpsc::channel(8);
        tokio::spawn(async move {
            while let Some(s) = r.next().await {
                if rtx.send(s).await.is_err() {
                    break;
                }
            }
        });
        rrx
    });
    let io = ProcessIo {
        stdin: stdin.map(|s| Box::new(s) as crate::engine::process::Input),
        output: Some(tx),
        resizes,
    };
    let result = match engine.run_exec(started, io, session.closed()).await {
        Outcome::Exited(code) => Ok(code),
        Outcome::RuntimeFailed { code, errors } => Err(format!(
            "the runtime exited ({code}) before handing over the terminal: {}",
            errors.trim()
        )),
        Outcome::Failed(msg) => Err(msg),
        Outcome::Cancelled => {
            forward.abort();
            debug!(container = %id, "exec client went away; process killed");
            session.abort();
            return;
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, &mut forward)
        .await
        .is_err()
    {
        forward.abort();
    }
    if let Err(msg) = &result {
        warn!(container = %id, "exec failed: {msg}");
    }
    finish(session, error, v4, result).await;
}

/// Copies the process's output to the client's streams (stdout only for a
/// terminal), then closes them; a stream the client did not open, or one
/// that failed, drops its output.
async fn forward(
    mut rx: mpsc::Receiver<(Stream, Vec<u8>)>,
    mut stdout: Option<Output>,
    mut stderr: Option<Output>,
) {
    while let Some((stream, data)) = rx.recv().await {
        let to = match stream {
            Stream::Stdout => &mut stdout,
            Stream::Stderr => &mut stderr,
        };
        if let Some(o) = to.as_mut() {
            if o.write_all(&data).await.is_err() {
                *to = None;
            }
        }
    }
    for o in [stdout, stderr].into_iter().flatten() {
        let mut o = o;
        let _ = o.shutdown().await;
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
