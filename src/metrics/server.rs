//! The metrics endpoint: `GET /metrics` (text exposition format) and
//! `GET /healthz` on `metrics.address`; every other path is 404.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tracing::{error, info};

use super::CONTENT_TYPE;

/// A bound metrics listener, not yet serving.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) and logs the address actually bound.
    pub async fn bind(addr: SocketAddr) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        info!(address = %addr, "serving metrics");
        Ok(Server { listener, addr })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then lets open scrapes finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        axum::serve(self.listener, router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Binds `addr` and serves the process-wide metrics until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    Server::bind(addr).await?.run(shutdown).await
}

/// The endpoint's routes, for `Router::oneshot` in tests.
pub fn router() -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
}

async fn metrics() -> Response {
    // Collectors read /proc and the image store: blocking work.
    match tokio::task::spawn_blocking(super::encode).await {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            error!(error = %e, "failed to gather metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed to gather metrics\n",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get_path(path: &str) -> (StatusCode, Option<String>, String) {
        let req = Request::get(path).body(Body::empty()).unwrap();
        let res = router().oneshot(req).await.unwrap();
        let ct = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, ct, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn metrics_healthz_and_404() {
        let (status, ct, body) = get_path("/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ct.as_deref(), Some(CONTENT_TYPE));
        assert!(body.contains("# TYPE berth_build_info gauge"), "{body}");
        let (status, _, body) = get_path("/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
        let (status, _, _) = get_path("/other").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn serves_on_an_ephemeral_port_until_shutdown() {
        let server = Server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let body = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.contains("process_resident_memory_bytes"), "{body}");
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
