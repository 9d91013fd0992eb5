//! Tests of the families, their encoding (checked by `promtool` when installed)
//! and the CRI layer driven through a real tonic service without sockets.

use std::future::poll_fn;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::time::Duration;

use http::HeaderMap;
use http_body::Body;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::{ImageService, ImageServiceServer};
use prost::Message;
use tonic::{Request, Response, Status};
use tower::{Layer, ServiceExt};

use super::*;

/// A registry of its own, so counts are not disturbed by other tests.
fn fresh() -> &'static Metrics {
    Box::leak(Box::new(Metrics::new()))
}

/// The value of the sample `name{labels}` (or `name` when `labels` is empty).
fn sample(m: &Metrics, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    m.encode()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.parse().unwrap()))
}

#[test]
fn families_have_help_and_type() {
    let m = fresh();
    m.observe_request("cri", "Version", "OK", Duration::from_millis(3));
    m.start_pull().success(1234);
    m.count_images_with(|| Some(7));
    let text = m.encode();
    for (name, kind) in [
        ("berth_requests_total", "counter"),
        ("berth_request_duration_seconds", "histogram"),
        ("berth_image_pulls_total", "counter"),
        ("berth_image_pull_bytes_total", "counter"),
        ("berth_image_pull_duration_seconds", "histogram"),
        ("berth_images", "gauge"),
        ("berth_build_info", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_cpu_seconds_total", "counter"),
        ("process_open_fds", "gauge"),
    ] {
        let help = format!("# HELP {name} ");
        let kind = format!("# TYPE {name} {kind}");
        assert!(
            text.lines().any(|l| l.starts_with(&help)),
            "no HELP for {name}:\n{text}"
        );
        assert!(text.lines().any(|l| l == kind), "no {kind}:\n{text}");
    }
    let version = format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"));
    assert_eq!(sample(m, "berth_build_info", &version), Some(1.0));
    assert_eq!(sample(m, "berth_images", ""), Some(7.0));
    let le = r#"api="cri",method="Version",le="0.005""#;
    assert_eq!(
        sample(m, "berth_request_duration_seconds_bucket", le),
        Some(1.0)
    );
}

#[test]
fn encoder_content_type_matches_the_endpoint() {
    use prometheus::Encoder;
    let format = TextEncoder::new().format_type().to_string();
    assert!(
        CONTENT_TYPE.starts_with(&format),
        "{format} vs {CONTENT_TYPE}"
    );
}

#[test]
fn pulls_count_success_failure_and_cancel() {
    let m = fresh();
    assert_eq!(
        sample(m, "berth_image_pulls_total", r#"result="failure""#),
        Some(0.0)
    );
    m.start_pull().success(100);
    m.start_pull().success(50);
    drop(m.start_pull());
    assert_eq!(
        sample(m, "berth_image_pulls_total", r#"result="success""#),
        Some(2.0)
    );
    assert_eq!(
        sample(m, "berth_image_pulls_total", r#"result="failure""#),
        Some(1.0)
    );
    assert_eq!(sample(m, "berth_image_pull_bytes_total", ""), Some(150.0));
    assert_eq!(
        sample(m, "berth_image_pull_duration_seconds_count", ""),
        Some(2.0)
    );
}

#[test]
fn image_gauge_keeps_its_last_value_when_the_source_cannot_tell() {
    let m = fresh();
    m.count_images_with(|| Some(3));
    assert_eq!(sample(m, "berth_images", ""), Some(3.0));
    m.count_images_with(|| None);
    assert_eq!(sample(m, "berth_images", ""), Some(3.0));
}

/// `promtool check metrics` (Debian's `prometheus` package) lints the exposition.
#[test]
fn promtool_finds_no_problem() {
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!("promtool not installed (apt-get install prometheus); skipping");
        return;
    }
    let m = fresh();
    m.observe_request("cri", "PullImage", "NotFound", Duration::from_millis(20));
    m.observe_request(
        "docker",
        "GET /{version}/containers/json",
        "200",
        Duration::from_millis(2),
    );
    m.start_pull().success(4096);
    drop(m.start_pull());
    m.count_images_with(|| Some(1));
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(m.encode().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}\n{}",
        m.encode()
    );
}

/// A CRI ImageService whose answers the layer tests look at.
struct FakeImages;

#[tonic::async_trait]
impl ImageService for FakeImages {
    async fn list_images(
        &self,
        _: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        Ok(Response::new(cri::ListImagesResponse::default()))
    }
    async fn image_status(
        &self,
        _: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        std::future::pending().await
    }
    async fn pull_image(
        &self,
        _: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        Err(Status::not_found("no such image"))
    }
    async fn remove_image(
        &self,
        _: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        Err(Status::unimplemented("remove"))
    }
    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        Err(Status::unimplemented("fs info"))
    }
}

/// A gRPC request for `method` carrying `msg`, framed as on the wire.
fn grpc_request(method: &str, msg: impl Message) -> http::Request<tonic::body::Body> {
    let payload = msg.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    http::Request::post(format!("/runtime.v1.ImageService/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(axum::body::Body::from(frame)))
        .unwrap()
}

/// Reads a body to its end as hyper would, returning its trailers.
async fn drain<B: Body + Unpin>(mut body: B) -> Option<HeaderMap> {
    let mut trailers = None;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(frame) = frame else { break };
        if let Ok(t) = frame.into_trailers() {
            trailers = Some(t);
        }
    }
    trailers
}

fn requests(m: &Metrics, method: &str, code: &str) -> Option<f64> {
    let labels = format!(r#"api="cri",code="{code}",method="{method}""#);
    sample(m, "berth_requests_total", &labels)
}

#[tokio::test]
async fn layer_records_status_from_trailers_and_headers() {
    let m = fresh();
    let svc = GrpcMetricsLayer::with(m).layer(ImageServiceServer::new(FakeImages));

    // Success: status 0 arrives in the trailers, after the body.
    let res = svc
        .clone()
        .oneshot(grpc_request(
            "ListImages",
            cri::ListImagesRequest::default(),
        ))
        .await
        .unwrap();
    assert!(res.headers().get("grpc-status").is_none());
    assert_eq!(
        requests(m, "ListImages", "OK"),
        None,
        "recorded before the body ended"
    );
    let trailers = drain(res.into_body()).await.expect("trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(requests(m, "ListImages", "OK"), Some(1.0));

    // Failure: a trailers-only response, status in the headers.
    let res = svc
        .clone()
        .oneshot(grpc_request("PullImage", cri::PullImageRequest::default()))
        .await
        .unwrap();
    assert_eq!(requests(m, "PullImage", "NotFound"), Some(1.0));
    drain(res.into_body()).await;
    assert_eq!(
        requests(m, "PullImage", "NotFound"),
        Some(1.0),
        "recorded twice"
    );

    let count = r#"api="cri",method="PullImage""#;
    assert_eq!(
        sample(m, "berth_request_duration_seconds_count", count),
        Some(1.0)
    );
}

#[tokio::test]
async fn layer_records_a_dropped_call_as_canceled() {
    let m = fresh();
    let svc = GrpcMetricsLayer::with(m).layer(ImageServiceServer::new(FakeImages));
    let call = svc.oneshot(grpc_request(
        "ImageStatus",
        cri::ImageStatusRequest::default(),
    ));
    let timed_out = tokio::time::timeout(Duration::from_millis(20), call).await;
    assert!(timed_out.is_err(), "the fake ImageStatus never answers");
    assert_eq!(requests(m, "ImageStatus", "Canceled"), Some(1.0));
}

#[tokio::test]
async fn layer_treats_a_response_without_status_as_ok() {
    let m = fresh();
    let inner = tower::service_fn(|_req: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
    });
    let svc = GrpcMetricsLayer::with(m).layer(inner);
    let req = http::Request::post("/runtime.v1.RuntimeService/Version")
        .body(())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    // hyper never polls an empty body; dropping it must not count a cancel.
    drop(res);
    assert_eq!(requests(m, "Version", "OK"), Some(1.0));
    assert_eq!(requests(m, "Version", "Canceled"), None);
}
