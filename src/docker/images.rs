//! Docker's image endpoints over the engine's image service: list, inspect,
//! history, tag, and (in the submodules) pull and import, push, remove and
//! prune, save and load.
//!
//! Names are stored fully qualified (`docker.io/library/busybox:latest`) and
//! shown as Docker shows them (`busybox:latest`; other registries keep their
//! host, `127.0.0.1:5000/test/busybox:v1`). Image names contain slashes, so
//! the per-image routes take the rest of the path and split off the action.

mod delete;
pub(crate) mod pull;
mod push;
pub(crate) mod transfer;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::Query;
pub use super::filters::{check_filter_keys, parse_filters};
use super::{time, ApiError, ApiVersion, Shared};
use crate::image::{ImageRecord, Reference};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/images/json", get(list))
        .route("/images/get", get(transfer::save_many))
        .route("/images/create", post(pull::create))
        .route("/images/load", post(transfer::load))
        .route("/images/prune", post(delete::prune))
        .route(
            "/images/{*rest}",
            get(per_image_get)
                .post(per_image_post)
                .delete(delete::delete),
        )
}

/// `GET /images/{name}/{json,history,get}`.
async fn per_image_get(
    state: State<Shared>,
    Path(rest): Path<String>,
    version: Option<Extension<ApiVersion>>,
) -> Result<Response, ApiError> {
    let version = version.map(|Extension(v)| v);
    match split_action(&rest) {
        Some((name, "json")) => inspect(&state, name, version).await,
        Some((name, "history")) => history(&state, name).await,
        Some((name, "get")) => transfer::save(state.0.clone(), vec![name.to_string()]).await,
        _ => Err(not_routed("GET", &rest)),
    }
}

/// `POST /images/{name}/{tag,push}`.
async fn per_image_post(
    state: State<Shared>,
    Path(rest): Path<String>,
    Query(q): Query<TagQuery>,
    headers: http::HeaderMap,
) -> Result<Response, ApiError> {
    match split_action(&rest) {
        Some((name, "tag")) => tag(&state, name, q).await,
        Some((name, "push")) => push::push(state.0.clone(), name, q.tag.as_deref(), &headers).await,
        _ => Err(not_routed("POST", &rest)),
    }
}

fn split_action(rest: &str) -> Option<(&str, &str)> {
    let rest = rest.trim_start_matches('/');
    rest.rsplit_once('/').filter(|(name, _)| !name.is_empty())
}

fn not_routed(method: &str, rest: &str) -> ApiError {
    ApiError::not_found(format!("page not found: {method} /images/{rest}"))
}

/// The image `name` names (id, id prefix, name, name:tag, name@digest), or
/// Docker's 404.
pub fn find_image(docker: &Shared, name: &str) -> Result<ImageRecord, ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("image name cannot be blank"));
    }
    match docker.engine.images.resolve(name) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(no_such_image(name)),
        // A name that is not even a valid reference names no image.
        Err(e) if e.kind() == crate::image::Kind::InvalidArgument => Err(no_such_image(name)),
        Err(e) => Err(e.into()),
    }
}

fn no_such_image(name: &str) -> ApiError {
    ApiError::not_found(format!("No such image: {name}"))
}

/// A stored (fully qualified) name as Docker shows it.
pub fn familiar(full: &str) -> String {
    Reference::parse(full)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| full.to_string())
}

/// The first 12 hex digits of an id, as Docker abbreviates ids.
pub fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// Emits an image event with Docker's attributes.
pub(crate) fn emit(docker: &Shared, action: &str, id: &str, name: &str) {
    docker.engine.emit_image(action, id, name);
}

/// One line of a JSON message stream.
pub(crate) fn json_line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).expect("JSON values serialize");
    b.push(b'\n');
    Bytes::from(b)
}

