//! The CRI streaming server: HTTP/1.1 on `cri.streaming_address`. A request
//! to a URL handed out by Exec, Attach or PortForward that asks to upgrade
//! to SPDY/3.1 or to WebSocket is answered `101 Switching Protocols` with a
//! sub-protocol chosen from the client's offers (see `negotiate`); the
//! upgraded connection, wrapped in the idle timeout, then runs one exec,
//! attach or port-forward session.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use super::cache::{Cache, Request as Pending};
use super::idle::{IdleIo, IdleTimeout};
use super::negotiate::{self, Refusal};
use super::transport::Transport;
use crate::engine::Engine;

/// What the CRI service and the HTTP server share: the pending requests and
/// the base of the URLs handed out.
pub struct Streaming {
    pub engine: Arc<Engine>,
    pub cache: Cache,
    base: String,
    idle_timeout: IdleTimeout,
}

impl Streaming {
    /// The absolute URL under which `req` can be streamed once.
    pub fn url(&self, req: Pending) -> String {
        let kind = req.kind();
        let token = self.cache.insert(req);
        format!("{}/{kind}/{token}", self.base)
    }
}

/// A bound streaming listener, not yet serving.
pub struct Server {
    listener: TcpListener,
    streaming: Arc<Streaming>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) and logs the address bound.
    /// Sessions idle for `idle_timeout` are closed; with `tls` the server
    /// speaks HTTPS and hands out https URLs.
    pub async fn bind(
        addr: SocketAddr,
        engine: Arc<Engine>,
        idle_timeout: IdleTimeout,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        info!(address = %addr, %scheme, idle_timeout = %idle_timeout, "serving CRI streaming");
        let streaming = Arc::new(Streaming {
            engine,
            cache: Cache::default(),
            base: format!("{scheme}://{addr}"),
            idle_timeout,
        });
        Ok(Server {
            listener,
            streaming,
            tls,
        })
    }

    /// The state the CRI service needs to hand out URLs.
    pub fn streaming(&self) -> Arc<Streaming> {
        self.streaming.clone()
    }

    /// Serves until `shutdown` completes. Upgraded sessions are not waited for.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        let router = router(self.streaming);
        let Some(tls) = self.tls else {
            return axum::serve(self.listener, router)
                .with_graceful_shutdown(shutdown)
                .await;
        };
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                acc = self.listener.accept() => match acc {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "streaming accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (tls, router) = (tls.clone(), router.clone());
            tokio::spawn(async move {
                match tls.accept(tcp).await {
                    Ok(stream) => serve_connection(router, stream).await,
                    Err(e) => debug!(%peer, error = %e, "streaming TLS handshake failed"),
                }
            });
        }
    }
}

/// Serves one HTTP/1.1 connection, upgrades included.
async fn serve_connection<I>(router: Router, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt as _;
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        router.clone().oneshot(req.map(axum::body::Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        debug!(error = %e, "streaming connection ended");
    }
}

/// The routes, for `Router::oneshot` in tests.
pub fn router(streaming: Arc<Streaming>) -> Router {
    Router::new()
        .route("/{kind}/{token}", any(handle))
        .layer(crate::panics::CatchPanicLayer::new(
            crate::panics::plain_response,
        ))
        .with_state(streaming)
}

async fn handle(
    State(s): State<Arc<Streaming>>,
    Path((kind, token)): Path<(String, String)>,
    mut req: Request,
) -> Response {
    let Some(pending) = s.cache.take(&kind, &token) else {
        return (
            StatusCode::NOT_FOUND,
            "unknown or expired streaming token\n",
        )
            .into_response();
    };
    let Some(upgrade) = negotiate::upgrade_of(req.headers()) else {
        return (
            StatusCode::BAD_REQUEST,
            "streaming needs an HTTP/1.1 `Upgrade: SPDY/3.1` or `Upgrade: websocket` request\n",
        )
            .into_response();
    };
    let port_forward = matches!(pending, Pending::PortForward { .. });
    let (negotiated, headers) = match negotiate::negotiate(upgrade, req.headers(), port_forward) {
        Ok(n) => n,
        Err(Refusal::BadRequest(m)) => return (StatusCode::BAD_REQUEST, m + "\n").into_response(),
        Err(Refusal::Forbidden(m)) => return (StatusCode::FORBIDDEN, m + "\n").into_response(),
    };
    let mut ports = Vec::new();
    if port_forward && matches!(negotiated.transport, Transport::WebSocket(_)) {
        match negotiate::query_ports(req.uri().query()) {
            Ok(p) => ports = p,
            Err(m) => return (StatusCode::BAD_REQUEST, m + "\n").into_response(),
        }
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let engine = s.engine.clone();
    let idle = s.idle_timeout;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => {
                let io = IdleIo::new(TokioIo::new(up), idle);
                match pending {
                    Pending::Exec(r) => super::exec::serve(engine, r, negotiated, io).await,
                    Pending::Attach(r) => super::attach::serve(engine, r, negotiated, io).await,
                    Pending::PortForward { pod_id } => {
                        super::portforward::serve(engine, pod_id, ports, negotiated, io).await
                    }
                }
            }
            Err(e) => warn!(error = %e, "streaming upgrade failed"),
        }
    });
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    for (name, value) in headers {
        h.insert(name, value);
    }
    resp
}
