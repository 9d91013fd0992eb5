//! Container life cycle routes: list, inspect, start, stop, restart, kill,
//! wait, delete, rename, pause/unpause, update, prune.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::warn;

use super::create::{names, stored_request, valid_name};
use super::error::{flag, DockerJson, Query};
use super::events::async_stream;
use super::filters::{check_filter_keys, label_matches, parse_filters, port_filter, Filters};
use super::model;
use super::{ApiError, Shared};
use crate::engine::records::{ContainerRecord, ContainerState};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/containers/json", get(list))
        .route("/containers/prune", post(prune))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}/rename", post(rename))
        .route("/containers/{id}/pause", post(pause))
        .route("/containers/{id}/unpause", post(unpause))
        .route("/containers/{id}/update", post(update))
        .route("/containers/{id}", delete(remove))
}

/// True when berth's Docker façade made this container (a one-container pod).
pub fn docker_owned(d: &Shared, rec: &ContainerRecord) -> bool {
    d.engine.owns_its_pod(rec)
}

#[derive(Deserialize)]
struct ListParams {
    all: Option<String>,
    limit: Option<i64>,
    size: Option<String>,
    filters: Option<String>,
}

/// Refuses filters `docker ps` does not know, before anything is listed.
fn check_list_filters(f: &Filters) -> Result<(), ApiError> {
    check_filter_keys(
        f,
        &[
            "id", "name", "label", "status", "ancestor", "exited", "before", "since", "network",
            "volume", "health", "is-task", "publish", "expose",
        ],
    )?;
    if let Some(st) = f.get("status") {
        for s in st {
            if ![
                "created",
                "restarting",
                "running",
                "removing",
                "paused",
                "exited",
                "dead",
            ]
            .contains(&s.as_str())
            {
                return Err(ApiError::bad_request(format!(
                    "invalid filter 'status={s}'"
                )));
            }
        }
    }
    for h in f.get("health").into_iter().flatten() {
        if !["starting", "healthy", "unhealthy", "none"].contains(&h.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Unrecognised filter value for health: {h}"
            )));
        }
    }
    Ok(())
}

fn list_filter(
    d: &Shared,
    rec: &ContainerRecord,
    f: &Filters,
    all: &[ContainerRecord],
) -> Result<bool, ApiError> {
    let name = d.engine.container_name(rec);
    let any = |key: &str, test: &dyn Fn(&str) -> bool| {
        f.get(key)
            .is_none_or(|v| v.is_empty() || v.iter().any(|x| test(x)))
    };
    let created_of = |key: &str| -> Result<Option<i64>, ApiError> {
        let Some(v) = f.get(key).and_then(|v| v.first()) else {
            return Ok(None);
        };
        let hit = all
            .iter()
            .find(|c| c.id.starts_with(v.as_str()) || d.engine.container_name(c) == *v)
            .ok_or_else(|| ApiError::not_found(format!("No such container: {v}")))?;
        Ok(Some(hit.created_at))
    };
    let (before, since) = (created_of("before")?, created_of("since")?);
    let image_matches = |want: &str| {
        let want_id = d
            .engine
            .images
            .resolve(want)
            .ok()
            .flatten()
            .map(|i| i.id.to_string());
        rec.image_name == want
            || rec.image_id == want
            || rec.image_name.starts_with(&format!("{want}:"))
            || want_id.is_some_and(|id| id == rec.image_id)
    };
    Ok(any("id", &|v| rec.id.starts_with(v))
        && any("name", &|v| {
            let v = v.trim_start_matches('/');
            name.contains(v)
        })
        // Every label asked for must match, as in Docker (compose numbers a
        // service's containers by listing project AND service labels).
        && f.get("label").into_iter().flatten().all(|v| {
            label_matches(|k| rec.config.labels.get(k).map(String::as_str), v)
        })
        && any("status", &|v| v == model::state_word(rec))
        && any("health", &|v| v == model::health_word(d, rec))
        && any("ancestor", &|v| image_matches(v))
        && any("exited", &|v| {
            rec.state == ContainerState::Exited && v.parse::<i32>().ok() == Some(rec.exit_code)
        })
        && before.is_none_or(|b| rec.created_at < b)
        && since.is_none_or(|s| rec.created_at > s)
        && any("volume", &|v| mounts_volume(d, rec, v))
        && on_network(d, rec, f))
}

