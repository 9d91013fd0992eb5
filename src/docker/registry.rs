//! Docker's registry endpoints that store nothing: `POST /auth` (login),
//! `GET /images/search` and `GET /distribution/{name}/json`. The image
//! service talks to the registry; this translates the request and renders
//! the answer as Docker does.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{DockerJson, Query};
use super::filters::{check_filter_keys, parse_filters};
use super::images::pull::registry_auth;
use super::{ApiError, Shared};
use crate::image::auth::Credentials;
use crate::image::remote::SearchResult;
use crate::image::Reference;

/// Search results when `limit` is not given, and the most Docker allows.
const DEFAULT_LIMIT: usize = 25;
const MAX_LIMIT: usize = 100;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/auth", post(login))
        .route("/images/search", get(search))
        .route("/distribution/{*rest}", get(distribution))
}

/// The body of `POST /auth` (Docker's `AuthConfig`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuthBody {
    username: String,
    password: String,
    auth: String,
    #[allow(dead_code)]
    email: String,
    serveraddress: String,
    identitytoken: String,
    registrytoken: String,
}

/// `POST /auth`: checks the credentials against the registry.
async fn login(
    State(docker): State<Shared>,
    DockerJson(b): DockerJson<AuthBody>,
) -> Result<Response, ApiError> {
    let creds = Credentials::from_parts(
        &b.username,
        &b.password,
        &b.auth,
        &b.identitytoken,
        &b.registrytoken,
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if creds == Credentials::Anonymous {
        return Err(ApiError::bad_request(
            "login needs a username and password (or an identity token)",
        ));
    }
    let (_, token) = docker.engine.images.login(&b.serveraddress, &creds).await?;
    Ok(Json(json!({
        "Status": "Login Succeeded",
        "IdentityToken": token.unwrap_or_default(),
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    #[serde(default)]
    term: String,
    limit: Option<String>,
    filters: Option<String>,
}

/// `GET /images/search?term=&limit=&filters=`.
async fn search(
    State(docker): State<Shared>,
    Query(q): Query<SearchQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let term = q.term.trim();
    if term.is_empty() {
        return Err(ApiError::bad_request("a search term is required"));
    }
    let limit = match q.limit.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(s) => match s.parse::<usize>() {
            // Docker's default for 0 as for no limit.
            Ok(0) => DEFAULT_LIMIT,
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit {s:?} is outside the accepted range: 0 to {MAX_LIMIT}"
                )))
            }
        },
    };
    let keep = SearchFilter::parse(q.filters.as_deref())?;
    let found = docker
        .engine
        .images
        .search(term, limit, &registry_auth(&headers))
        .await?;
    let hits: Vec<&SearchResult> = found.iter().filter(|r| keep.keeps(r)).collect();
    Ok(Json(hits).into_response())
}

/// The `filters` of a search: `is-official`, `is-automated`, `stars`.
#[derive(Debug, Default, PartialEq)]
struct SearchFilter {
    official: Option<bool>,
    automated: Option<bool>,
    stars: u64,
}

impl SearchFilter {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let f = parse_filters(raw)?;
        check_filter_keys(&f, &["is-official", "is-automated", "stars"])?;
        let flag = |key: &str| -> Result<Option<bool>, ApiError> {
            match f.get(key).and_then(|v| v.first()) {
                None => Ok(None),
                Some(v) => match v.as_str() {
                    "true" | "1" => Ok(Some(true)),
                    "false" | "0" => Ok(Some(false)),
                    other => Err(ApiError::bad_request(format!(
                        "invalid filter '{key}={other}'"
                    ))),
                },
            }
        };
        let stars = match f.get("stars").and_then(|v| v.first()) {
            None => 0,
            Some(s) => s
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid filter 'stars={s}'")))?,
        };
        Ok(SearchFilter {
            official: flag("is-official")?,
            automated: flag("is-automated")?,
            stars,
        })
    }

    fn keeps(&self, r: &SearchResult) -> bool {
        self.official.is_none_or(|o| r.is_official == o)
            && self.automated.is_none_or(|a| r.is_automated == a)
            && r.star_count >= self.stars
    }
}

/// `GET /distribution/{name}/json`: the descriptor and platforms of a
/// remote image (compose asks before it pulls).
async fn distribution(
    State(docker): State<Shared>,
    Path(rest): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(name) = rest
        .trim_start_matches('/')
        .strip_suffix("/json")
        .filter(|n| !n.is_empty())
    else {
        return Err(ApiError::not_found(format!(
            "page not found: GET /distribution/{rest}"
        )));
    };
    let r = Reference::parse(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let d = docker
        .engine
        .images
        .describe(&r.to_string(), &registry_auth(&headers))
        .await?;
    let platforms: Vec<Value> = d
        .platforms
        .iter()
        .map(|p| {
            let mut v = json!({"architecture": p.architecture, "os": p.os});
            if let Some(var) = &p.variant {
                v["variant"] = json!(var);
            }
            v
        })
        .collect();
    Ok(Json(json!({
        "Descriptor": {
            "mediaType": d.media_type,
            "digest": d.digest.to_string(),
            "size": d.size,
        },
        "Platforms": platforms,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(official: bool, stars: u64) -> SearchResult {
        SearchResult {
            name: "n".into(),
            description: String::new(),
            star_count: stars,
            is_official: official,
            is_automated: false,
        }
    }

    #[test]
    fn search_filters() {
        assert_eq!(SearchFilter::parse(None).unwrap(), SearchFilter::default());
        let f = SearchFilter::parse(Some(r#"{"is-official":["true"],"stars":["3"]}"#)).unwrap();
        assert!(f.keeps(&hit(true, 3)));
        assert!(!f.keeps(&hit(true, 2)));
        assert!(!f.keeps(&hit(false, 9)));
        let old = SearchFilter::parse(Some(r#"{"is-official":{"false":true}}"#)).unwrap();
        assert!(old.keeps(&hit(false, 0)) && !old.keeps(&hit(true, 0)));
        for bad in [
            r#"{"stars":["many"]}"#,
            r#"{"is-official":["maybe"]}"#,
            r#"{"label":["a"]}"#,
        ] {
            let e = SearchFilter::parse(Some(bad)).unwrap_err();
            assert_eq!(e.status, http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
