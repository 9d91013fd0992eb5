//! Exec over SPDY (`channel.k8s.io` v1–v4): wait for the client's streams,
//! run `crun exec` with its stdio wired to them, report the exit on the
//! error stream, then end the session.
//!
//! ```text
//! streams opened ──> process running ──exit──> status on error stream ──> session closed
//!                          └──client gone──> process killed ──────────────────┘
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::process::Child;
use tracing::{debug, warn};

use super::cache::ExecRequest;
use super::spdy::{IncomingStream, Session, StreamWriter};
use crate::engine::exec::PreparedExec;
use crate::engine::Engine;

/// How long the client gets to open its streams (the kubelet allows 30 s).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long output may keep flowing after the process ended (a background
/// child can hold the pipes open).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a terminal exec waits for the client's first size.
const FIRST_SIZE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the client gets to close the session after the status.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The streams of one exec, by type.
pub(super) struct Streams {
    pub error: StreamWriter,
    pub stdin: Option<IncomingStream>,
    pub stdout: Option<StreamWriter>,
    pub stderr: Option<StreamWriter>,
    pub resize: Option<IncomingStream>,
}

/// Serves one exec session over the upgraded connection `io`.
pub async fn serve<T>(engine: Arc<Engine>, req: ExecRequest, protocol: &str, io: T)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (session, mut incoming) = Session::new(io);
    let streams = match collect(&mut incoming, &req, protocol).await {
        Ok(s) => s,
        Err(e) => {
            warn!(container = %req.container_id, "exec: {e}");
            session.abort();
            return;
        }
    };
    // Streams opened later are not part of the protocol; refusing them by
    // dropping the receiver also lets the session end once ours close.
    drop(incoming);
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
            finish(session, error, protocol, Err(msg)).await;
            return;
        }
    };
    let result = if req.tty {
        super::tty::run(&prepared, &session, stdin, stdout, resize, size).await
    } else {
        run_pipes(&prepared, &session, stdin, stdout, stderr).await
    };
    match result {
        Some(Ok(code)) => finish(session, error, protocol, Ok(code)).await,
        Some(Err(msg)) => {
            warn!(container = %id, "exec failed: {msg}");
            finish(session, error, protocol, Err(msg)).await
        }
        None => {
            debug!(container = %id, "exec client went away; process killed");
            session.abort();
        }
    }
}

/// Waits until every expected stream is open.
pub(super) async fn collect(
    incoming: &mut tokio::sync::mpsc::Receiver<IncomingStream>,
    req: &ExecRequest,
    protocol: &str,
) -> Result<Streams, String> {
    let mut want = vec!["error"];
    if req.stdin {
        want.push("stdin");
    }
    if req.stdout {
        want.push("stdout");
    }
    if req.stderr && !req.tty {
        want.push("stderr");
    }
    if req.tty && matches!(protocol, "v3.channel.k8s.io" | "v4.channel.k8s.io") {
        want.push("resize");
    }
    let mut got: HashMap<String, IncomingStream> = HashMap::new();
    let wait = async {
        while !want.iter().all(|w| got.contains_key(*w)) {
            let Some(s) = incoming.recv().await else {
                return Err("the client closed the connection before opening its streams");
            };
            let kind = s.header("streamtype").unwrap_or_default().to_string();
            if want.contains(&kind.as_str()) {
                got.insert(kind, s);
            } else {
                s.writer.reset(super::spdy::RstStatus::REFUSED_STREAM);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(STREAM_CREATION_TIMEOUT, wait).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => {
            return Err(format!(
                "timed out waiting for the client's streams: wanted {want:?}"
            ))
        }
    }
    let mut take = |k: &str| got.remove(k);
    Ok(Streams {
        error: take("error").expect("waited for").writer,
        stdin: take("stdin"),
        stdout: take("stdout").map(|s| s.writer),
        stderr: take("stderr").map(|s| s.writer),
        resize: take("resize"),
    })
}

/// Runs the process with pipes. `None` when the client went away (the
/// process is then killed), else its exit code or why it could not run.
async fn run_pipes(
    prepared: &PreparedExec,
    session: &Session,
    stdin: Option<IncomingStream>,
    stdout: Option<StreamWriter>,
    stderr: Option<StreamWriter>,
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
    if let (Some(from), Some(mut to)) = (stdin, child.stdin.take()) {
        copies.spawn(async move {
            // Our half of the stdin stream stays open: Go clients take its
            // FIN as the end of the session and close their stdin.
            let IncomingStream {
                mut reader,
                writer: _open,
                ..
            } = from;
            let _ = tokio::io::copy(&mut reader, &mut to).await;
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
    mut error: StreamWriter,
    protocol: &str,
    outcome: Result<i32, String>,
) {
    let body = status_body(protocol, &outcome);
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
fn status_body(protocol: &str, outcome: &Result<i32, String>) -> Vec<u8> {
    let v4 = protocol == "v4.channel.k8s.io";
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
        let v4 = "v4.channel.k8s.io";
        let ok: serde_json::Value = serde_json::from_slice(&status_body(v4, &Ok(0))).unwrap();
        assert_eq!(ok, serde_json::json!({"metadata": {}, "status": "Success"}));
        let bad: serde_json::Value = serde_json::from_slice(&status_body(v4, &Ok(3))).unwrap();
        assert_eq!(bad["status"], "Failure");
        assert_eq!(bad["reason"], "NonZeroExitCode");
        assert_eq!(bad["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(bad["details"]["causes"][0]["message"], "3");
        assert!(status_body("v3.channel.k8s.io", &Ok(0)).is_empty());
    }
}
