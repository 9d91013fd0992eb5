//! The CRI v1 front door: thin gRPC services over the engine.

pub mod authority;
pub mod convert;
pub mod deadline;
pub mod events;
pub mod image;
pub mod metrics;
pub mod runtime;

use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tonic::{Code, Status};
use tracing::warn;

use crate::engine::Engine;

/// Largest gRPC message accepted or sent (the kubelet uses 16 MiB).
const MAX_MESSAGE: usize = 16 << 20;

/// A tonic router serving both CRI services; `streaming` serves Exec,
/// Attach and PortForward.
pub fn router(
    engine: Arc<Engine>,
    streaming: Option<Arc<crate::streaming::Streaming>>,
) -> tonic::service::Routes {
    let mut rt = runtime::Runtime::new(engine.clone());
    if let Some(s) = streaming {
        rt = rt.with_streaming(s);
    }
    let runtime = RuntimeServiceServer::new(rt)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let images = ImageServiceServer::new(image::Images::new(engine))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    tonic::service::Routes::new(runtime).add_service(images)
}

/// Maps an image error onto a gRPC status, logging it once with its cause chain.
pub fn image_status(op: &str, e: crate::image::Error) -> Status {
    engine_status(op, e.into())
}

/// The longest error message sent back: a status travels in HTTP/2 headers,
/// and one that echoes a huge field would exceed the client's header limit
/// (it then sees a protocol error instead of the reason).
const MAX_STATUS_MESSAGE: usize = 4096;

/// `msg`, cut to [`MAX_STATUS_MESSAGE`] bytes at a character boundary.
pub fn bounded(mut msg: String) -> String {
    if msg.len() > MAX_STATUS_MESSAGE {
        let mut end = MAX_STATUS_MESSAGE;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        let total = msg.len();
        msg.truncate(end);
        msg.push_str(&format!("… ({total} bytes)"));
    }
    msg
}

/// Rewrites tonic's answer to a message that is not valid protobuf
/// (`Internal`, "failed to decode Protobuf message") to `InvalidArgument`:
/// the caller sent it.
pub fn decode_errors_are_invalid_argument<B>(mut res: http::Response<B>) -> http::Response<B> {
    let h = res.headers_mut();
    let internal = h.get("grpc-status").is_some_and(|v| v == "13");
    let decode = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| {
            m.starts_with("failed%20to%20decode") || m.starts_with("failed to decode")
        });
    if internal && decode {
        h.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
    res
}

/// The gRPC code of an engine error's kind: the one mapping of the CRI door.
pub fn engine_code(kind: crate::engine::ErrorKind) -> Code {
    use crate::engine::ErrorKind as K;
    match kind {
        K::NotFound => Code::NotFound,
        K::InvalidArgument => Code::InvalidArgument,
        K::FailedPrecondition | K::BadContent => Code::FailedPrecondition,
        K::AlreadyExists => Code::AlreadyExists,
        K::PermissionDenied => Code::PermissionDenied,
        K::Unauthenticated => Code::Unauthenticated,
        K::Unavailable => Code::Unavailable,
        K::Internal => Code::Internal,
    }
}

impl From<crate::engine::Error> for Status {
    fn from(e: crate::engine::Error) -> Self {
        engine_status("", e)
    }
}

/// Maps an engine error onto a gRPC status (`op: ` before its cause
/// chain), logging the chain once — the CRI door's edge.
pub fn engine_status(op: &str, e: crate::engine::Error) -> Status {
    let code = engine_code(e.kind());
    let msg = if op.is_empty() {
        bounded(e.chain())
    } else {
        bounded(format!("{op}: {}", e.chain()))
    };
    warn!(code = ?code, "{msg}");
    Status::new(code, msg)
}

/// An error and its sources, `a: b: c`, without repeating a cause already in the text.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_bounded() {
        let m = bounded("é".repeat(5000));
        assert!(m.len() < MAX_STATUS_MESSAGE + 32, "{}", m.len());
        assert!(m.ends_with("(10000 bytes)"), "{m}");
        assert_eq!(bounded("short".into()), "short");
    }

    #[test]
    fn decode_errors_become_invalid_argument() {
        let st = Status::internal("failed to decode Protobuf message: invalid varint");
        let res = decode_errors_are_invalid_argument(st.into_http::<tonic::body::Body>());
        assert_eq!(res.headers()["grpc-status"], "3");
        let other = Status::internal("disk on fire").into_http::<tonic::body::Body>();
        let res = decode_errors_are_invalid_argument(other);
        assert_eq!(res.headers()["grpc-status"], "13");
    }
}
