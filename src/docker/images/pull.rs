//! `POST /images/create`: pulling (`fromImage`) and importing a root file
//! system tarball (`fromSrc=-`), answered as Docker's JSON message stream.
//!
//! A pull first reads the manifest, so an unknown repository or tag is an
//! ordinary error response, as Docker's is. From then on progress is
//! streamed: a line per layer as it is found present, downloaded and
//! unpacked (the content and snapshot stores are watched while the image
//! service pulls), then the digest and the status line; an error after the
//! stream began is an `errorDetail` line.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderMap};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{emit, json_line, short_id};
use crate::docker::{time, ApiError, Shared};
use crate::engine::images::RootfsImport;
use crate::image::auth::Credentials;
use crate::image::digest::chain_ids;
use crate::image::{self, Digest, Reference};

/// How often a pull's progress is looked at.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// The parameters of `/images/create` (repeated `changes` included).
#[derive(Debug, Default)]
pub struct CreateQuery {
    pub from_image: String,
    pub from_src: String,
    pub repo: String,
    pub tag: String,
    pub message: String,
    pub changes: Vec<String>,
}

impl CreateQuery {
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let uri: http::Uri = format!("/?{}", query.unwrap_or(""))
            .parse()
            .map_err(|e| ApiError::bad_request(format!("invalid query parameters: {e}")))?;
        let axum::extract::Query(pairs) =
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
                .map_err(|e| ApiError::bad_request(format!("invalid query parameters: {e}")))?;
        let mut q = CreateQuery::default();
        for (k, v) in pairs {
            match k.as_str() {
                "fromImage" => q.from_image = v,
                "fromSrc" => q.from_src = v,
                "repo" => q.repo = v,
                "tag" => q.tag = v,
                "message" => q.message = v,
                "changes" => q.changes.push(v),
                _ => {}
            }
        }
        Ok(q)
    }
}

/// `POST /images/create`.
pub async fn create(
    State(docker): State<Shared>,
    uri: http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let q = CreateQuery::parse(uri.query())?;
    if !q.from_image.is_empty() {
        let r = pull_reference(&q.from_image, &q.tag)?;
        let creds = registry_auth(&headers);
        return pull(docker, r, creds).await;
    }
    match q.from_src.as_str() {
        "-" => import(docker, q, body).await,
        "" => Err(ApiError::bad_request(
            "either fromImage (to pull) or fromSrc=- (to import) is required",
        )),
        other => Err(ApiError::bad_request(format!(
            "importing from a URL ({other}) is not supported: send the tarball as the request body with fromSrc=-"
        ))),
    }
}

/// `fromImage` with `tag` (which may be a digest) as one reference.
pub fn pull_reference(from_image: &str, tag: &str) -> Result<Reference, ApiError> {
    let name = from_image.trim_end_matches(':');
    let base = Reference::parse(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if tag.is_empty() {
        return Ok(base);
    }
    let full = if Digest::parse(tag).is_ok() {
        format!("{}@{tag}", base.name())
    } else {
        format!("{}:{tag}", base.name())
    };
    Reference::parse(&full).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Credentials from `X-Registry-Auth` (base64url JSON); like Docker, a
/// missing or undecodable header means anonymous.
pub fn registry_auth(headers: &HeaderMap) -> Credentials {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct AuthConfig {
        username: String,
        password: String,
        auth: String,
        identitytoken: String,
        registrytoken: String,
    }
    let Some(raw) = headers
        .get("x-registry-auth")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return Credentials::Anonymous;
    };
    let engines = [
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD,
    ];
    let Some(a) = engines
        .iter()
        .filter_map(|e| e.decode(raw).ok())
        .find_map(|b| serde_json::from_slice::<AuthConfig>(&b).ok())
    else {
        return Credentials::Anonymous;
    };
    Credentials::from_parts(
        &a.username,
        &a.password,
        &a.auth,
        &a.identitytoken,
        &a.registrytoken,
    )
    .unwrap_or_default()
}

/// A pull failure in Docker's words.
pub fn pull_error(r: &Reference, e: image::Error) -> ApiError {
    let chain = crate::cri::chain(&e);
    let mut api = ApiError::from(e);
    let name = r.familiar_name();
    api.message = match &api.status {
        s if *s == http::StatusCode::UNAUTHORIZED || *s == http::StatusCode::FORBIDDEN => format!(
            "pull access denied for {name}, repository does not exist or may require 'docker login': {chain}"
        ),
        s if *s == http::StatusCode::NOT_FOUND && chain.contains("NAME_UNKNOWN") => format!(
            "pull access denied for {name}, repository does not exist or may require 'docker login': {chain}"
        ),
        s if *s == http::StatusCode::NOT_FOUND => format!(
            "manifest for {} not found: manifest unknown: {chain}",
            r.familiar()
        ),
        _ => chain,
    };
    api
}

/// A status message line (`{"status":…,"id":…}`).
pub fn status_line(status: &str, id: Option<&str>) -> Bytes {
    let mut v = json!({ "status": status });
    if let Some(id) = id {
        v["id"] = json!(id);
    }
    json_line(&v)
}

/// A layer progress line (`{"status":…,"progressDetail":{},"id":…}`).
pub fn progress_line(status: &str, id: &str) -> Bytes {
    json_line(&json!({ "status": status, "progressDetail": {}, "id": id }))
}

/// An error line, as the CLI expects after a stream began.
pub fn error_line(message: &str) -> Bytes {
    json_line(&json!({ "errorDetail": { "message": message }, "error": message }))
}

/// Where one layer of a pull is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Pending,
    Downloaded,
    Done,
}

