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
use crate::image::Kind;

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
    let code = image_code(&e);
    let msg = format!("{op}: {}", chain(&e));
    warn!(code = ?code, "{msg}");
    Status::new(code, msg)
}

fn image_code(e: &crate::image::Error) -> Code {
    match e.kind() {
        Kind::NotFound => Code::NotFound,
        Kind::InvalidArgument => Code::InvalidArgument,
        Kind::Unauthenticated => Code::Unauthenticated,
        Kind::PermissionDenied => Code::PermissionDenied,
        Kind::BadContent => Code::FailedPrecondition,
        Kind::Unavailable => Code::Unavailable,
        Kind::Internal => Code::Internal,
    }
}

/// Maps an engine error onto a gRPC status, logging it once.
pub fn engine_status(op: &str, e: crate::engine::Error) -> Status {
    use crate::engine::Error as E;
    let code = match &e {
        E::NotFound(_) => Code::NotFound,
        E::InvalidArgument(_) | E::Spec(_) => Code::InvalidArgument,
        E::FailedPrecondition(_) => Code::FailedPrecondition,
        E::AlreadyExists(_) => Code::AlreadyExists,
        E::Image(i) => image_code(i),
        E::Runtime { .. } | E::Internal(_) | E::Store(_) => Code::Internal,
    };
    let msg = format!("{op}: {}", chain(&e));
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
