//! `DELETE /images/{name}` and `POST /images/prune`, with Docker's rules:
//! removing a name only untags while the image keeps other names; removing
//! by id needs `force` when the image has names in several repositories; an
//! image a running container uses is never deleted, one a stopped container
//! uses only with `force`.

use std::collections::HashSet;

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{check_filter_keys, familiar, find_image, parse_filters, short_id};
use crate::docker::error::{flag, Query};
use crate::docker::{time, ApiError, Shared};
use crate::engine::records::ContainerState;
use crate::image::{ImageRecord, Reference};

/// A container that uses an image.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub running: bool,
}

/// One change a removal makes, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Take this (fully qualified) name off the image.
    Untag(String),
    /// Remove the image itself.
    Delete,
}

/// The containers using image `id`.
fn users(docker: &Shared, id: &str) -> Result<Vec<User>, ApiError> {
    Ok(docker
        .engine
        .containers()?
        .into_iter()
        .filter(|c| c.image_id == id)
        .map(|c| User {
            running: c.state == ContainerState::Running,
            id: c.id,
        })
        .collect())
}

fn repo_of(full: &str) -> String {
    Reference::parse(full)
        .map(|r| r.name())
        .unwrap_or_else(|_| full.to_string())
}

/// Docker's "single reference": all names in one repository, with at most
/// one tag among them (its repo digests do not count).
fn single_reference(refs: &[String]) -> bool {
    let tags: Vec<&String> = refs.iter().filter(|r| !r.contains('@')).collect();
    let repos: HashSet<String> = refs.iter().map(|r| repo_of(r)).collect();
    match refs.len() {
        0 => false,
        1 => true,
        _ => tags.len() <= 1 && repos.len() == 1,
    }
}

/// True if `name` is the image id or a prefix of it.
fn is_id_prefix(id: &str, name: &str) -> bool {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    !hex.is_empty() && id.strip_prefix("sha256:").unwrap_or(id).starts_with(hex)
}

fn conflict(id: &str, hard: bool, message: String) -> ApiError {
    ApiError::conflict(format!(
        "conflict: unable to delete {} ({}) - {message}",
        short_id(id),
        if hard {
            "cannot be forced"
        } else {
            "must be forced"
        }
    ))
}

