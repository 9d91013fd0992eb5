//! Attach (over SPDY or WebSocket): the client's channels are joined to the
//! container's monitor through `monitor::client`, the attach client Docker's
//! hijacked attach uses too: output frames go to the stdout/stderr streams,
//! the stdin stream goes to the container, and for a terminal the resize
//! stream sets its size.
//! The session ends when the container's output ends, when the client closes
//! its stdin (it detaches), or when the client leaves.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

use super::cache::ExecRequest;
use super::exec::finish;
use super::transport::{Negotiated, Output, Streams};
use super::tty::Resizes;
use crate::engine::Engine;
use crate::monitor::client::{self, Resizer};
use crate::monitor::log::Stream;

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
        resize,
    } = streams;
    let conn = match engine.attach_socket(&id) {
        Ok(path) => client::connect(&path, stdin.is_some())
            .await
            .map(|c| (path, c))
            .map_err(|e| format!("failed to attach to container {id}: {e}")),
        Err(e) => Err(format!("failed to attach to container {id}: {e}")),
    };
    let (path, (frames, to_container)) = match conn {
        Ok(c) => c,
        Err(msg) => {
            warn!(container = %id, "{msg}");
            finish(session, error, v4, Err(msg)).await;
            return;
        }
    };
    // Only a terminal attach has a resize stream (see `open`).
    let resizes = resize.map(|r| tokio::spawn(apply_resizes(path, Resizes::new(r), id.clone())));
    let input = match (stdin, to_container) {
        (Some(mut from), Some(to)) => Some(tokio::spawn(async move {
            // `from` lives until the copy ends: our half of a SPDY stdin
            // stays open meanwhile (see `transport::Input`).
            let _ = to.feed(&mut from).await;
        })),
        _ => None,
    };
    let output = demux(frames, stdout, stderr, req.tty, &id);
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
    if let Some(r) = resizes {
        r.abort();
    }
    if ended {
        finish(session, error, v4, Ok(0)).await;
    } else {
        session.abort();
    }
}

/// Copies the monitor's frames to the client's streams until the monitor
/// ends the stream; output for a stream the client did not ask for is
/// dropped. A terminal client has no stderr stream: everything goes to stdout.
async fn demux(
    mut frames: client::Output,
    mut stdout: Option<Output>,
    mut stderr: Option<Output>,
    tty: bool,
    id: &str,
) {
    loop {
        let frame = match frames.next().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                debug!(container = %id, error = %e, "attach: monitor stream failed");
                break;
            }
        };
        let to = match frame.stream {
            Stream::Stdout => stdout.as_mut(),
            Stream::Stderr if tty => stdout.as_mut(),
            Stream::Stderr => stderr.as_mut(),
        };
        if let Some(w) = to {
            let _ = w.write_all(&frame.data).await;
        }
    }
    for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
        let _ = w.shutdown().await;
    }
}

/// Applies every terminal size the client sends over one resize connection
/// to the monitor. Sizes keep being read (and dropped) when the monitor
/// cannot take them, so the client is never blocked on its resize stream.
async fn apply_resizes(socket: PathBuf, mut sizes: Resizes, id: String) {
    let mut resizer = match Resizer::connect(&socket).await {
        Ok(r) => Some(r),
        Err(e) => {
            debug!(container = %id, error = %e, "attach: failed to open the resize connection");
            None
        }
    };
    while let Some((width, height)) = sizes.next().await {
        if let Some(r) = resizer.as_mut() {
            if let Err(e) = r.resize(width, height).await {
                debug!(container = %id, error = %e, "attach: failed to resize the terminal");
                resizer = None;
            }
        }
    }
}
