//! `POST /images/{name}/push?tag=`: the image service pushes; this renders
//! its progress as Docker's JSON message stream, the lines the CLI and the
//! SDKs read: `Preparing`, `Pushing`, `Pushed`, `Layer already exists` or
//! `Mounted from …` per layer (named by its short diff id, as Docker does),
//! then `<tag>: digest: sha256:… size: N` and the `aux` record. An unknown
//! local image is an ordinary 404; a failure once the stream began is an
//! `errorDetail` line.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{header, HeaderMap};
use serde_json::json;
use tokio::sync::mpsc;

use super::pull::{error_line, progress_line, registry_auth, status_line};
use super::{emit, familiar, json_line, short_id};
use crate::docker::{ApiError, Shared};
use crate::image::auth::Credentials;
use crate::image::push::{BlobState, PushEvent};
use crate::image::{self, Reference};

/// `POST /images/{name}/push`: `tag` empty pushes every local tag of the
/// repository, one after the other (`docker push --all-tags`).
pub async fn push(
    docker: Shared,
    name: &str,
    tag: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let repo = Reference::parse(name.trim_end_matches(':'))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if repo.digest.is_some() {
        return Err(ApiError::bad_request(format!(
            "cannot push a digest reference: {name}"
        )));
    }
    let targets: Vec<Reference> = match tag.filter(|t| !t.is_empty()) {
        Some(t) => vec![super::repo_tag(&repo.name(), Some(t))?],
        // An old client's `name:tag` in the path.
        None if name
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':')) =>
        {
            vec![repo.clone()]
        }
        None => all_tags(&docker, &repo)?,
    };
    if targets.is_empty() {
        return Err(ApiError::not_found(format!(
            "An image does not exist locally with the tag: {}",
            repo.familiar_name()
        )));
    }
    let mut images = Vec::new();
    for t in &targets {
        let full = t.tagged().unwrap_or_default();
        match docker.engine.images.resolve(&full)? {
            Some(rec) => images.push((t.clone(), rec)),
            None => {
                return Err(ApiError::not_found(format!(
                    "An image does not exist locally with the tag: {}",
                    t.familiar_name()
                )))
            }
        }
    }
    let creds = registry_auth(headers);
    let (tx, rx) = mpsc::channel::<bytes::Bytes>(64);
    tokio::spawn(async move {
        send(
            &tx,
            status_line(
                &format!("The push refers to repository [{}]", repo.familiar_name()),
                None,
            ),
        )
        .await;
        for (target, rec) in images {
            if let Err(message) = push_one(&docker, &target, &rec, &creds, &tx).await {
                send(&tx, error_line(&message)).await;
                return;
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Every local tag of `repo`'s repository, as references.
fn all_tags(docker: &Shared, repo: &Reference) -> Result<Vec<Reference>, ApiError> {
    let mut out = Vec::new();
    for rec in docker.engine.images.list()? {
        for t in &rec.repo_tags {
            if let Ok(r) = Reference::parse(t) {
                if r.registry == repo.registry && r.repository == repo.repository {
                    out.push(r);
                }
            }
        }
    }
    out.sort_by(|a, b| a.tag.cmp(&b.tag));
    Ok(out)
}

/// A line to the client; one that went away does not stop the push.
async fn send(tx: &mpsc::Sender<bytes::Bytes>, line: bytes::Bytes) {
    let _ = tx.send(line).await;
}

async fn push_one(
    docker: &Shared,
    target: &Reference,
    rec: &image::ImageRecord,
    creds: &Credentials,
    tx: &mpsc::Sender<bytes::Bytes>,
) -> Result<(), String> {
    let (ptx, mut prx) = mpsc::unbounded_channel::<PushEvent>();
    let full = target.tagged().unwrap_or_default();
    let pushing = docker.engine.images.push(&full, creds, Some(ptx));
    tokio::pin!(pushing);
    let config = rec.id.clone();
    let result = loop {
        tokio::select! {
            res = &mut pushing => break res,
            Some(ev) = prx.recv() => {
                if ev.digest != config {
                    send(tx, event_line(&ev)).await;
                }
            }
        }
    };
    while let Ok(ev) = prx.try_recv() {
        if ev.digest != config {
            send(tx, event_line(&ev)).await;
        }
    }
    match result {
        Ok(p) => {
            let done = format!("{}: digest: {} size: {}", p.tag, p.digest, p.size);
            send(tx, status_line(&done, None)).await;
            let aux = json!({
                "progressDetail": {},
                "aux": {"Tag": p.tag, "Digest": p.digest.to_string(), "Size": p.size},
            });
            send(tx, json_line(&aux)).await;
            emit(docker, "push", &familiar(&full), &familiar(&full));
            Ok(())
        }
        Err(e) => Err(push_error(&e)),
    }
}

/// One progress event as Docker writes it.
fn event_line(ev: &PushEvent) -> bytes::Bytes {
    let id = short_id(ev.diff_id.as_ref().unwrap_or(&ev.digest).as_str());
    match &ev.state {
        BlobState::Preparing => progress_line("Preparing", &id),
        BlobState::Exists => progress_line("Layer already exists", &id),
        BlobState::Mounted(from) => progress_line(&format!("Mounted from {from}"), &id),
        BlobState::Pushed => progress_line("Pushed", &id),
        BlobState::Pushing { sent, total } => json_line(&json!({
            "status": "Pushing",
            "progressDetail": {"current": sent, "total": total},
            "id": id,
        })),
    }
}

/// A push failure in Docker's words (`unauthorized: …` for refused
/// credentials).
fn push_error(e: &image::Error) -> String {
    let chain = crate::cri::chain(e);
    match e.kind() {
        image::Kind::Unauthenticated | image::Kind::PermissionDenied
            if !chain.starts_with("unauthorized") =>
        {
            format!("unauthorized: {chain}")
        }
        _ => chain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Digest;

    fn json_of(b: &bytes::Bytes) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn progress_lines_are_named_by_short_diff_ids() {
        let digest = Digest::of(b"layer");
        let diff = Digest::of(b"diff");
        let ev = |state| PushEvent {
            digest: digest.clone(),
            diff_id: Some(diff.clone()),
            state,
        };
        let id = short_id(diff.as_str());
        let v = json_of(&event_line(&ev(BlobState::Exists)));
        assert_eq!(v["status"], "Layer already exists");
        assert_eq!(v["id"], id.as_str());
        let v = json_of(&event_line(&ev(BlobState::Mounted("test/busybox".into()))));
        assert_eq!(v["status"], "Mounted from test/busybox");
        let v = json_of(&event_line(&ev(BlobState::Pushing { sent: 5, total: 9 })));
        assert_eq!(v["status"], "Pushing");
        assert_eq!(v["progressDetail"]["current"], 5);
        assert_eq!(v["progressDetail"]["total"], 9);
        assert_eq!(
            json_of(&event_line(&ev(BlobState::Pushed)))["status"],
            "Pushed"
        );
    }

    #[test]
    fn refused_credentials_read_unauthorized() {
        let e = image::Error::Auth {
            registry: "127.0.0.1:5000".into(),
            reason: "no credentials".into(),
        };
        assert!(
            push_error(&e).starts_with("unauthorized: "),
            "{}",
            push_error(&e)
        );
        let other = image::Error::NotFound("x".into());
        assert!(!push_error(&other).starts_with("unauthorized"));
    }
}
