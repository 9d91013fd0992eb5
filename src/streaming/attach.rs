//! Attach (over SPDY or WebSocket): the client's channels are joined to the container's
//! monitor through its attach socket (see `monitor::attach`): output frames
//! go to the stdout/stderr streams, the stdin stream goes to the container.
//! The session ends when the container's output ends, when the client closes
//! its stdin (it detaches), or when the client leaves.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::warn;

use super::cache::ExecRequest;
use super::exec::finish;
use super::transport::{Negotiated, Output, Streams};
use crate::engine::Engine;
use crate::monitor::attach::{HELLO_OUTPUT, HELLO_STDIN, TAG_STDERR};

/// How long output keeps flowing after the client closed its stdin.
const DETACH_DRAIN: Duration = Duration::from_secs(2);

/// Serves one attach session over the upgraded connection `io`.
pub async fn serve<T>(engine: Arc<Engine>, req: ExecRequest, negotiated: Negotiated, io: T)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let id = req.container_id.clone();
    let (session, streams) = match super::open::exec_channels(io, &req, negotiated).await {
        Ok(s) => s,
        Err(e) => {
            warn!(container = %id, "attach: {e}");
            return;
        }
    };
    let v4 = negotiated.status_v4();
    let Streams {
        error,
        stdin,
        stdout,
        stderr,
        resize: _resize,
    } = streams;
    let conn = match engine.attach_socket(&id) {
        Ok(path) => match crate::monitor::attach::socket_path(&path) {
            // `_dir` keeps the /proc/self/fd path valid while connecting.
            Ok((_dir, short)) => tokio::net::UnixStream::connect(&short)
                .await
                .map_err(|e| format!("failed to attach to container {id}: {e}")),
            Err(e) => Err(format!("failed to attach to container {id}: {e}")),
        },
        Err(e) => Err(format!("failed to attach to container {id}: {e}")),
    };
    let conn = match conn {
        Ok(c) => c,
        Err(msg) => {
            warn!(container = %id, "{msg}");
            finish(session, error, v4, Err(msg)).await;
            return;
        }
    };
    let (mut rd, mut wr) = conn.into_split();
    let hello = if stdin.is_some() {
        HELLO_STDIN
    } else {
        HELLO_OUTPUT
    };
    if let Err(e) = wr.write_all(&[hello]).await {
        let msg = format!("failed to attach to container {id}: {e}");
        finish(session, error, v4, Err(msg)).await;
        return;
    }
    let input = stdin.map(|s| {
        tokio::spawn(async move {
            // Keep our half of stdin open (see `exec::run_pipes`).
            let mut s = s;
            let _ = tokio::io::copy(&mut s, &mut wr).await;
            let _ = wr.shutdown().await;
        })
    });
    let output = demux(&mut rd, stdout, stderr);
    tokio::pin!(output);
    // The client closing its stdin detaches it (as with containerd): what
    // the container prints in reply still gets a moment to arrive.
    let stdin_done = async {
        match input {
            Some(t) => {
                let _ = t.await;
            }
            None => std::future::pending().await,
        }
    };
    let ended = tokio::select! {
        _ = &mut output => true,
        _ = session.closed() => false,
        _ = stdin_done => {
            let _ = tokio::time::timeout(DETACH_DRAIN, &mut output).await;
            true
        }
    };
    if ended {
        finish(session, error, v4, Ok(0)).await;
    } else {
        session.abort();
    }
}

/// Copies the monitor's frames to the client's streams until the monitor
/// closes the connection; output for a stream the client did not ask for is
/// dropped.
async fn demux(
    rd: &mut tokio::net::unix::OwnedReadHalf,
    mut stdout: Option<Output>,
    mut stderr: Option<Output>,
) {
    let mut head = [0u8; 5];
    let mut buf = Vec::new();
    while rd.read_exact(&mut head).await.is_ok() {
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        buf.resize(len, 0);
        if rd.read_exact(&mut buf).await.is_err() {
            break;
        }
        let to = if head[0] == TAG_STDERR {
            // A terminal client has no stderr stream: everything is stdout.
            stderr.as_mut().or(stdout.as_mut())
        } else {
            stdout.as_mut()
        };
        if let Some(w) = to {
            let _ = w.write_all(&buf).await;
        }
    }
    for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
        let _ = w.shutdown().await;
    }
}
