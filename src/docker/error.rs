//! Docker's error shape: `{"message": "..."}` with the status code Docker
//! uses for the case (404 no such object, 409 conflict, 400 bad parameter).

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use tracing::warn;

use crate::engine;

/// An error answered to a Docker client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, m)
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, m)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            warn!(code = self.status.as_u16(), "{}", self.message);
        }
        (
            self.status,
            Json(serde_json::json!({ "message": self.message })),
        )
            .into_response()
    }
}

impl From<engine::Error> for ApiError {
    /// The one mapping of the Docker door: the kind picks the status, the
    /// message is the error with its causes (logged once, for 5xx, when the
    /// response goes out).
    fn from(e: engine::Error) -> Self {
        ApiError::new(status_of(e.kind()), e.chain())
    }
}

impl From<crate::image::Error> for ApiError {
    fn from(e: crate::image::Error) -> Self {
        engine::Error::from(e).into()
    }
}

/// Docker's status for an engine error's kind.
fn status_of(kind: engine::ErrorKind) -> StatusCode {
    use engine::ErrorKind as K;
    match kind {
        K::NotFound => StatusCode::NOT_FOUND,
        K::InvalidArgument | K::BadContent => StatusCode::BAD_REQUEST,
        K::FailedPrecondition | K::AlreadyExists => StatusCode::CONFLICT,
        K::PermissionDenied => StatusCode::FORBIDDEN,
        K::Unauthenticated => StatusCode::UNAUTHORIZED,
        K::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A JSON body extractor whose rejection is a Docker error (400 with the
/// parser's message) instead of axum's plain-text one.
pub struct DockerJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for DockerJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("failed to read request body: {e}")))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return serde_json::from_slice(b"{}")
                .map(DockerJson)
                .map_err(|e| ApiError::bad_request(format!("empty request body: {e}")));
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de)
            .map(DockerJson)
            .map_err(|e| {
                ApiError::bad_request(format!("invalid JSON at {}: {}", e.path(), e.inner()))
            })
    }
}

/// Query parameters with Docker errors; Docker's booleans (`1`, `true`,
/// `True`, `0`, `false`, empty) are read by [`flag`].
pub struct Query<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_compat(q)
            .map(Query)
            .map_err(|e| ApiError::bad_request(format!("invalid query parameters: {e}")))
    }
}

fn serde_urlencoded_compat<T: serde::de::DeserializeOwned>(q: &str) -> Result<T, String> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{q}")
            .parse::<http::Uri>()
            .map_err(|e| e.to_string())?,
    )
    .map(|axum::extract::Query(t)| t)
    .map_err(|e| e.body_text())
}

/// Docker's boolean query values: `1`/`true`/`True`/`yes` are true.
pub fn flag(v: &Option<String>) -> bool {
    v.as_deref()
        .is_some_and(|s| matches!(s.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_docker_codes() {
        let e: ApiError = engine::Error::NotFound("x".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e: ApiError = engine::Error::FailedPrecondition("x".into()).into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        let e: ApiError = engine::Error::InvalidArgument("x".into()).into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn flags_read_docker_booleans() {
        for t in ["1", "true", "True", "yes"] {
            assert!(flag(&Some(t.into())), "{t}");
        }
        for f in ["0", "false", "", "no"] {
            assert!(!flag(&Some(f.into())), "{f}");
        }
        assert!(!flag(&None));
    }
}