/// Go's `path.Match` for the patterns Docker's reference filter uses:
/// `*` (any run of characters but `/`), `?` (one character but `/`),
/// `[...]` classes and `\` escapes.
pub fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != '/')
                .any(|i| go(&p[1..], &s[i..])),
            Some('?') => !s.is_empty() && s[0] != '/' && go(&p[1..], &s[1..]),
            Some('[') => {
                let Some(end) = p.iter().position(|&c| c == ']') else {
                    return false;
                };
                let Some(&c) = s.first() else {
                    return false;
                };
                let class = &p[1..end];
                let (negate, class) = match class.first() {
                    Some('^') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != negate && go(&p[end + 1..], &s[1..])
            }
            Some('\\') if p.len() > 1 => !s.is_empty() && s[0] == p[1] && go(&p[2..], &s[1..]),
            Some(&c) => !s.is_empty() && s[0] == c && go(&p[1..], &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

/// Docker's reference filter: the pattern matches the familiar
/// `name:tag`, or the familiar name alone.
fn reference_matches(pattern: &str, full: &str) -> bool {
    match Reference::parse(full) {
        Ok(r) => glob(pattern, &r.familiar()) || glob(pattern, &r.familiar_name()),
        Err(_) => glob(pattern, full),
    }
}

/// What listing and inspecting need to know about an image.
struct Facts {
    rec: ImageRecord,
    config: Value,
    /// Unpacked size of each layer.
    layer_sizes: Vec<u64>,
}

impl Facts {
    fn size(&self) -> u64 {
        if self.layer_sizes.is_empty() {
            self.rec.size
        } else {
            self.layer_sizes.iter().sum()
        }
    }

    fn created_nanos(&self) -> i64 {
        self.config["created"]
            .as_str()
            .and_then(|s| time::parse_point(s, 0).ok())
            .unwrap_or(self.rec.pulled_at)
    }

    fn labels(&self) -> &Value {
        &self.config["config"]["Labels"]
    }
}

async fn facts(docker: &Shared, rec: ImageRecord) -> Result<Facts, ApiError> {
    let body = docker.engine.images.read_blob(&rec.id).await?;
    let config: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::internal(format!("image config {} is not JSON: {e}", rec.id)))?;
    let snaps = docker.engine.images.snapshots().clone();
    let keys = rec.snapshot_keys();
    let layer_sizes = tokio::task::spawn_blocking(move || {
        keys.iter()
            .map(|k| snaps.info(k).map(|i| i.bytes).unwrap_or(0))
            .collect::<Vec<u64>>()
    })
    .await
    .map_err(|e| ApiError::internal(format!("failed to measure image layers: {e}")))?;
    Ok(Facts {
        rec,
        config,
        layer_sizes,
    })
}

/// `all` is accepted and changes nothing: berth has no intermediate images.
#[derive(Deserialize, Default)]
struct ListQuery {
    filters: Option<String>,
    /// API < 1.25: a reference pattern.
    filter: Option<String>,
}

/// `GET /images/json`.
async fn list(
    State(docker): State<Shared>,
    Query(q): Query<ListQuery>,
    version: Option<Extension<ApiVersion>>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let version = version.map(|Extension(v)| v);
    let mut filters = parse_filters(q.filters.as_deref())?;
    check_filter_keys(
        &filters,
        &["reference", "dangling", "label", "before", "since", "until"],
    )?;
    if let Some(f) = q.filter.filter(|f| !f.is_empty()) {
        filters.entry("reference".into()).or_default().push(f);
    }
    let dangling = match filters.get("dangling").and_then(|v| v.first()) {
        None => None,
        Some(v) => Some(parse_bool(v, "dangling")?),
    };
    let before = created_of(&docker, filters.get("before")).await?;
    let since = created_of(&docker, filters.get("since")).await?;
    let until = match filters.get("until").and_then(|v| v.first()) {
        None => None,
        Some(u) => Some(time::parse_point(u, time::now_nanos()).map_err(ApiError::bad_request)?),
    };
    let mut out = Vec::new();
    let mut records = docker.engine.images.list()?;
    records.reverse(); // newest first, as Docker lists
    for rec in records {
        let f = facts(&docker, rec).await?;
        if let Some(d) = dangling {
            if d != f.rec.repo_tags.is_empty() {
                continue;
            }
        }
        let created = f.created_nanos();
        if before.is_some_and(|b| created >= b) || since.is_some_and(|s| created <= s) {
            continue;
        }
        if until.is_some_and(|u| created > u) {
            continue;
        }
        if let Some(want) = filters.get("label") {
            if !want.iter().all(|l| label_matches(f.labels(), l)) {
                continue;
            }
        }
        let mut tags: Vec<String> = f.rec.repo_tags.clone();
        if let Some(patterns) = filters.get("reference") {
            tags.retain(|t| patterns.iter().any(|p| reference_matches(p, t)));
            if tags.is_empty() {
                continue;
            }
        }
        out.push(summary(&f, &tags, version));
    }
    Ok(Json(out))
}

/// The creation time of the image a `before`/`since` filter names.
async fn created_of(docker: &Shared, name: Option<&Vec<String>>) -> Result<Option<i64>, ApiError> {
    let Some(name) = name.and_then(|v| v.first()) else {
        return Ok(None);
    };
    let rec = find_image(docker, name)?;
    Ok(Some(facts(docker, rec).await?.created_nanos()))
}

fn parse_bool(v: &str, key: &str) -> Result<bool, ApiError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "invalid filter '{key}={v}': expected true or false"
        ))),
    }
}