/// The `volume` filter, as Docker's: a mount whose destination is `v`, or
/// whose volume name (a bind's source) is `v`.
fn mounts_volume(d: &Shared, rec: &ContainerRecord, v: &str) -> bool {
    rec.config.mounts.iter().any(|m| {
        m.container_path == v
            || d.engine
                .volume_of(&m.host_path)
                .map_or(m.host_path == v, |name| name == v)
    })
}

/// The `network` filter: attached to a network of that name or id (prefix).
fn on_network(d: &Shared, rec: &ContainerRecord, f: &Filters) -> bool {
    let Some(want) = f.get("network").filter(|v| !v.is_empty()) else {
        return true;
    };
    let attached = d
        .engine
        .pod(&rec.pod_id)
        .map(|p| p.attachments())
        .unwrap_or_default();
    want.iter().any(|v| {
        attached.iter().any(|a| {
            a.network == *v
                || (!v.is_empty()
                    && super::networks::attachment_network_id(a).starts_with(v.as_str()))
        })
    })
}

/// The `publish` and `expose` filters: one of the container ports named
/// is published (a port mapping of the pod) or exposed (by the image or
/// the create request, as inspect's `ExposedPorts`).
async fn ports_match(
    d: &Shared,
    rec: &ContainerRecord,
    publish: &HashSet<String>,
    expose: &HashSet<String>,
) -> bool {
    if !publish.is_empty() {
        let pod = d.engine.pod(&rec.pod_id).ok();
        let published = pod
            .iter()
            .flat_map(|p| p.config.port_mappings.iter())
            .any(|m| {
                publish.contains(&format!(
                    "{}/{}",
                    m.container_port,
                    model::proto_name(m.protocol)
                ))
            });
        if !published {
            return false;
        }
    }
    if !expose.is_empty() {
        let eff = model::effective(d, rec).await;
        let exposed = eff.exposed.keys().any(|p| {
            let p = if p.contains('/') {
                p.clone()
            } else {
                format!("{p}/tcp")
            };
            expose.contains(&p.to_ascii_lowercase())
        });
        if !exposed {
            return false;
        }
    }
    true
}

async fn list(
    State(d): State<Shared>,
    Query(p): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let f = parse_filters(p.filters.as_deref())?;
    check_list_filters(&f)?;
    let publish = port_filter("publish", f.get("publish"))?;
    let expose = port_filter("expose", f.get("expose"))?;
    let mut all = d.engine.containers()?;
    all.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    let limit = p.limit.filter(|l| *l > 0);
    let show_all = flag(&p.all) || limit.is_some();
    let mut out = vec![];
    for rec in &all {
        if !show_all && rec.state != ContainerState::Running {
            continue;
        }
        if !list_filter(&d, rec, &f, &all)? || !ports_match(&d, rec, &publish, &expose).await {
            continue;
        }
        out.push(model::summary(&d, rec, flag(&p.size)).await?);
        if limit.is_some_and(|l| out.len() as i64 >= l) {
            break;
        }
    }
    Ok(Json(Value::Array(out)))
}

#[derive(Deserialize)]
struct InspectParams {
    size: Option<String>,
}

async fn inspect(
    State(d): State<Shared>,
    Path(id): Path<String>,
    Query(p): Query<InspectParams>,
) -> Result<Json<Value>, ApiError> {
    let rec = d.container(&id)?;
    Ok(Json(model::inspect(&d, &rec, flag(&p.size)).await?))
}

