//! A tower layer for the tonic server: a tracing span per CRI call, and the
//! request counter and latency histogram with `api="cri"`.
//!
//! gRPC carries its result in `grpc-status`: in the response headers when the
//! handler failed (a "trailers-only" response, as tonic sends for a unary error),
//! otherwise in the trailers after the body. So a call is recorded when the
//! headers carry a status, else when the body yields its trailers, ends, or is
//! dropped (a client that went away: `Canceled`). The duration therefore covers a
//! server-streaming call such as `GetContainerEvents` to its end.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tower::{Layer, Service};
use tracing::field::Empty;
use tracing::{debug, info_span, Instrument, Span};

use super::Metrics;

/// Wraps a tonic service with [`GrpcMetrics`].
#[derive(Clone, Copy)]
pub struct GrpcMetricsLayer {
    metrics: &'static Metrics,
}

impl GrpcMetricsLayer {
    /// Records into the process-wide [`super::global()`] metrics.
    pub fn new() -> Self {
        Self::with(super::global())
    }

    /// Records into `metrics`.
    pub fn with(metrics: &'static Metrics) -> Self {
        GrpcMetricsLayer { metrics }
    }
}

impl Default for GrpcMetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            metrics: self.metrics,
        }
    }
}

/// The service [`GrpcMetricsLayer`] makes.
#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: &'static Metrics,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = Response<RecordedBody<ResBody>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let method = method_name(req.uri().path());
        // Handlers fill in the ids they learn: `Span::current().record("pod", id)`.
        let span = info_span!(
            "cri",
            method = %method,
            pod = Empty,
            container = Empty,
            image = Empty
        );
        let mut call = Call {
            metrics: self.metrics,
            method,
            started: Instant::now(),
            span: span.clone(),
            done: false,
        };
        let fut = span.in_scope(|| self.inner.call(req));
        Box::pin(
            async move {
                let res = match fut.await {
                    Ok(res) => res,
                    Err(e) => {
                        call.finish(Code::Unknown);
                        return Err(e);
                    }
                };
                if let Some(code) = status_of(res.headers()) {
                    call.finish(code);
                }
                Ok(res.map(|inner| RecordedBody { inner, call }))
            }
            .instrument(span),
        )
    }
}

/// A response body that records its call when the gRPC status is known.
pub struct RecordedBody<B: Body> {
    inner: B,
    call: Call,
}

impl<B: Body + Unpin> Body for RecordedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.call.finish(status_of(trailers).unwrap_or(Code::Ok));
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.finish(Code::Unknown),
            Poll::Ready(None) => this.call.finish(Code::Ok),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for RecordedBody<B> {
    fn drop(&mut self) {
        // An empty body is never polled; one dropped half-read lost its client.
        let code = if self.inner.is_end_stream() {
            Code::Ok
        } else {
            Code::Cancelled
        };
        self.call.finish(code);
    }
}

/// One call in flight; recorded once, by `finish` or, failing that, on drop.
struct Call {
    metrics: &'static Metrics,
    method: String,
    started: Instant,
    span: Span,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        let code = code_name(code);
        self.metrics
            .observe_request("cri", &self.method, code, elapsed);
        self.span.in_scope(|| {
            debug!(
                code,
                elapsed_ms = elapsed.as_secs_f64() * 1e3,
                "CRI call finished"
            );
        });
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // The response future was dropped before it produced headers.
        self.finish(Code::Cancelled);
    }
}

/// The `grpc-status` in `headers`, if there is one.
fn status_of(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// `PullImage` from `/runtime.v1.ImageService/PullImage`. Anything that is not a
/// CRI method becomes `unknown`, so a client cannot mint label values at will.
fn method_name(path: &str) -> String {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (service, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let known = service.starts_with("runtime.v1.")
        && !method.is_empty()
        && method.len() <= 64
        && method.bytes().all(|b| b.is_ascii_alphanumeric());
    if known {
        method.to_string()
    } else {
        "unknown".to_string()
    }
}

/// A gRPC code's canonical name, as other gRPC servers' metrics spell it.
pub(super) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_are_cri_methods_or_unknown() {
        assert_eq!(
            method_name("/runtime.v1.ImageService/PullImage"),
            "PullImage"
        );
        assert_eq!(method_name("/runtime.v1.RuntimeService/Version"), "Version");
        assert_eq!(method_name("/grpc.health.v1.Health/Check"), "unknown");
        assert_eq!(method_name("/runtime.v1.RuntimeService/a-b"), "unknown");
        assert_eq!(method_name("/runtime.v1.RuntimeService/"), "unknown");
        assert_eq!(method_name("/"), "unknown");
    }

    #[test]
    fn status_comes_from_grpc_status() {
        let mut h = HeaderMap::new();
        assert_eq!(status_of(&h), None);
        h.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(status_of(&h), Some(Code::NotFound));
        assert_eq!(code_name(Code::NotFound), "NotFound");
        h.insert("grpc-status", "junk".parse().unwrap());
        assert_eq!(status_of(&h), Some(Code::Unknown));
    }
}