/// `label=key` or `label=key=value` against a config's labels.
fn label_matches(labels: &Value, want: &str) -> bool {
    super::filters::label_matches(|k| labels.get(k).and_then(Value::as_str), want)
}

fn summary(f: &Facts, tags: &[String], version: Option<ApiVersion>) -> Value {
    let mut repo_tags: Vec<String> = tags.iter().map(|t| familiar(t)).collect();
    let mut repo_digests: Vec<String> = f.rec.repo_digests.iter().map(|t| familiar(t)).collect();
    if version.is_some_and(|v| v < ApiVersion(1, 43)) && repo_tags.is_empty() {
        repo_tags.push("<none>:<none>".into());
        if repo_digests.is_empty() {
            repo_digests.push("<none>@<none>".into());
        }
    }
    let size = f.size();
    let mut v = json!({
        "Containers": -1,
        "Created": f.created_nanos() / 1_000_000_000,
        "Id": f.rec.id,
        "Labels": f.labels(),
        "ParentId": "",
        "RepoDigests": repo_digests,
        "RepoTags": repo_tags,
        "SharedSize": -1,
        "Size": size,
    });
    if version.is_some_and(|v| v < ApiVersion(1, 44)) {
        v["VirtualSize"] = json!(size);
    }
    v
}

/// `GET /images/{name}/json`.
async fn inspect(
    docker: &Shared,
    name: &str,
    version: Option<ApiVersion>,
) -> Result<Response, ApiError> {
    let rec = find_image(docker, name)?;
    let f = facts(docker, rec).await?;
    Ok(Json(inspect_body(&f, docker, version)).into_response())
}

fn inspect_body(f: &Facts, docker: &Shared, version: Option<ApiVersion>) -> Value {
    let c = &f.config;
    // Docker answered every field of the container config before API 1.50.
    let mut config = json!({
        "Hostname": "", "Domainname": "", "User": "",
        "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
        "Tty": false, "OpenStdin": false, "StdinOnce": false,
        "Env": null, "Cmd": null, "Image": "", "Volumes": null,
        "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": null,
    });
    if let Some(m) = c["config"].as_object() {
        for (k, v) in m {
            config[k] = v.clone();
        }
    }
    let snaps = docker.engine.images.snapshots();
    let dirs: Vec<String> = f
        .rec
        .snapshot_keys()
        .iter()
        .rev()
        .map(|k| snaps.fs_path(k).display().to_string())
        .collect();
    let mut graph = Map::new();
    if let Some((upper, lower)) = dirs.split_first() {
        graph.insert("UpperDir".into(), json!(upper));
        if !lower.is_empty() {
            graph.insert("LowerDir".into(), json!(lower.join(":")));
        }
    }
    let created = c["created"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| time::rfc3339(f.rec.pulled_at));
    let size = f.size();
    let mut v = json!({
        "Id": f.rec.id,
        "RepoTags": f.rec.repo_tags.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
        "RepoDigests": f.rec.repo_digests.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
        "Parent": "",
        "Comment": c["comment"].as_str().unwrap_or(""),
        "Created": created,
        "DockerVersion": c["docker_version"].as_str().unwrap_or(""),
        "Author": c["author"].as_str().unwrap_or(""),
        "Config": config,
        "Architecture": c["architecture"].as_str().unwrap_or(""),
        "Os": c["os"].as_str().unwrap_or("linux"),
        "Size": size,
        "GraphDriver": {"Data": graph, "Name": "overlay2"},
        "RootFS": {
            "Type": "layers",
            "Layers": f.rec.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
        },
        "Metadata": {"LastTagTime": time::ZERO},
    });
    if let Some(variant) = c["variant"].as_str() {
        v["Variant"] = json!(variant);
    }
    if version.is_some_and(|v| v < ApiVersion(1, 44)) {
        v["VirtualSize"] = json!(size);
    }
    if version.is_some_and(|v| v < ApiVersion(1, 45)) {
        v["Container"] = json!("");
        v["ContainerConfig"] = Value::Null;
    }
    v
}

