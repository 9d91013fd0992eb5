//! Port-forward: berth connects to 127.0.0.1:<port> inside the pod's network
//! namespace and copies both ways; failures are written as text on the
//! error channel.
//!
//! * SPDY (`portforward.k8s.io`), also tunnelled in WebSocket binary
//!   messages (`SPDY/3.1+portforward.k8s.io`): for each connection the client
//!   opens an error stream and a data stream with the same `requestID` and a
//!   `port` header.
//! * WebSocket channels (`v4.channel.k8s.io` and friends, as the kubelet
//!   serves them): the ports come from the URL's `port` query; port i gets
//!   data channel 2i and error channel 2i+1, and the first message on each
//!   is the port, two bytes little-endian.
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
use tokio::task::JoinSet;
use tracing::debug;

use super::spdy::{self, IncomingStream};
use super::transport::{Input, Negotiated, Output, Transport};
use super::ws;
use crate::engine::Engine;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The two streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    error: Option<IncomingStream>,
    data: Option<IncomingStream>,
}

/// Serves one port-forward session over the upgraded connection `io`;
/// `ports` (from the URL) are used by the WebSocket channel protocol only.
pub async fn serve<T>(
    engine: Arc<Engine>,
    pod_id: String,
    ports: Vec<u16>,
    negotiated: Negotiated,
    io: T,
) where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let netns = match engine.port_forward_netns(&pod_id) {
        Ok(n) => n,
        Err(e) => {
            // Dropping the connection is all a client is told, as with the
            // kubelet: the CRI call checked the pod moments ago.
            tracing::warn!(pod = %pod_id, error = %e, "port-forward refused");
            return;
        }
    };
    let target = Target { pod_id, netns };
    match negotiated.transport {
        Transport::Spdy => serve_spdy(target, io).await,
        Transport::SpdyOverWebSocket => serve_spdy(target, ws::Tunnel::new(io)).await,
        Transport::WebSocket(codec) => serve_channels(target, ports, codec, io).await,
    }
}

/// Where connections go.
#[derive(Clone)]
struct Target {
    pod_id: String,
    netns: Option<PathBuf>,
}

async fn serve_spdy<T>(target: Target, io: T)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (session, mut incoming) = spdy::Session::new(io);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut forwards = JoinSet::new();
    while let Some(s) = incoming.recv().await {
        let Some(request) = s.header("requestid").map(str::to_string) else {
            s.writer.reset(spdy::RstStatus::PROTOCOL_ERROR);
            continue;
        };
        let pair = pairs.entry(request.clone()).or_default();
        match s.header("streamtype") {
            Some("error") => pair.error = Some(s),
            Some("data") => pair.data = Some(s),
            _ => {
                s.writer.reset(spdy::RstStatus::PROTOCOL_ERROR);
                continue;
            }
        }
        if pair.error.is_some() && pair.data.is_some() {
            let pair = pairs.remove(&request).expect("just seen");
            let (error, data) = (pair.error.expect("set"), pair.data.expect("set"));
            let port = data
                .header("port")
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p > 0);
            let IncomingStream {
                reader: err_r,
                writer: err_w,
                ..
            } = error;
            let data_w = data.writer;
            let data_r = Input::Spdy {
                reader: data.reader,
                _keep_open: None,
            };
            let target = target.clone();
            forwards.spawn(async move {
                // The client's half of the error stream stays readable.
                let _err_r = err_r;
                let conn = Conn {
                    data_in: data_r,
                    data_out: Output::Spdy(data_w),
                    error: Output::Spdy(err_w),
                };
                forward(target, port, conn, false).await;
            });
        }
    }
    // The session is over (the accept channel closes only then): a
    // connection still copying has lost its client.
    session.closed().await;
    forwards.abort_all();
    debug!(pod = %target.pod_id, "port-forward session ended");
    session.wait().await;
}

async fn serve_channels<T>(target: Target, ports: Vec<u16>, codec: ws::Codec, io: T)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let config = ws::ChannelConfig {
        codec,
        close_signal: false,
        inputs: (0..ports.len()).map(|i| (i * 2) as u8).collect(),
    };
    let (session, mut readers) = ws::Session::new(io, config);
    let mut forwards = JoinSet::new();
    for (i, port) in ports.into_iter().enumerate() {
        let (data_ch, error_ch) = ((i * 2) as u8, (i * 2 + 1) as u8);
        let mut data_out = session.writer(data_ch);
        let mut error = session.writer(error_ch);
        let data_in = readers.remove(&data_ch).expect("configured");
        let target = target.clone();
        forwards.spawn(async move {
            let prefix = port.to_le_bytes();
            if data_out.write_all(&prefix).await.is_err() || error.write_all(&prefix).await.is_err()
            {
                return;
            }
            let conn = Conn {
                data_in: Input::Ws(data_in),
                data_out: Output::Ws(data_out),
                error: Output::Ws(error),
            };
            forward(target, Some(port), conn, true).await;
        });
    }
    // As the kubelet does, the session ends when every port's connection
    // has; a client that leaves first takes the connections with it.
    tokio::select! {
        _ = async { while forwards.join_next().await.is_some() {} } => {
            session.close();
            let _ = tokio::time::timeout(Duration::from_secs(5), session.closed()).await;
            session.abort();
        }
        _ = session.closed() => forwards.abort_all(),
    }
    debug!(pod = %target.pod_id, "port-forward session ended");
}

/// The channels of one forwarded connection.
struct Conn {
    data_in: Input,
    data_out: Output,
    error: Output,
}

/// Forwards one connection. With `end_on_pod_eof` (the WebSocket channels,
/// which cannot signal the end of the client's data) the connection ends
/// when the pod side does.
async fn forward(target: Target, port: Option<u16>, conn: Conn, end_on_pod_eof: bool) {
    let Conn {
        mut data_in,
        mut data_out,
        mut error,
    } = conn;
    let Some(port) = port else {
        let _ = error.write_all(b"invalid or missing port header").await;
        let _ = error.shutdown().await;
        return;
    };
    let tcp = match connect(target.netns, port).await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!(
                "failed to connect to localhost:{port} inside pod {}: {e}",
                target.pod_id
            );
            debug!("{msg}");
            let _ = error.write_all(msg.as_bytes()).await;
            let _ = error.shutdown().await;
            if let Output::Spdy(w) = &data_out {
                w.reset(spdy::RstStatus::CANCEL);
            }
            return;
        }
    };
    let (mut tcp_r, mut tcp_w) = tcp.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut data_in, &mut tcp_w).await;
        let _ = tcp_w.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut tcp_r, &mut data_out).await;
        let _ = data_out.shutdown().await;
    };
    if end_on_pod_eof {
        tokio::pin!(up);
        tokio::select! {
            _ = &mut up => {}
            _ = down => {}
        }
    } else {
        tokio::join!(up, down);
    }
    let _ = error.shutdown().await;
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
