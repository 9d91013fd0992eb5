//! Docker volumes: routes, request/response JSON and filters. The volumes
//! themselves — directories under `<root>/volumes`, their driver options,
//! mounts and users — are the engine's ([`crate::engine::volumes`]).
//!
//! Anonymous volumes (`-v /data`, an image's `VOLUME`, `--mount
//! type=volume` without a source) carry Docker's
//! `com.docker.volume.anonymous` label; since API 1.42 prune removes only
//! those unless asked for `all`.

use std::collections::BTreeMap;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{flag, DockerJson, Query};
use super::filters::{check_filter_keys, label_matches, parse_filters, Filters};
use super::{ApiError, ApiVersion, Shared};
use crate::engine::volumes::Volume;
pub use crate::engine::volumes::ANONYMOUS_LABEL;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/prune", post(prune))
        .route("/volumes/{name}", get(inspect).delete(remove))
}

/// Docker's `Volume` object.
pub fn to_json(v: &Volume) -> Value {
    json!({
        "Name": v.name,
        "Driver": "local",
        "Mountpoint": v.mountpoint.to_string_lossy(),
        "CreatedAt": super::time::rfc3339(v.created_at),
        "Labels": v.labels,
        "Scope": "local",
        "Options": v.options,
    })
}

/// Docker's `label` filter values: `key` or `key=value`; all must match.
fn labels_match(vals: Option<&Vec<String>>, labels: &BTreeMap<String, String>) -> bool {
    vals.is_none_or(|vals| {
        vals.iter()
            .all(|f| label_matches(|k| labels.get(k).map(String::as_str), f))
    })
}

/// Reads a boolean filter (`dangling`, `all`): 400 for anything else.
fn bool_filter(f: &Filters, key: &str) -> Result<Option<bool>, ApiError> {
    let Some(vals) = f.get(key).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let mut out = None;
    for v in vals {
        let b = match v.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(ApiError::bad_request(format!("invalid filter '{key}={v}'"))),
        };
        out = Some(out.unwrap_or(false) || b);
    }
    Ok(out)
}

/// `GET /volumes` filtering: `name` (substring), `driver`, `label`,
/// `dangling`. `in_use` says whether a volume has containers.
fn list_filter<'a>(
    f: &'a Filters,
    in_use: &'a dyn Fn(&str) -> bool,
) -> Result<impl Fn(&Volume) -> bool + 'a, ApiError> {
    check_filter_keys(f, &["name", "driver", "label", "dangling"])?;
    let dangling = bool_filter(f, "dangling")?;
    Ok(move |v: &Volume| {
        let any = |key: &str, test: &dyn Fn(&str) -> bool| {
            f.get(key)
                .is_none_or(|vals| vals.is_empty() || vals.iter().any(|x| test(x)))
        };
        any("name", &|n| v.name.contains(n))
            && any("driver", &|d| d == "local")
            && labels_match(f.get("label"), &v.labels)
            && dangling.is_none_or(|want| want != in_use(&v.name))
    })
}

/// `POST /volumes/prune` selection: unused volumes passing `label` and
/// `label!`, only anonymous ones unless `all`.
fn prune_filter(
    f: Filters,
    all_by_default: bool,
) -> Result<impl Fn(&Volume) -> bool + Send + 'static, ApiError> {
    check_filter_keys(&f, &["label", "label!", "all"])?;
    let all = bool_filter(&f, "all")?.unwrap_or(all_by_default);
    Ok(move |v: &Volume| {
        (all || v.anonymous())
            && labels_match(f.get("label"), &v.labels)
            && f.get("label!").is_none_or(|vals| {
                vals.iter()
                    .all(|x| !labels_match(Some(&vec![x.clone()]), &v.labels))
            })
    })
}

#[derive(Deserialize, Default)]
struct ListQuery {
    filters: Option<String>,
}

