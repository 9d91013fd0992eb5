//! `docker cp`: `HEAD`, `GET` and `PUT /containers/{id}/archive?path=`.
//! The file system side (Docker's stat, the tar, extraction, paths resolved
//! inside the root as a chroot would) is [`crate::storage::cp`]; this is
//! the routes, Docker's errors and the streaming of the bodies.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::error::{flag, Query};
use super::{time, ApiError, Shared};
use crate::engine::records::ContainerRecord;

/// The header carrying a path's stat, base64 of JSON.
pub const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

use crate::storage::cp::{extract, locate, write_tar, ExtractError, PathStat};

pub fn routes() -> Router<Shared> {
    Router::new().route(
        "/containers/{id}/archive",
        get(get_archive).head(head_archive).put(put_archive),
    )
}

#[derive(Deserialize)]
struct Params {
    path: Option<String>,
    #[serde(rename = "noOverwriteDirNonDir")]
    no_overwrite_dir_non_dir: Option<String>,
}

fn required_path(p: &Params) -> Result<String, ApiError> {
    p.path
        .clone()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request("bad parameter: path cannot be empty"))
}

/// The container's root, checked to be its mounted overlay (409 if not).
fn rootfs(d: &Shared, rec: &ContainerRecord) -> Result<PathBuf, ApiError> {
    Ok(d.engine.mounted_rootfs(rec)?)
}

/// Docker's `PathStat` header: base64 of its JSON.
fn stat_header(s: &PathStat) -> String {
    let json = serde_json::json!({
        "name": s.name,
        "size": s.size,
        "mode": s.mode,
        "mtime": time::rfc3339(s.mtime),
        "linkTarget": s.link_target,
    });
    base64::engine::general_purpose::STANDARD.encode(json.to_string())
}

/// Docker's answers for a failed path operation.
fn path_error(e: io::Error, path: &str, name: &str) -> ApiError {
    match e.kind() {
        io::ErrorKind::NotFound => ApiError::not_found(format!(
            "Could not find the file {path} in container {name}"
        )),
        io::ErrorKind::InvalidInput | io::ErrorKind::NotADirectory => {
            ApiError::bad_request(e.to_string())
        }
        _ => ApiError::internal(e.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("archive task failed: {e}")))?
}

async fn head_archive(
    State(d): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    let path = required_path(&p)?;
    let rec = d.container(&id)?;
    let root = rootfs(&d, &rec)?;
    let name = id.clone();
    let loc =
        blocking(move || locate(&root, &path).map_err(|e| path_error(e, &path, &name))).await?;
    Ok(([(STAT_HEADER, stat_header(&loc.stat))], StatusCode::OK).into_response())
}

async fn get_archive(
    State(d): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    let path = required_path(&p)?;
    let rec = d.container(&id)?;
    let root = rootfs(&d, &rec)?;
    let name = id.clone();
    let loc =
        blocking(move || locate(&root, &path).map_err(|e| path_error(e, &path, &name))).await?;
    let header = stat_header(&loc.stat);
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let cid = rec.id.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter { tx };
        if let Err(e) = write_tar(&loc, &mut w) {
            // The 200 is out: the truncated tar tells the client.
            tracing::warn!(container = %cid, "failed to archive {}: {e}", loc.cpath.display());
        }
    });
    d.engine.emit_container("archive-path", &rec, &[]);
    let body = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, io::Error>);
    Response::builder()
        .header(STAT_HEADER, header)
        .header(http::header::CONTENT_TYPE, "application/x-tar")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::internal(format!("failed to build the archive response: {e}")))
}

/// Sends written bytes to an async body; fails once the client left.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

async fn put_archive(
    State(d): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(p): Query<Params>,
    req: Request,
) -> Result<Response, ApiError> {
    let path = required_path(&p)?;
    let no_overwrite = flag(&p.no_overwrite_dir_non_dir);
    let rec = d.container(&id)?;
    let root = rootfs(&d, &rec)?;
    if rec
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.readonly_rootfs)
    {
        return Err(ApiError::bad_request(
            "container rootfs is marked read-only",
        ));
    }
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(16);
    let mut body = req.into_body().into_data_stream();
    let feed = tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            let item = chunk.map_err(io::Error::other);
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    let name = id.clone();
    let res = blocking(move || {
        let reader = ChannelReader {
            rx,
            buf: Bytes::new(),
        };
        extract(&root, &path, reader, no_overwrite).map_err(|e| match e {
            ExtractError::Io(e) => path_error(e, &path, &name),
            ExtractError::Refused(m) => ApiError::bad_request(m),
        })
    })
    .await;
    feed.abort();
    res?;
    d.engine.emit_container("extract-to-dir", &rec, &[]);
    Ok(StatusCode::OK.into_response())
}

/// Reads an async body from a blocking thread.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    buf: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.buf = chunk?,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_header_is_base64_json() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/passwd"), "inside").unwrap();
        let loc = locate(t.path(), "/etc/passwd").unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(stat_header(&loc.stat))
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["name"], "passwd");
        assert_eq!(v["size"], 6);
        assert_eq!(v["linkTarget"], "");
        assert!(v["mtime"].as_str().unwrap().ends_with('Z'));
    }
}
