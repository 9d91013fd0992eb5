//! The last line of defence against panics: a process-wide hook that logs a
//! panic once and counts it, and a tower layer that answers a panicking
//! request with an error instead of dropping the connection.
//!
//! A panic is a bug: each reachable one is fixed where it happens. This only
//! keeps one bug from taking a connection (or, in a spawned task, its work)
//! down silently, and makes it visible in the log (`panicked at …`, which the
//! e2e harness looks for) and in `berth_panics_total`.
//!
//! The hook captures no backtrace unless `RUST_BACKTRACE` asks for one:
//! symbolising a backtrace costs tens of milliseconds and loads the debug
//! info into memory (RSS grew by ~10 MiB per panic with `debug = 1`), which a
//! request path must not pay.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

use axum::response::IntoResponse;
use futures::FutureExt;

/// Installs the hook (once per process): `error!` with the panic's message
/// and location, a backtrace only when `RUST_BACKTRACE` is set (and not
/// `0`), and one more `berth_panics_total`.
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let backtrace = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
        std::panic::set_hook(Box::new(move |info| {
            crate::metrics::global().panicked();
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("<unnamed>");
            let (msg, at) = describe(info);
            if backtrace {
                let bt = std::backtrace::Backtrace::force_capture();
                tracing::error!(thread = name, "panicked at {at}: {msg}\n{bt}");
            } else {
                tracing::error!(thread = name, "panicked at {at}: {msg}");
            }
        }));
    });
}

/// The message and `file:line:col` of a panic.
fn describe(info: &PanicHookInfo<'_>) -> (String, String) {
    let at = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_else(|| "<unknown>".into());
    (payload_text(info.payload()), at)
}

/// The text of a panic payload (`&str` or `String`; anything else unnamed).
pub fn payload_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".into()
    }
}

/// A tower layer that turns a panic in the inner service's call (or in its
/// future) into the response `on_panic` makes from the panic's message.
#[derive(Clone)]
pub struct CatchPanicLayer<F> {
    on_panic: F,
}

impl<F> CatchPanicLayer<F> {
    pub fn new(on_panic: F) -> Self {
        CatchPanicLayer { on_panic }
    }
}

impl<S, F: Clone> tower::Layer<S> for CatchPanicLayer<F> {
    type Service = CatchPanic<S, F>;
    fn layer(&self, inner: S) -> Self::Service {
        CatchPanic {
            inner,
            on_panic: self.on_panic.clone(),
        }
    }
}

/// The service of [`CatchPanicLayer`].
#[derive(Clone)]
pub struct CatchPanic<S, F> {
    inner: S,
    on_panic: F,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, F, Req, Res> tower::Service<Req> for CatchPanic<S, F>
where
    S: tower::Service<Req, Response = Res>,
    S::Future: Send + 'static,
    S::Error: 'static,
    F: Fn(String) -> Res + Clone + Send + 'static,
    Res: 'static,
{
    type Response = Res;
    type Error = S::Error;
    type Future = BoxFuture<Result<Res, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let on_panic = self.on_panic.clone();
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(fut) => Box::pin(async move {
                match AssertUnwindSafe(fut).catch_unwind().await {
                    Ok(res) => res,
                    Err(p) => Ok(on_panic(payload_text(&*p))),
                }
            }),
            Err(p) => {
                let msg = payload_text(&*p);
                Box::pin(async move { Ok(on_panic(msg)) })
            }
        }
    }
}

/// The answer to a Docker request whose handler panicked: 500 with
/// Docker's `{"message"}` (the hook has logged and counted it).
pub fn docker_response(msg: String) -> axum::response::Response {
    let body = serde_json::json!({
        "message": format!("internal error: berthd panicked while handling the request: {msg}")
    });
    (http::StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}

/// The answer to a streaming request whose handler panicked: a plain 500.
pub fn plain_response(msg: String) -> axum::response::Response {
    (
        http::StatusCode::INTERNAL_SERVER_ERROR,
        format!("internal error: berthd panicked while handling the request: {msg}\n"),
    )
        .into_response()
}

/// The answer to a CRI call whose handler panicked: `Internal`.
pub fn grpc_response(msg: String) -> http::Response<tonic::body::Body> {
    tonic::Status::internal(format!("berthd panicked while handling the call: {msg}")).into_http()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, Service, ServiceExt};

    #[tokio::test]
    async fn a_panicking_call_is_answered() {
        let svc = tower::service_fn(|n: u32| async move {
            if n == 7 {
                panic!("seven is not allowed");
            }
            Ok::<_, std::convert::Infallible>(format!("ok {n}"))
        });
        let mut svc = CatchPanicLayer::new(|m: String| format!("caught: {m}")).layer(svc);
        assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), "ok 1");
        assert_eq!(
            svc.ready().await.unwrap().call(7).await.unwrap(),
            "caught: seven is not allowed"
        );
        // The service still answers after a panic.
        assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), "ok 2");
    }

    /// A panicking axum handler is answered 500 with Docker's error shape,
    /// and the router keeps serving.
    #[tokio::test]
    async fn docker_handlers_that_panic_get_500() {
        use axum::routing::get;
        let app = axum::Router::new()
            .route(
                "/boom",
                get(|| async { panic!("handler bug") as &'static str }),
            )
            .route("/fine", get(|| async { "ok" }))
            .layer(CatchPanicLayer::new(docker_response));
        let req = |p: &str| {
            http::Request::get(p)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let res = app.clone().oneshot(req("/boom")).await.unwrap();
        assert_eq!(res.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains("handler bug"), "{msg}");
        let res = app.oneshot(req("/fine")).await.unwrap();
        assert_eq!(res.status(), http::StatusCode::OK);
    }

    #[test]
    fn grpc_panics_are_internal() {
        let res = grpc_response("x".into());
        assert_eq!(res.status(), http::StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "13");
    }

    #[test]
    fn payloads_are_read() {
        let p = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(payload_text(&*p), "static");
        let p = std::panic::catch_unwind(|| panic!("{}", 1 + 1)).unwrap_err();
        assert_eq!(payload_text(&*p), "2");
        let p = std::panic::catch_unwind(|| std::panic::panic_any(5u8)).unwrap_err();
        assert_eq!(payload_text(&*p), "<non-string panic payload>");
    }
}
