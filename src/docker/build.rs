//! `POST /build` (Docker's classic builder) and `POST /build/prune`: the
//! query parameters become [`BuildOptions`], the request body (the context
//! tar) is handed to the engine as it arrives, and the engine's progress
//! goes out as Docker's JSON message stream.

use std::collections::HashMap;
use std::io;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use futures::StreamExt;
use http::header;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::events::async_stream;
use super::images::json_line;
use super::images::transfer::ChannelReader;
use super::{ApiError, Shared};
use crate::build::progress::Message;
use crate::engine::build::{BuildOptions, Progress};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/build", post(build))
        .route("/build/prune", post(prune))
}

fn truthy(v: &str) -> Result<bool, ApiError> {
    match v {
        "1" | "true" | "True" | "TRUE" => Ok(true),
        "" | "0" | "false" | "False" | "FALSE" => Ok(false),
        other => Err(ApiError::bad_request(format!(
            "invalid boolean value {other:?}"
        ))),
    }
}

/// The build options from the query string.
pub fn options(pairs: &[(String, String)]) -> Result<(BuildOptions, bool), ApiError> {
    let mut o = BuildOptions {
        rm: true,
        ..Default::default()
    };
    let mut quiet = false;
    for (k, v) in pairs {
        match k.as_str() {
            "dockerfile" => o.dockerfile = v.clone(),
            "t" if !v.is_empty() => o.tags.push(v.clone()),
            "buildargs" if !v.is_empty() => {
                o.build_args = serde_json::from_str::<HashMap<String, Option<String>>>(v)
                    .map_err(|e| ApiError::bad_request(format!("invalid buildargs: {e}")))?
            }
            "labels" if !v.is_empty() => {
                o.labels = serde_json::from_str(v)
                    .map_err(|e| ApiError::bad_request(format!("invalid labels: {e}")))?
            }
            "target" => o.target = Some(v.clone()).filter(|t| !t.is_empty()),
            "nocache" => o.no_cache = truthy(v)?,
            "rm" => o.rm = truthy(v)?,
            "forcerm" => o.force_rm = truthy(v)?,
            "pull" => o.pull = truthy(v)?,
            "networkmode" => o.network_mode = v.clone(),
            "q" => quiet = truthy(v)?,
            "remote" if !v.is_empty() => {
                return Err(ApiError::bad_request(
                    "remote build contexts (remote=) are not supported; send the context as the body",
                ))
            }
            "version" if v == "2" => {
                return Err(ApiError::bad_request(
                    "BuildKit (version=2) is not supported; berth runs the classic builder (DOCKER_BUILDKIT=0)",
                ))
            }
            // cachefrom, platform, memory, cpu*, shmsize, ulimits, extrahosts,
            // squash, outputs, session, buildid: accepted and not acted on.
            _ => {}
        }
    }
    Ok((o, quiet))
}

async fn build(State(d): State<Shared>, uri: http::Uri, body: Body) -> Result<Response, ApiError> {
    let pairs = super::images::transfer::query_pairs(&uri)?;
    let (opts, quiet) = options(&pairs)?;
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(16);
    let engine = d.engine.clone();
    let unpacking = tokio::spawn(async move { engine.build_context(ChannelReader::new(rx)).await });
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(io::Error::other);
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    let context = unpacking
        .await
        .map_err(|e| ApiError::internal(format!("build context reader failed: {e}")))??;
    let engine = d.engine.clone();
    let out = async_stream(move |out| async move {
        let (ptx, mut prx) = mpsc::channel::<Message>(64);
        let progress = Progress::new(ptx, quiet);
        let building = tokio::spawn(async move {
            let r = engine.build(context.path(), &opts, &progress).await;
            if let Err(f) = &r {
                progress
                    .send(Message::Error {
                        code: f.code,
                        message: f.message.clone(),
                    })
                    .await;
            }
            drop(context);
        });
        while let Some(m) = prx.recv().await {
            if out.send(json_line(&m.to_json())).await.is_err() {
                // The client left; the build still finishes (and is cached).
                continue;
            }
        }
        let _ = building.await;
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

async fn prune(State(d): State<Shared>) -> Result<Json<Value>, ApiError> {
    let (ids, bytes) = d.engine.prune_build_cache().await?;
    Ok(Json(json!({"CachesDeleted": ids, "SpaceReclaimed": bytes})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(q: &[(&str, &str)]) -> Result<(BuildOptions, bool), ApiError> {
        let v: Vec<(String, String)> = q
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        options(&v)
    }

    #[test]
    fn query_parameters() {
        let (o, q) = p(&[
            ("t", "a:1"),
            ("t", "b"),
            ("dockerfile", "sub/Dockerfile.x"),
            ("buildargs", r#"{"A":"1","B":null}"#),
            ("labels", r#"{"l":"v"}"#),
            ("target", "build"),
            ("nocache", "1"),
            ("rm", "0"),
            ("forcerm", "1"),
            ("pull", "true"),
            ("networkmode", "host"),
            ("q", "1"),
            ("cachefrom", "[]"),
        ])
        .unwrap();
        assert!(q);
        assert_eq!(o.tags, vec!["a:1", "b"]);
        assert_eq!(o.dockerfile, "sub/Dockerfile.x");
        assert_eq!(o.build_args.get("A"), Some(&Some("1".to_string())));
        assert_eq!(o.build_args.get("B"), Some(&None));
        assert_eq!(o.labels.get("l").map(String::as_str), Some("v"));
        assert_eq!(o.target.as_deref(), Some("build"));
        assert!(o.no_cache && !o.rm && o.force_rm && o.pull);
        assert_eq!(o.network_mode, "host");
        let (o, q) = p(&[]).unwrap();
        assert!(o.rm && !q && o.tags.is_empty());
        assert!(p(&[("buildargs", "nope")]).is_err());
        assert!(p(&[("nocache", "maybe")]).is_err());
        assert!(p(&[("version", "2")]).is_err());
        assert!(p(&[("remote", "https://x/y.git")]).is_err());
    }
}