/// What removing `name` (which resolved to `rec`) does, or Docker's conflict.
pub fn plan(
    rec: &ImageRecord,
    name: &str,
    users: &[User],
    force: bool,
) -> Result<Vec<Step>, ApiError> {
    let id = rec.id.as_str();
    let refs: Vec<String> = rec
        .repo_tags
        .iter()
        .chain(&rec.repo_digests)
        .cloned()
        .collect();
    let mut steps = Vec::new();
    let mut remaining = refs.clone();
    // Removing the last name quietly keeps an image a container still uses.
    let quiet = if !is_id_prefix(id, name) {
        if !force && single_reference(&refs) {
            if let Some(u) = users.first() {
                return Err(ApiError::conflict(format!(
                    "conflict: unable to remove repository reference {name:?} (must force) - container {} is using its referenced image {}",
                    short_id(&u.id),
                    short_id(id)
                )));
            }
        }
        let r = Reference::parse(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let key = match &r.digest {
            Some(d) => r.with_digest(d),
            None => r.tagged().expect("a reference has a tag or a digest"),
        };
        if !remaining.contains(&key) {
            return Err(ApiError::not_found(format!("No such image: {name}")));
        }
        remaining.retain(|t| t != &key);
        steps.push(Step::Untag(key.clone()));
        if r.digest.is_none() {
            // The last tag of a repository takes its repo digests with it.
            let repo = r.name();
            if !remaining
                .iter()
                .any(|t| !t.contains('@') && repo_of(t) == repo)
            {
                for t in remaining.clone() {
                    if t.contains('@') && repo_of(&t) == repo {
                        remaining.retain(|x| x != &t);
                        steps.push(Step::Untag(t));
                    }
                }
            }
        }
        if !remaining.is_empty() {
            return Ok(steps);
        }
        true
    } else {
        if single_reference(&refs) {
            if let Some(u) = users.iter().find(|u| u.running) {
                return Err(conflict(
                    id,
                    true,
                    format!(
                        "image is being used by running container {}",
                        short_id(&u.id)
                    ),
                ));
            }
            if !force {
                if let Some(u) = users.first() {
                    return Err(conflict(
                        id,
                        false,
                        format!(
                            "image is being used by stopped container {}",
                            short_id(&u.id)
                        ),
                    ));
                }
            }
            steps.extend(remaining.drain(..).map(Step::Untag));
        }
        false
    };
    let blocker = if let Some(u) = users.iter().find(|u| u.running) {
        Some(conflict(
            id,
            true,
            format!(
                "image is being used by running container {}",
                short_id(&u.id)
            ),
        ))
    } else if !force && !remaining.is_empty() {
        Some(conflict(
            id,
            false,
            "image is referenced in multiple repositories".into(),
        ))
    } else if !force && !users.is_empty() {
        Some(conflict(
            id,
            false,
            format!(
                "image is being used by stopped container {}",
                short_id(&users[0].id)
            ),
        ))
    } else {
        None
    };
    if let Some(e) = blocker {
        // Untagging the last name already happened; a container still
        // uses the image, so it stays, unnamed.
        if quiet {
            return Ok(steps);
        }
        return Err(e);
    }
    steps.extend(remaining.into_iter().map(Step::Untag));
    steps.push(Step::Delete);
    Ok(steps)
}

/// Carries out `steps` on image `rec`, answering Docker's records.
async fn apply(
    docker: &Shared,
    rec: &ImageRecord,
    steps: Vec<Step>,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    let id = rec.id.as_str();
    for s in steps {
        match s {
            Step::Untag(name) => {
                docker.engine.untag_image(&name).await?;
                out.push(json!({"Untagged": familiar(&name)}));
            }
            Step::Delete => {
                docker.engine.delete_image(id).await?;
                out.push(json!({"Deleted": id}));
            }
        }
    }
    Ok(out)
}

#[derive(Deserialize, Default)]
pub struct DeleteQuery {
    force: Option<String>,
    /// Accepted; berth images have no parent images to prune.
    #[allow(dead_code)]
    noprune: Option<String>,
}

/// `DELETE /images/{name}?force=&noprune=`.
pub async fn delete(
    State(docker): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let name = name.trim_start_matches('/');
    let rec = find_image(&docker, name)?;
    let users = users(&docker, rec.id.as_str())?;
    let steps = plan(&rec, name, &users, flag(&q.force))?;
    Ok(Json(apply(&docker, &rec, steps).await?))
}

#[derive(Deserialize, Default)]
pub struct PruneQuery {
    filters: Option<String>,
}

/// `POST /images/prune`: removes images no container uses, only unnamed
/// ones unless `dangling=false`; `until` and `label` narrow the set.
pub async fn prune(
    State(docker): State<Shared>,
    Query(q): Query<PruneQuery>,
) -> Result<Json<Value>, ApiError> {
    let filters = parse_filters(q.filters.as_deref())?;
    check_filter_keys(&filters, &["dangling", "until", "label", "label!"])?;
    let dangling_only = match filters.get("dangling").and_then(|v| v.first()) {
        None => true,
        Some(v) => super::parse_bool(v, "dangling")?,
    };
    let until = match filters.get("until").and_then(|v| v.first()) {
        None => None,
        Some(u) => Some(time::parse_point(u, time::now_nanos()).map_err(ApiError::bad_request)?),
    };
    let used: HashSet<String> = docker
        .engine
        .containers()?
        .into_iter()
        .map(|c| c.image_id)
        .collect();
    let (before, _) = docker.engine.images.usage().await?;
    let mut deleted = Vec::new();
    for rec in docker.engine.images.list()? {
        if used.contains(rec.id.as_str()) || (dangling_only && !rec.repo_tags.is_empty()) {
            continue;
        }
        if until.is_some() || filters.contains_key("label") || filters.contains_key("label!") {
            let f = super::facts(&docker, rec.clone()).await?;
            if until.is_some_and(|u| f.created_nanos() >= u) {
                continue;
            }
            let labels = f.labels();
            if let Some(want) = filters.get("label") {
                if !want.iter().all(|l| super::label_matches(labels, l)) {
                    continue;
                }
            }
            if let Some(unwanted) = filters.get("label!") {
                if unwanted.iter().any(|l| super::label_matches(labels, l)) {
                    continue;
                }
            }
        }
        let mut steps: Vec<Step> = rec
            .repo_tags
            .iter()
            .chain(&rec.repo_digests)
            .cloned()
            .map(Step::Untag)
            .collect();
        steps.push(Step::Delete);
        deleted.extend(apply(&docker, &rec, steps).await?);
    }
    let (after, _) = docker.engine.images.usage().await?;
    Ok(Json(json!({
        "ImagesDeleted": if deleted.is_empty() { Value::Null } else { Value::Array(deleted) },
        "SpaceReclaimed": before.saturating_sub(after),
    })))
}