struct Layer {
    id: String,
    digest: Digest,
    stage: Stage,
}

async fn pull(docker: Shared, r: Reference, creds: Credentials) -> Result<Response, ApiError> {
    let images = &docker.engine.images;
    let remote = images
        .remote_manifest(&r.to_string(), &creds)
        .await
        .map_err(|e| pull_error(&r, e))?;
    let before = images.resolve(&r.to_string()).ok().flatten();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let send = |b: Bytes| {
            let tx = tx.clone();
            async move {
                // A client that went away does not stop the pull.
                let _ = tx.send(b).await;
            }
        };
        let images = &docker.engine.images;
        let what = r
            .digest
            .as_ref()
            .map(|d| d.to_string())
            .or(r.tag.clone())
            .unwrap_or_default();
        send(status_line(
            &format!("Pulling from {}", r.repository),
            Some(&what),
        ))
        .await;
        let mut layers: Vec<Layer> = Vec::new();
        for d in &remote.layers {
            let id = short_id(d.digest.as_str());
            let present = images.has_blob(&d.digest);
            send(progress_line(
                if present {
                    "Already exists"
                } else {
                    "Pulling fs layer"
                },
                &id,
            ))
            .await;
            layers.push(Layer {
                id,
                digest: d.digest.clone(),
                stage: if present { Stage::Done } else { Stage::Pending },
            });
        }
        let mut chains: Option<Vec<String>> = None;
        let full = r.to_string();
        let pulling = images.pull(&full, &creds);
        tokio::pin!(pulling);
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let result = loop {
            tokio::select! {
                res = &mut pulling => break res,
                _ = tick.tick() => {
                    if chains.is_none() && images.has_blob(&remote.config.digest) {
                        chains = read_chain_ids(&docker, &remote.config.digest).await;
                    }
                    for line in advance(&docker, &mut layers, chains.as_deref(), false) {
                        send(line).await;
                    }
                }
            }
        };
        match result {
            Ok(rec) => {
                for line in advance(&docker, &mut layers, None, true) {
                    send(line).await;
                }
                send(status_line(&format!("Digest: {}", remote.digest), None)).await;
                let fresh = before.as_ref().map(|b| &b.id) != Some(&rec.id);
                let status = if fresh {
                    format!("Status: Downloaded newer image for {}", r.familiar())
                } else {
                    format!("Status: Image is up to date for {}", r.familiar())
                };
                send(status_line(&status, None)).await;
                emit(&docker, "pull", &r.familiar(), &r.familiar());
            }
            Err(e) => {
                let api = pull_error(&r, e);
                send(error_line(&api.message)).await;
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

async fn read_chain_ids(docker: &Shared, config: &Digest) -> Option<Vec<String>> {
    let body = docker.engine.images.read_blob(config).await.ok()?;
    let v: Value = serde_json::from_slice(&body).ok()?;
    let diff_ids = v["rootfs"]["diff_ids"]
        .as_array()?
        .iter()
        .map(|d| d.as_str().and_then(|s| Digest::parse(s).ok()))
        .collect::<Option<Vec<_>>>()?;
    Some(
        chain_ids(&diff_ids)
            .iter()
            .map(|c| c.hex().to_string())
            .collect(),
    )
}

/// Progress lines for layers that moved on; `finished` completes them all.
fn advance(
    docker: &Shared,
    layers: &mut [Layer],
    chains: Option<&[String]>,
    finished: bool,
) -> Vec<Bytes> {
    let images = &docker.engine.images;
    let mut out = Vec::new();
    for (i, l) in layers.iter_mut().enumerate() {
        if l.stage == Stage::Pending && (finished || images.has_blob(&l.digest)) {
            out.push(progress_line("Download complete", &l.id));
            l.stage = Stage::Downloaded;
        }
        let unpacked = chains
            .and_then(|c| c.get(i))
            .is_some_and(|k| images.snapshots().exists(k));
        if l.stage == Stage::Downloaded && (finished || unpacked) {
            out.push(progress_line("Pull complete", &l.id));
            l.stage = Stage::Done;
        }
    }
    out
}

/// `fromSrc=-`: the body is a (possibly compressed) tar of a root file
/// system; it becomes a one-layer image named by `repo`/`tag`. `changes`
/// (Dockerfile instructions) may set CMD, ENTRYPOINT, ENV, WORKDIR, USER,
/// LABEL, EXPOSE and VOLUME in the new image's config.
async fn import(docker: Shared, q: CreateQuery, body: Body) -> Result<Response, ApiError> {
    let name = if q.repo.is_empty() {
        None
    } else {
        Some(super::repo_tag(&q.repo, Some(&q.tag))?)
    };
    let mut config = json!({});
    for c in &q.changes {
        apply_change(&mut config, c)?;
    }
    let now = time::rfc3339(time::now_nanos());
    let comment = if q.message.is_empty() {
        format!("Imported from {}", q.from_src)
    } else {
        q.message.clone()
    };
    let image_config = json!({
        "architecture": crate::image::manifest::host_platform().architecture,
        "os": "linux",
        "created": now,
        "config": config,
        "history": [{"created": now, "comment": comment}],
    });
    let names: Vec<String> = name.iter().filter_map(Reference::tagged).collect();
    let rec = docker
        .engine
        .import_rootfs(
            body.into_data_stream(),
            RootfsImport {
                config: image_config,
                names,
            },
        )
        .await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(status_line(rec.id.as_str(), None)),
    )
        .into_response())
}

/// Applies one Dockerfile instruction of `docker import --change` to an
/// image's container config.
pub fn apply_change(config: &mut Value, change: &str) -> Result<(), ApiError> {
    let change = change.trim();
    let (instr, rest) = change
        .split_once(char::is_whitespace)
        .map(|(a, b)| (a, b.trim()))
        .unwrap_or((change, ""));
    let words = |s: &str| -> Vec<String> {
        match serde_json::from_str::<Vec<String>>(s) {
            Ok(v) => v,
            Err(_) => vec!["/bin/sh".into(), "-c".into(), s.to_string()],
        }
    };
    let pairs = |s: &str| -> Vec<(String, String)> {
        if !s.contains('=') {
            // The old `ENV key value` form.
            let (k, v) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
            return vec![(k.to_string(), v.trim().to_string())];
        }
        s.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect()
    };
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => config["Cmd"] = json!(words(rest)),
        "ENTRYPOINT" => config["Entrypoint"] = json!(words(rest)),
        "WORKDIR" => config["WorkingDir"] = json!(rest),
        "USER" => config["User"] = json!(rest),
        "ENV" => {
            let mut env: Vec<String> = config["Env"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            for (k, v) in pairs(rest) {
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
            config["Env"] = json!(env);
        }
        "LABEL" => {
            for (k, v) in pairs(rest) {
                config["Labels"][k] = json!(v);
            }
        }
        "EXPOSE" => {
            for p in rest.split_whitespace() {
                let p = if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                };
                config["ExposedPorts"][p] = json!({});
            }
        }
        "VOLUME" => {
            let vols = serde_json::from_str::<Vec<String>>(rest)
                .unwrap_or_else(|_| rest.split_whitespace().map(String::from).collect());
            for v in vols {
                config["Volumes"][v] = json!({});
            }
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "{other} is not a valid change command"
            )))
        }
    }
    Ok(())
}
