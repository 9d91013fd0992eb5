//! `POST /commit`, `GET /containers/{id}/changes` and `GET
//! /containers/{id}/export`: requests translated into the engine's commit,
//! changes and export operations (`engine::commit`), answers rendered as
//! Docker renders them.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::images::repo_tag;
use super::images::transfer::query_pairs;
use super::{ApiError, Shared};
use crate::engine::commit::CommitOptions;
use crate::engine::records::ContainerRecord;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/commit", post(commit))
        .route("/containers/{id}/changes", get(changes))
        .route("/containers/{id}/export", get(export))
}

/// The run config keys a commit keeps from the container's create request.
const RUN_KEYS: [&str; 10] = [
    "Cmd",
    "Entrypoint",
    "Env",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
];

/// The container's run config as its Docker create request set it (only
/// what it set: the rest comes from the image).
fn run_config(rec: &ContainerRecord) -> Option<Map<String, Value>> {
    let stored: Value = rec
        .config
        .annotations
        .get(crate::engine::docker::CONFIG_ANNOTATION)
        .and_then(|s| serde_json::from_str(s).ok())?;
    let mut out = Map::new();
    for k in RUN_KEYS {
        match stored.get(k) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(v) => {
                out.insert(k.to_string(), v.clone());
            }
        }
    }
    Some(out)
}

/// `POST /commit?container=&repo=&tag=&author=&comment=&pause=&changes=…`:
/// 201 with the new image's id.
async fn commit(State(d): State<Shared>, uri: http::Uri) -> Result<Response, ApiError> {
    let pairs = query_pairs(&uri)?;
    let one = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let container = one("container").unwrap_or_default();
    if container.is_empty() {
        return Err(ApiError::bad_request("no container given to commit"));
    }
    let rec = d.container(&container)?;
    let mut names = Vec::new();
    if let Some(repo) = one("repo").filter(|r| !r.is_empty()) {
        let r = repo_tag(&repo, one("tag").as_deref())?;
        if r.familiar_name() == "sha256" {
            return Err(ApiError::bad_request(
                "refusing to create an ambiguous tag using digest algorithm as name",
            ));
        }
        names.push(r.tagged().unwrap_or_else(|| format!("{}:latest", r.name())));
    } else if one("tag").is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad_request("a tag needs a repository"));
    }
    let pause = !matches!(
        one("pause")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("0" | "false" | "no")
    );
    let opts = CommitOptions {
        names,
        author: one("author").unwrap_or_default(),
        comment: one("comment").unwrap_or_default(),
        changes: pairs
            .iter()
            .filter(|(k, _)| k == "changes")
            .map(|(_, v)| v.clone())
            .collect(),
        pause,
        run_config: run_config(&rec),
    };
    let image = d.engine.commit_container(&rec.id, opts).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": image.id.to_string()})),
    )
        .into_response())
}

/// `GET /containers/{id}/changes`: `[{"Path", "Kind"}]`, or null for none.
async fn changes(State(d): State<Shared>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let rec = d.container(&id)?;
    let list = d.engine.container_changes(&rec.id).await?;
    if list.is_empty() {
        return Ok(Json(Value::Null));
    }
    Ok(Json(Value::Array(
        list.iter()
            .map(|c| json!({"Path": c.path, "Kind": c.kind.code()}))
            .collect(),
    )))
}

/// `GET /containers/{id}/export`: the merged root file system as a tar.
async fn export(State(d): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let rec = d.container(&id)?;
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let engine = d.engine.clone();
    let cid = rec.id.clone();
    tokio::spawn(async move {
        let w = std::io::BufWriter::with_capacity(64 << 10, ChannelWriter { tx });
        if let Err(e) = engine.export_container(&cid, w).await {
            // The 200 is out: the truncated tar tells the client.
            tracing::warn!(container = %cid, "failed to export: {e:#}");
        }
    });
    let body = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/x-tar")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::internal(format!("failed to build the export response: {e}")))
}

/// Sends written bytes to an async body; fails once the client left.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