async fn list(
    State(d): State<Shared>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let f = parse_filters(q.filters.as_deref())?;
    let users = d.engine.volume_users()?;
    let in_use = |n: &str| users.contains_key(n);
    let keep = list_filter(&f, &in_use)?;
    let vols: Vec<Value> = d
        .engine
        .list_volumes()
        .iter()
        .filter(|v| keep(v))
        .map(to_json)
        .collect();
    Ok(Json(json!({ "Volumes": vols, "Warnings": null })))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateRequest {
    name: Option<String>,
    driver: Option<String>,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

async fn create(
    State(d): State<Shared>,
    DockerJson(req): DockerJson<CreateRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let driver = req.driver.unwrap_or_default();
    if !driver.is_empty() && driver != "local" {
        return Err(ApiError::bad_request(format!(
            "create {}: volume driver \"{driver}\" is not supported (only local is)",
            req.name.unwrap_or_default()
        )));
    }
    let v = d
        .engine
        .create_volume(
            req.name,
            req.labels.unwrap_or_default(),
            req.driver_opts.unwrap_or_default(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(to_json(&v))))
}

async fn inspect(
    State(d): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(to_json(&d.engine.volume(&name)?)))
}

#[derive(Deserialize, Default)]
struct RemoveQuery {
    force: Option<String>,
}

async fn remove(
    State(d): State<Shared>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<StatusCode, ApiError> {
    d.engine.remove_volume(&name, flag(&q.force)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn prune(
    State(d): State<Shared>,
    version: Option<Extension<ApiVersion>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let f = parse_filters(q.filters.as_deref())?;
    // Before 1.42 prune took every unused volume.
    let old = version.is_some_and(|Extension(v)| v < ApiVersion(1, 42));
    let keep = prune_filter(f, old)?;
    let (deleted, reclaimed) = d.engine.prune_volumes(keep).await?;
    let deleted = (!deleted.is_empty()).then_some(deleted);
    Ok(Json(
        json!({ "VolumesDeleted": deleted, "SpaceReclaimed": reclaimed }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(pairs: &[(&str, &str)]) -> Filters {
        let mut f: Filters = Filters::new();
        for (k, v) in pairs {
            f.entry(k.to_string()).or_default().push(v.to_string());
        }
        f
    }

    fn vol(name: &str, labels: &[(&str, &str)]) -> Volume {
        Volume {
            name: name.into(),
            mountpoint: std::path::PathBuf::from("/x"),
            created_at: 1,
            options: BTreeMap::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn list_filters_select() {
        let used = |n: &str| n == "busy";
        let vols = [
            vol("busy", &[("a", "b")]),
            vol("idle", &[("a", "c"), ("k", "")]),
        ];
        let names = |f: &Filters| -> Vec<String> {
            let keep = list_filter(f, &used).unwrap();
            vols.iter()
                .filter(|v| keep(v))
                .map(|v| v.name.clone())
                .collect()
        };
        assert_eq!(names(&filters(&[])), ["busy", "idle"]);
        assert_eq!(names(&filters(&[("label", "a=b")])), ["busy"]);
        assert_eq!(names(&filters(&[("label", "k")])), ["idle"]);
        assert_eq!(names(&filters(&[("label", "a"), ("label", "k")])), ["idle"]);
        assert_eq!(names(&filters(&[("dangling", "true")])), ["idle"]);
        assert_eq!(names(&filters(&[("dangling", "0")])), ["busy"]);
        assert_eq!(names(&filters(&[("name", "dl")])), ["idle"]);
        assert_eq!(
            names(&filters(&[("name", "us"), ("name", "id")])),
            ["busy", "idle"]
        );
        assert!(names(&filters(&[("driver", "nfs")])).is_empty());
        assert_eq!(names(&filters(&[("driver", "local")])).len(), 2);
        let bad = list_filter(&filters(&[("dangling", "maybe")]), &used)
            .err()
            .unwrap();
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let bad = list_filter(&filters(&[("colour", "x")]), &used)
            .err()
            .unwrap();
        assert_eq!(bad.message, "invalid filter 'colour'");
    }

    #[test]
    fn prune_takes_anonymous_unless_all() {
        let anon = vol(&"a".repeat(64), &[(ANONYMOUS_LABEL, "")]);
        let named = vol("data", &[("keep", "yes")]);
        let f = filters(&[]);
        let keep = prune_filter(f.clone(), false).unwrap();
        assert!(keep(&anon) && !keep(&named));
        let keep = prune_filter(f.clone(), true).unwrap();
        assert!(keep(&anon) && keep(&named), "API < 1.42 prunes all");
        let f = filters(&[("all", "true")]);
        let keep = prune_filter(f.clone(), false).unwrap();
        assert!(keep(&anon) && keep(&named));
        let f = filters(&[("all", "1"), ("label!", "keep")]);
        let keep = prune_filter(f.clone(), false).unwrap();
        assert!(keep(&anon) && !keep(&named));
        let f = filters(&[("all", "1"), ("label", "keep=yes")]);
        let keep = prune_filter(f.clone(), false).unwrap();
        assert!(!keep(&anon) && keep(&named));
        assert!(prune_filter(filters(&[("dangling", "1")]), false).is_err());
    }
}