/// Docker's answers for start failures keep the words its CLI maps to exit
/// codes 126/127 ("executable file not found", "permission denied").
fn start_error(id: &str, e: crate::engine::Error) -> ApiError {
    // The engine's own words for a command it could not execute are Docker's.
    if let crate::engine::Error::InvalidArgument(msg) = &e {
        return ApiError::bad_request(msg.clone());
    }
    let msg = e.to_string();
    let lower = msg.to_lowercase();
    let status = StatusCode::BAD_REQUEST;
    let detail = if lower.contains("not found in $path")
        || lower.contains("no such file or directory")
        || lower.contains("executable file not found")
    {
        format!("{msg}: exec: executable file not found in $PATH: no such file or directory")
    } else if lower.contains("permission denied") {
        format!("{msg}: permission denied")
    } else {
        msg
    };
    ApiError::new(
        status,
        format!("failed to start container {id}: OCI runtime error: {detail}"),
    )
}

async fn start(State(d): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let rec = d.container(&id)?;
    let started = match rec.state {
        ContainerState::Running => return Ok(StatusCode::NOT_MODIFIED.into_response()),
        ContainerState::Created => d.engine.start_container(&rec.id).await,
        ContainerState::Exited => d.engine.restart_container(&rec.id).await,
    };
    if let Err(e) = started {
        // Docker removes an AutoRemove container whose start failed.
        if rec.exit_policy.auto_remove {
            if let Err(re) = remove_container(&d, &rec, true).await {
                warn!(container = %rec.id, error = %re, "failed to auto-remove a container whose start failed");
            }
        }
        return Err(start_error(&rec.id, e));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct StopParams {
    t: Option<i64>,
    timeout: Option<i64>,
    signal: Option<String>,
}

/// The grace period of a stop: the request's, the container's StopTimeout, or 10 s.
fn stop_timeout(rec: &ContainerRecord, t: Option<i64>) -> Duration {
    let secs = t.or(rec.stop.timeout_secs).unwrap_or(10);
    if secs < 0 {
        // -1: wait forever, as Docker does; a day is forever enough.
        Duration::from_secs(86_400)
    } else {
        Duration::from_secs(secs as u64)
    }
}

/// Stops a running container (unpausing it first) with `signal` or its own
/// stop signal; false if it was not running.
async fn stop_running(
    d: &Shared,
    rec: &ContainerRecord,
    t: Option<i64>,
    signal: Option<&str>,
) -> Result<bool, ApiError> {
    if rec.state != ContainerState::Running {
        return Ok(false);
    }
    d.engine.mark_stopped_by_user(&rec.id).await?;
    if rec.paused {
        d.engine.set_paused(&rec.id, false).await?;
    }
    d.engine
        .stop_container_with(&rec.id, stop_timeout(rec, t), signal)
        .await?;
    Ok(true)
}

async fn stop(
    State(d): State<Shared>,
    Path(id): Path<String>,
    Query(p): Query<StopParams>,
) -> Result<Response, ApiError> {
    let rec = d.container(&id)?;
    // `stop --signal`: this stop's signal instead of the container's.
    let signal = match p.signal.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => Some(signal_name(s)?),
        None => None,
    };
    if !stop_running(&d, &rec, p.t.or(p.timeout), signal.as_deref()).await? {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn restart(
    State(d): State<Shared>,
    Path(id): Path<String>,
    Query(p): Query<StopParams>,
) -> Result<StatusCode, ApiError> {
    let rec = d.container(&id)?;
    let signal = match p.signal.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => Some(signal_name(s)?),
        None => None,
    };
    stop_running(&d, &rec, p.t.or(p.timeout), signal.as_deref()).await?;
    let rec = d.container(&rec.id)?;
    match rec.state {
        ContainerState::Created => d.engine.start_container(&rec.id).await,
        _ => d.engine.restart_container(&rec.id).await,
    }
    .map_err(|e| start_error(&rec.id, e))?;
    if let Some(r) = d.engine.refreshed(&rec.id)? {
        d.engine.emit_container("restart", &r, &[]);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct KillParams {
    signal: Option<String>,
}

/// `KILL`, `SIGKILL`, `9` → what the OCI runtime accepts.
fn signal_name(s: &str) -> Result<String, ApiError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok("KILL".into());
    }
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map(|sig| sig.as_str().trim_start_matches("SIG").to_string())
            .map_err(|_| ApiError::bad_request(format!("Invalid signal: {s}")));
    }
    let up = s.to_ascii_uppercase();
    let name = format!("SIG{}", up.trim_start_matches("SIG"));
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig.as_str().trim_start_matches("SIG").to_string())
        .map_err(|_| ApiError::bad_request(format!("Invalid signal: {s}")))
}

