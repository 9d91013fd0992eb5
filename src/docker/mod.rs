//! The Docker Engine API façade: axum routes that translate Docker's REST
//! calls into engine calls on the same pods, containers and images that CRI
//! serves. A Docker container is a one-container pod sandbox.
//!
//! Paths are accepted unversioned and with a `/v1.NN` prefix (1.24 up to
//! [`API_VERSION`]); the prefix is stripped before routing, so every route is
//! declared once. Errors are `{"message": "..."}` with Docker's status codes.

pub mod archive;
pub mod build;
pub mod commit;
pub mod containers;
pub mod create;
pub mod error;
pub mod events;
pub mod exec;
pub mod filters;
pub mod hijack;
pub mod images;
pub mod logs;
pub mod model;
pub mod networks;
pub mod registry;
pub mod serve;
pub mod stats;
pub mod system;
pub mod time;
pub mod volumes;

use std::sync::Arc;

use axum::extract::Request;
use axum::Router;

use crate::engine::records::ContainerRecord;
use crate::engine::Engine;
pub use error::ApiError;

/// The API version berth speaks (Docker Engine 27).
pub const API_VERSION: &str = "1.47";
/// The oldest API version accepted.
pub const MIN_API_VERSION: &str = "1.24";

/// State shared by every Docker handler.
pub struct Docker {
    pub engine: Arc<Engine>,
}

pub type Shared = Arc<Docker>;

impl Docker {
    pub fn new(engine: Arc<Engine>) -> Shared {
        Arc::new(Docker { engine })
    }

    /// Ids of the exec instances of a container (inspect's `ExecIDs`).
    pub fn execs_of(&self, container_id: &str) -> Option<Vec<String>> {
        Some(self.engine.running_execs(container_id)).filter(|v| !v.is_empty())
    }

    /// Finds a container by full id, name or unique id prefix, as Docker
    /// does (the engine's one lookup): 404 `No such container`.
    pub fn container(&self, name_or_id: &str) -> Result<ContainerRecord, ApiError> {
        Ok(self.engine.find_container(name_or_id)?)
    }
}

/// Every Docker route, on unversioned paths, with request metrics.
pub fn router(docker: Shared) -> Router {
    Router::new()
        .merge(system::routes())
        .merge(events::routes())
        .merge(images::routes())
        .merge(registry::routes())
        .merge(build::routes())
        .merge(commit::routes())
        .merge(create::routes())
        .merge(containers::routes())
        .merge(logs::routes())
        .merge(stats::routes())
        .merge(archive::routes())
        .merge(exec::routes())
        .merge(hijack::routes())
        .merge(volumes::routes())
        .merge(networks::routes())
        .fallback(|req: Request| async move {
            ApiError::not_found(format!(
                "page not found: {} {}",
                req.method(),
                req.uri().path()
            ))
        })
        // Inside the metrics layer: a caught panic is counted as the 500 it became.
        .layer(crate::panics::CatchPanicLayer::new(
            crate::panics::docker_response,
        ))
        .layer(axum::middleware::from_fn(crate::metrics::track_docker))
        .with_state(docker)
}

/// The API version a request asked for (from its `/v1.NN` prefix), if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (a, b) = s.split_once('.')?;
        Some(ApiVersion(a.parse().ok()?, b.parse().ok()?))
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// Strips a `/v1.NN` prefix into an [`ApiVersion`] extension, or answers 400
/// for a version outside what berth speaks.
pub fn strip_version(mut req: Request) -> Result<Request, ApiError> {
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(req);
    };
    let (ver, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Some(v) = ApiVersion::parse(ver) else {
        return Ok(req);
    };
    let (min, max) = (
        ApiVersion::parse(MIN_API_VERSION).expect("valid"),
        ApiVersion::parse(API_VERSION).expect("valid"),
    );
    if v < min {
        return Err(ApiError::bad_request(format!(
            "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    if v > max {
        return Err(ApiError::bad_request(format!(
            "client version {v} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    let new = match req.uri().query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_string(),
    };
    *req.uri_mut() = new
        .parse()
        .map_err(|e| ApiError::bad_request(format!("bad request path: {e}")))?;
    req.extensions_mut().insert(v);
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn strip(uri: &str) -> Result<(String, Option<ApiVersion>), ApiError> {
        let req = Request::get(uri).body(Body::empty()).unwrap();
        strip_version(req).map(|r| {
            (
                r.uri().to_string(),
                r.extensions().get::<ApiVersion>().copied(),
            )
        })
    }

    #[test]
    fn version_prefixes_are_stripped_and_bounded() {
        assert_eq!(
            strip("/v1.43/containers/json?all=1").unwrap(),
            (
                "/containers/json?all=1".to_string(),
                Some(ApiVersion(1, 43))
            )
        );
        assert_eq!(strip("/_ping").unwrap(), ("/_ping".to_string(), None));
        assert_eq!(strip("/v1.24/info").unwrap().1, Some(ApiVersion(1, 24)));
        // A name that merely starts with v is not a version.
        assert_eq!(strip("/volumes").unwrap().0, "/volumes");
        let old = strip("/v1.12/info").unwrap_err();
        assert_eq!(old.status, http::StatusCode::BAD_REQUEST);
        assert!(old.message.contains("too old"), "{}", old.message);
        let new = strip("/v1.99/info").unwrap_err();
        assert!(new.message.contains("too new"), "{}", new.message);
    }
}
