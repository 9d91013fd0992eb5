//! axum middleware for the Docker API façade: a tracing span per request and the
//! request counter and latency histogram with `api="docker"`.
//!
//! Use it with `Router::layer(axum::middleware::from_fn(metrics::track_docker))`,
//! which runs after routing, so the matched route (`/containers/{id}/json`), not
//! the raw path, names the request. The duration runs to the response headers:
//! attach, logs and events stream their bodies for as long as the client stays.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::Method;
use tracing::field::Empty;
use tracing::{debug, info_span, Instrument};

/// Records one Docker API request into the process-wide metrics.
pub async fn track_docker(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = format!("{} {route}", method_label(req.method()));
    // Handlers fill in the ids they learn: `Span::current().record("container", id)`.
    let span = info_span!(
        "docker",
        method = %req.method(),
        route = %route,
        container = Empty,
        image = Empty
    );
    let started = Instant::now();
    let res = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let code = res.status();
    super::global().observe_request("docker", &method, code.as_str(), elapsed);
    span.in_scope(|| {
        debug!(
            code = code.as_u16(),
            elapsed_ms = elapsed.as_secs_f64() * 1e3,
            "Docker request finished"
        );
    });
    res
}

/// The method as a label: the standard ones by name, anything else as `OTHER`,
/// so a client cannot mint label values at will.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    fn count(name: &str, labels: &str) -> u64 {
        let line = format!("{name}{{{labels}}} ");
        super::super::encode()
            .lines()
            .find_map(|l| l.strip_prefix(&line).map(|v| v.parse().unwrap()))
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn records_the_matched_route_and_status() {
        let app = Router::new()
            .route("/{version}/containers/{id}/json", get(|| async { "{}" }))
            .layer(axum::middleware::from_fn(track_docker));
        let labels = r#"api="docker",code="200",method="GET /{version}/containers/{id}/json""#;
        let unmatched = r#"api="docker",code="404",method="GET unmatched""#;
        let before = (
            count("berth_requests_total", labels),
            count("berth_requests_total", unmatched),
        );
        for uri in ["/v1.43/containers/abc/json", "/v1.43/nope"] {
            let req = http::Request::get(uri).body(Body::empty()).unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        assert_eq!(count("berth_requests_total", labels), before.0 + 1);
        assert_eq!(count("berth_requests_total", unmatched), before.1 + 1);
    }

    #[test]
    fn odd_methods_are_other() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
    }
}