/// `GET /images/{name}/history`: the config's history, newest first; the
/// newest entry carries the image id and tags, the rest `<missing>`.
async fn history(docker: &Shared, name: &str) -> Result<Response, ApiError> {
    let rec = find_image(docker, name)?;
    let f = facts(docker, rec).await?;
    Ok(Json(history_body(&f)).into_response())
}

fn history_body(f: &Facts) -> Vec<Value> {
    let mut out = Vec::new();
    let mut layer = 0;
    let entries = f.config["history"].as_array().cloned().unwrap_or_default();
    for h in &entries {
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        let size = if empty {
            0
        } else {
            let s = f.layer_sizes.get(layer).copied().unwrap_or(0);
            layer += 1;
            s
        };
        let created = h["created"]
            .as_str()
            .and_then(|s| time::parse_point(s, 0).ok())
            .map(|n| n / 1_000_000_000)
            .unwrap_or(0);
        out.push(json!({
            "Id": "<missing>",
            "Created": created,
            "CreatedBy": h["created_by"].as_str().unwrap_or(""),
            "Tags": null,
            "Size": size,
            "Comment": h["comment"].as_str().unwrap_or(""),
        }));
    }
    out.reverse();
    if out.is_empty() {
        out.push(json!({
            "Id": "<missing>", "Created": f.created_nanos() / 1_000_000_000,
            "CreatedBy": "", "Tags": null, "Size": f.size(), "Comment": "",
        }));
    }
    out[0]["Id"] = json!(f.rec.id);
    let tags: Vec<String> = f.rec.repo_tags.iter().map(|t| familiar(t)).collect();
    out[0]["Tags"] = if tags.is_empty() {
        Value::Null
    } else {
        json!(tags)
    };
    out
}

#[derive(Deserialize, Default)]
struct TagQuery {
    repo: Option<String>,
    tag: Option<String>,
}

/// `repo` and `tag` parameters as one fully qualified tagged reference
/// (`tag` defaults to `latest`; `repo` may carry its own tag).
pub fn repo_tag(repo: &str, tag: Option<&str>) -> Result<Reference, ApiError> {
    let mut r = Reference::parse(repo).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if r.digest.is_some() {
        return Err(ApiError::bad_request(format!(
            "invalid reference {repo:?}: a digest cannot be used as a tag"
        )));
    }
    if let Some(t) = tag.filter(|t| !t.is_empty()) {
        r = Reference::parse(&format!("{}:{t}", r.name()))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    Ok(r)
}

/// `POST /images/{name}/tag?repo=&tag=`: 201 with no body.
async fn tag(docker: &Shared, name: &str, q: TagQuery) -> Result<Response, ApiError> {
    let repo = q.repo.unwrap_or_default();
    if repo.is_empty() {
        return Err(ApiError::bad_request(
            "repository name must have at least one component",
        ));
    }
    let r = repo_tag(&repo, q.tag.as_deref())?;
    if r.familiar_name() == "sha256" {
        return Err(ApiError::bad_request(
            "refusing to create an ambiguous tag using digest algorithm as name",
        ));
    }
    let rec = find_image(docker, name)?;
    let full = r.tagged().expect("a tag was set");
    docker.engine.images.tag(&rec.id, &full).await?;
    emit(docker, "tag", rec.id.as_str(), &r.familiar());
    Ok(StatusCode::CREATED.into_response())
}

#[cfg(test)]
mod tests;
