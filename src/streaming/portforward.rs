//! Port-forward over SPDY (`portforward.k8s.io`): for each request the client
//! opens an error stream and a data stream carrying the same `requestID` and
//! `port`; berth connects to 127.0.0.1:<port> inside the pod's network
//! namespace and copies both ways. Failures are written as text on the error
//! stream.
//!
//! The connection is made on a short-lived std thread that `setns`es into the
//! pod's netns: `setns` affects only the calling thread, and a socket stays in
//! the namespace it was created in, so the connected socket is handed back to
//! tokio and the thread ends. No tokio worker ever changes namespace.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use super::spdy::{IncomingStream, Session};
use crate::engine::Engine;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The two streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    error: Option<IncomingStream>,
    data: Option<IncomingStream>,
}

/// Serves one port-forward session over the upgraded connection `io`.
pub async fn serve<T>(engine: Arc<Engine>, pod_id: String, io: T)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (session, mut incoming) = Session::new(io);
    let netns = match engine.port_forward_netns(&pod_id) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(pod = %pod_id, error = %e, "port-forward refused");
            session.abort();
            return;
        }
    };
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    while let Some(s) = incoming.recv().await {
        let Some(request) = s.header("requestid").map(str::to_string) else {
            s.writer.reset(super::spdy::RstStatus::PROTOCOL_ERROR);
            continue;
        };
        let pair = pairs.entry(request.clone()).or_default();
        match s.header("streamtype") {
            Some("error") => pair.error = Some(s),
            Some("data") => pair.data = Some(s),
            _ => {
                s.writer.reset(super::spdy::RstStatus::PROTOCOL_ERROR);
                continue;
            }
        }
        if pair.error.is_some() && pair.data.is_some() {
            let pair = pairs.remove(&request).expect("just seen");
            let (error, data) = (pair.error.expect("set"), pair.data.expect("set"));
            tokio::spawn(forward(pod_id.clone(), netns.clone(), error, data));
        }
    }
    debug!(pod = %pod_id, "port-forward session ended");
    session.wait().await;
}

/// Forwards one connection.
async fn forward(
    pod_id: String,
    netns: Option<PathBuf>,
    error: IncomingStream,
    data: IncomingStream,
) {
    let IncomingStream {
        writer: mut err_w,
        reader: _err_r,
        ..
    } = error;
    let port = data
        .header("port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p > 0);
    let Some(port) = port else {
        let _ = err_w.write_all(b"invalid or missing port header").await;
        let _ = err_w.shutdown().await;
        return;
    };
    let tcp = match connect(netns, port).await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("failed to connect to localhost:{port} inside pod {pod_id}: {e}");
            debug!("{msg}");
            let _ = err_w.write_all(msg.as_bytes()).await;
            let _ = err_w.shutdown().await;
            data.writer.reset(super::spdy::RstStatus::CANCEL);
            return;
        }
    };
    let (mut tcp_r, mut tcp_w) = tcp.into_split();
    let IncomingStream {
        reader: mut data_r,
        writer: mut data_w,
        ..
    } = data;
    let up = async {
        let _ = tokio::io::copy(&mut data_r, &mut tcp_w).await;
        let _ = tcp_w.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut tcp_r, &mut data_w).await;
        let _ = data_w.shutdown().await;
    };
    tokio::join!(up, down);
    let _ = err_w.shutdown().await;
}

/// Connects to 127.0.0.1:`port` in `netns` (the host's when None).
async fn connect(netns: Option<PathBuf>, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Some(netns) = netns else {
        return tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::other("connection timed out"))?;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("berth-portfwd".into())
        .spawn(move || {
            let res = (|| {
                let ns = std::fs::File::open(&netns)?;
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                let s = std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
                s.set_nonblocking(true)?;
                Ok::<_, std::io::Error>(s)
            })();
            let _ = tx.send(res);
        })?;
    let std_stream = rx
        .await
        .map_err(|_| std::io::Error::other("the connecting thread failed"))??;
    tokio::net::TcpStream::from_std(std_stream)
}