async fn kill(
    State(d): State<Shared>,
    Path(id): Path<String>,
    Query(p): Query<KillParams>,
) -> Result<StatusCode, ApiError> {
    let rec = d.container(&id)?;
    let sig = signal_name(p.signal.as_deref().unwrap_or(""))?;
    if rec.state != ContainerState::Running {
        return Err(ApiError::conflict(format!(
            "cannot kill container: {id}: container {} is not running",
            rec.id
        )));
    }
    if sig == "KILL" || sig == "TERM" || sig == "INT" {
        d.engine.mark_stopped_by_user(&rec.id).await?;
    }
    d.engine.kill_container(&rec.id, &sig).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct WaitParams {
    condition: Option<String>,
}

async fn wait(
    State(d): State<Shared>,
    Path(id): Path<String>,
    Query(p): Query<WaitParams>,
) -> Result<Response, ApiError> {
    let condition = p.condition.unwrap_or_else(|| "not-running".into());
    if !["not-running", "next-exit", "removed", ""].contains(&condition.as_str()) {
        return Err(ApiError::bad_request(format!(
            "invalid condition: \"{condition}\""
        )));
    }
    // Subscribed before the state is read, so no exit slips between.
    let (_, mut rx) = d.engine.events.subscribe();
    let rec = d.container(&id)?;
    let id = rec.id.clone();
    let answer =
        |code: i64| Bytes::from(format!("{}\n", json!({"StatusCode": code, "Error": null})));
    let body = async_stream(move |tx| async move {
        let mut last = i64::from(rec.exit_code);
        if condition != "removed"
            && condition != "next-exit"
            && rec.state != ContainerState::Running
        {
            let _ = tx.send(answer(last)).await;
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) if ev.kind == "container" && ev.id == id => {
                        if ev.action == "die" {
                            last = ev.attributes.get("exitCode").and_then(|c| c.parse().ok()).unwrap_or(last);
                            if condition != "removed" {
                                let _ = tx.send(answer(last)).await;
                                return;
                            }
                        } else if ev.action == "destroy" && condition == "removed" {
                            let _ = tx.send(answer(last)).await;
                            return;
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                },
                _ = tick.tick() => {
                    if tx.is_closed() {
                        return;
                    }
                    // Missed events (a lagging receiver): look at the record.
                    match d.engine.refreshed(&id) {
                        Ok(None) if condition == "removed" => {
                            let _ = tx.send(answer(last)).await;
                            return;
                        }
                        Ok(Some(r)) if r.state == ContainerState::Exited => {
                            last = i64::from(r.exit_code);
                            if condition == "not-running" {
                                let _ = tx.send(answer(last)).await;
                                return;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    });
    Ok(([("content-type", "application/json")], body).into_response())
}

#[derive(Deserialize)]
struct RemoveParams {
    force: Option<String>,
    v: Option<String>,
}

/// Removes a container: a Docker-made one with its pod (network, files);
/// with `volumes`, its anonymous volumes too (`rm -v`, `--rm`).
pub async fn remove_container(
    d: &Shared,
    rec: &ContainerRecord,
    volumes: bool,
) -> Result<(), ApiError> {
    d.engine.remove_container_and_pod(rec, volumes).await?;
    Ok(())
}

async fn remove(
    State(d): State<Shared>,
    Path(id): Path<String>,
    Query(p): Query<RemoveParams>,
) -> Result<StatusCode, ApiError> {
    let rec = d.container(&id)?;
    if rec.state == ContainerState::Running && !flag(&p.force) {
        let state = if rec.paused { "paused" } else { "running" };
        return Err(ApiError::conflict(format!(
            "cannot remove container \"/{}\": container is {state}: stop the container before removing or force remove",
            d.engine.container_name(&rec)
        )));
    }
    d.engine.mark_stopped_by_user(&rec.id).await?;
    if rec.paused {
        d.engine.set_paused(&rec.id, false).await?;
    }
    remove_container(&d, &rec, flag(&p.v)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct RenameParams {
    name: Option<String>,
}

async fn rename(
    State(d): State<Shared>,
    Path(id): Path<String>,
    Query(p): Query<RenameParams>,
) -> Result<StatusCode, ApiError> {
    let rec = d.container(&id)?;
    let name = p.name.unwrap_or_default();
    let name = name.trim_start_matches('/');
    if !valid_name(name) {
        return Err(ApiError::bad_request(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    if d.engine.container_name(&rec) == name {
        return Err(ApiError::bad_request(
            "Renaming a container with the same name as its current name",
        ));
    }
    if let Some(other) = names(&d)?.get(name) {
        return Err(ApiError::conflict(format!(
            "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
        )));
    }
    d.engine.rename_container(&rec.id, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_paused(d: &Shared, id: &str, pause: bool) -> Result<StatusCode, ApiError> {
    let rec = d.container(id)?;
    if rec.state != ContainerState::Running {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            rec.id
        )));
    }
    if rec.paused == pause {
        return Err(ApiError::conflict(if pause {
            format!("Container {} is already paused", rec.id)
        } else {
            format!("Container {} is not paused", rec.id)
        }));
    }
    d.engine.set_paused(&rec.id, pause).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pause(State(d): State<Shared>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    set_paused(&d, &id, true).await
}

async fn unpause(State(d): State<Shared>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    set_paused(&d, &id, false).await
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct UpdateBody {
    restart_policy: Option<crate::docker::create::RestartPolicy>,
    memory: i64,
    memory_swap: i64,
    nano_cpus: i64,
    cpu_shares: i64,
    cpu_quota: i64,
    cpu_period: i64,
    cpuset_cpus: String,
    cpuset_mems: String,
}

impl UpdateBody {
    /// True when the body changes a resource (not only the restart policy).
    fn has_resources(&self) -> bool {
        [
            self.memory,
            self.memory_swap,
            self.nano_cpus,
            self.cpu_shares,
            self.cpu_quota,
            self.cpu_period,
        ]
        .iter()
        .any(|n| *n != 0)
            || !self.cpuset_cpus.is_empty()
            || !self.cpuset_mems.is_empty()
    }
}

async fn update(
    State(d): State<Shared>,
    Path(id): Path<String>,
    DockerJson(b): DockerJson<UpdateBody>,
) -> Result<Json<Value>, ApiError> {
    let rec = d.container(&id)?;
    if let Some(policy) = &b.restart_policy {
        let Some(stored) = stored_request(&rec) else {
            return Err(ApiError::bad_request(format!(
                "container {} was not made through the Docker API: it has no restart policy",
                rec.id
            )));
        };
        crate::docker::create::check_restart_policy(policy, stored.host_config.auto_remove)?;
        let mut v: Value = rec
            .config
            .annotations
            .get(crate::engine::docker::CONFIG_ANNOTATION)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_else(|| json!({}));
        v["HostConfig"]["RestartPolicy"] =
            json!({"Name": policy.name, "MaximumRetryCount": policy.maximum_retry_count});
        d.engine.set_docker_config(&rec.id, v.to_string()).await?;
        let exit_policy = crate::engine::records::ExitPolicy {
            restart: crate::docker::create::restart_of(policy),
            ..rec.exit_policy.clone()
        };
        d.engine.set_exit_policy(&rec.id, exit_policy).await?;
        if !b.has_resources() {
            return Ok(Json(json!({"Warnings": []})));
        }
    }
    let rec = d.container(&rec.id)?;
    if rec.state == ContainerState::Exited {
        return Err(ApiError::conflict(format!(
            "Cannot update container {}: container is not running",
            rec.id
        )));
    }
    let mut res = rec
        .config
        .linux
        .as_ref()
        .and_then(|l| l.resources.clone())
        .unwrap_or_default();
    if b.memory != 0 {
        res.memory_limit_in_bytes = b.memory;
    }
    if b.memory_swap != 0 {
        res.memory_swap_limit_in_bytes = b.memory_swap;
    }
    if b.cpu_shares != 0 {
        res.cpu_shares = b.cpu_shares;
    }
    if b.nano_cpus != 0 {
        res.cpu_period = 100_000;
        res.cpu_quota = b.nano_cpus * 100_000 / 1_000_000_000;
    }
    if b.cpu_quota != 0 {
        res.cpu_quota = b.cpu_quota;
    }
    if b.cpu_period != 0 {
        res.cpu_period = b.cpu_period;
    }
    if !b.cpuset_cpus.is_empty() {
        res.cpuset_cpus = b.cpuset_cpus.clone();
    }
    if !b.cpuset_mems.is_empty() {
        res.cpuset_mems = b.cpuset_mems.clone();
    }
    d.engine.update_container_resources(&rec.id, &res).await?;
    // A Docker-made container reports its HostConfig from its request: keep
    // that in step with what was applied.
    let stored = rec
        .config
        .annotations
        .get(crate::engine::docker::CONFIG_ANNOTATION)
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .map(|mut v| {
            let hc = &mut v["HostConfig"];
            for (k, n) in [
                ("Memory", b.memory),
                ("MemorySwap", b.memory_swap),
                ("NanoCpus", b.nano_cpus),
                ("CpuShares", b.cpu_shares),
                ("CpuQuota", b.cpu_quota),
                ("CpuPeriod", b.cpu_period),
            ] {
                if n != 0 {
                    hc[k] = json!(n);
                }
            }
            v.to_string()
        });
    d.engine.set_container_resources(&rec.id, res, stored)?;
    Ok(Json(json!({"Warnings": []})))
}

#[derive(Deserialize)]
struct PruneParams {
    filters: Option<String>,
}

async fn prune(
    State(d): State<Shared>,
    Query(p): Query<PruneParams>,
) -> Result<Json<Value>, ApiError> {
    let f = parse_filters(p.filters.as_deref())?;
    let until = match f.get("until").and_then(|v| v.first()) {
        Some(u) => Some(
            super::time::parse_point(u, super::time::now_nanos())
                .map_err(|e| ApiError::bad_request(format!("until: {e}")))?,
        ),
        None => None,
    };
    let mut deleted = vec![];
    let mut reclaimed = 0u64;
    for rec in d.engine.containers()? {
        if rec.state == ContainerState::Running || !docker_owned(&d, &rec) {
            continue;
        }
        if until.is_some_and(|u| rec.created_at >= u) {
            continue;
        }
        let labels_ok = f.get("label").is_none_or(|ls| {
            ls.iter()
                .all(|l| label_matches(|k| rec.config.labels.get(k).map(String::as_str), l))
        });
        if !labels_ok {
            continue;
        }
        reclaimed += d.engine.writable_layer_usage(&rec).await.apparent_bytes;
        remove_container(&d, &rec, false).await?;
        deleted.push(rec.id);
    }
    Ok(Json(json!({
        "ContainersDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) },
        "SpaceReclaimed": reclaimed,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(signal_name("").unwrap(), "KILL");
        assert_eq!(signal_name("9").unwrap(), "KILL");
        assert_eq!(signal_name("SIGTERM").unwrap(), "TERM");
        assert_eq!(signal_name("hup").unwrap(), "HUP");
        assert!(signal_name("NOPE").is_err());
        assert!(signal_name("99").is_err());
    }
}
