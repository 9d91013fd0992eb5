//! The CRI streaming server: HTTP/1.1 on `cri.streaming_address`. A request
//! to a URL handed out by Exec, Attach or PortForward, asking to upgrade to
//! SPDY/3.1, is answered `101 Switching Protocols` with the sub-protocol
//! chosen from the client's `X-Stream-Protocol-Version` offers; the upgraded
//! connection then runs one [`spdy::Session`](super::spdy::Session).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::cache::{Cache, Request as Pending};
use crate::engine::Engine;

/// Sub-protocols of exec and attach, best first.
pub const EXEC_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// Sub-protocols of port-forward.
pub const PORT_FORWARD_PROTOCOLS: &[&str] = &["portforward.k8s.io"];

const PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// What the CRI service and the HTTP server share: the pending requests and
/// the base of the URLs handed out.
pub struct Streaming {
    pub engine: Arc<Engine>,
    pub cache: Cache,
    base: String,
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
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) and logs the address bound.
    pub async fn bind(addr: SocketAddr, engine: Arc<Engine>) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        info!(address = %addr, "serving CRI streaming");
        let streaming = Arc::new(Streaming {
            engine,
            cache: Cache::default(),
            base: format!("http://{addr}"),
        });
        Ok(Server {
            listener,
            streaming,
        })
    }

    /// The state the CRI service needs to hand out URLs.
    pub fn streaming(&self) -> Arc<Streaming> {
        self.streaming.clone()
    }

    /// Serves until `shutdown` completes. Upgraded sessions are not waited for.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        axum::serve(self.listener, router(self.streaming))
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// The routes, for `Router::oneshot` in tests.
pub fn router(streaming: Arc<Streaming>) -> Router {
    Router::new()
        .route("/{kind}/{token}", any(handle))
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
    if !wants_spdy(req.headers()) {
        return (
            StatusCode::BAD_REQUEST,
            "streaming needs an HTTP/1.1 `Upgrade: SPDY/3.1` request\n",
        )
            .into_response();
    }
    let supported = match pending {
        Pending::PortForward { .. } => PORT_FORWARD_PROTOCOLS,
        _ => EXEC_PROTOCOLS,
    };
    let offered = offered_protocols(req.headers());
    let protocol = match negotiate(&offered, supported) {
        Some(p) => p,
        None => {
            let msg = format!(
                "unable to upgrade: none of the offered protocols {offered:?} is supported; \
                 supported: {supported:?}\n"
            );
            return (StatusCode::FORBIDDEN, msg).into_response();
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let engine = s.engine.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => {
                let io = TokioIo::new(up);
                match pending {
                    Pending::Exec(r) => super::exec::serve(engine, r, protocol, io).await,
                    Pending::Attach(r) => super::attach::serve(engine, r, protocol, io).await,
                    Pending::PortForward { pod_id } => {
                        super::portforward::serve(engine, pod_id, io).await
                    }
                }
            }
            Err(e) => warn!(error = %e, "streaming upgrade failed"),
        }
    });
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    if !protocol.is_empty() {
        h.insert(PROTOCOL_HEADER, HeaderValue::from_static(protocol));
    }
    resp
}

fn wants_spdy(h: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, want: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "spdy/3.1")
}

/// The client's offers; the header may repeat and values may be comma lists.
fn offered_protocols(h: &HeaderMap) -> Vec<String> {
    h.get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The best supported protocol the client offers. A client offering none
/// is a legacy one: it gets the oldest protocol and no header back ("").
fn negotiate(offered: &[String], supported: &[&'static str]) -> Option<&'static str> {
    if offered.is_empty() {
        return Some("");
    }
    supported
        .iter()
        .find(|s| offered.iter().any(|o| o == *s))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn negotiation_picks_the_best_common_protocol() {
        let o = offers(&["channel.k8s.io", "v3.channel.k8s.io", "v5.channel.k8s.io"]);
        assert_eq!(negotiate(&o, EXEC_PROTOCOLS), Some("v3.channel.k8s.io"));
        let o = offers(&["v4.channel.k8s.io"]);
        assert_eq!(negotiate(&o, PORT_FORWARD_PROTOCOLS), None);
        assert_eq!(negotiate(&[], EXEC_PROTOCOLS), Some(""));
    }

    #[test]
    fn offers_and_upgrade_headers_are_parsed() {
        let mut h = HeaderMap::new();
        h.append(PROTOCOL_HEADER, HeaderValue::from_static("a, b"));
        h.append(PROTOCOL_HEADER, HeaderValue::from_static("c"));
        assert_eq!(offered_protocols(&h), offers(&["a", "b", "c"]));
        assert!(!wants_spdy(&h));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(wants_spdy(&h));
    }
}
