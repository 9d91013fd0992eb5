//! Client deadlines (`grpc-timeout`) answered with DEADLINE_EXCEEDED, as the
//! gRPC spec and the kubelet expect. tonic's own timeout answers CANCELLED;
//! this layer sits inside it with a deadline 1 ms shorter, so it answers
//! first and the call is dropped (cancelling what it was doing).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tower::{Layer, Service};

/// Wraps a service with [`Deadline`].
#[derive(Clone, Copy, Default)]
pub struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline { inner }
    }
}

/// The service [`DeadlineLayer`] makes.
#[derive(Clone)]
pub struct Deadline<S> {
    inner: S,
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Deadline<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let limit = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_timeout);
        let fut = self.inner.call(req);
        let Some(limit) = limit else {
            return Box::pin(fut);
        };
        let limit = limit.saturating_sub(Duration::from_millis(1));
        Box::pin(async move {
            match tokio::time::timeout(limit, fut).await {
                Ok(res) => res,
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "the client's deadline of {limit:?} passed"
                ))
                .into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("996u"), Some(Duration::from_micros(996)));
        assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("123456789S"), None);
        assert_eq!(parse_timeout("5x"), None);
        assert_eq!(parse_timeout(""), None);
        assert_eq!(parse_timeout("S"), None);
    }

    #[tokio::test]
    async fn an_expired_deadline_is_deadline_exceeded() {
        let slow = tower::service_fn(|_req: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, std::convert::Infallible>(Response::new(tonic::body::Body::default()))
        });
        let mut svc = DeadlineLayer.layer(slow);
        let req = Request::builder()
            .header("grpc-timeout", "20m")
            .body(())
            .unwrap();
        let res = svc.call(req).await.unwrap();
        assert_eq!(
            res.headers().get("grpc-status").map(|v| v.as_bytes()),
            Some(b"4".as_slice()),
            "DEADLINE_EXCEEDED"
        );
        let fast = tower::service_fn(|_req: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(tonic::body::Body::default()))
        });
        let mut svc = DeadlineLayer.layer(fast);
        let req = Request::builder()
            .header("grpc-timeout", "5S")
            .body(())
            .unwrap();
        let res = svc.call(req).await.unwrap();
        assert!(res.headers().get("grpc-status").is_none());
    }
}
