//! Docker volumes: directories berth keeps at `<root>/volumes/<name>/_data`,
//! with their labels and creation time in `meta.json` beside `_data`
//! (written atomically). Only the `local` driver exists, without options.
//!
//! A volume made implicitly by `-v name:/p` is a volume like any other; one
//! left by an older berth without `meta.json` takes its creation time from
//! the directory. A volume is in use while any container (running or not)
//! mounts a path under it, as Docker counts references.
//!
//! Anonymous volumes (a container's `--mount type=volume` without a source)
//! carry Docker's `com.docker.volume.anonymous` label; since API 1.42 prune
//! removes only those unless asked for `all`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::{flag, DockerJson, Query};
use super::filters::{check_filter_keys, label_matches, parse_filters, Filters};
use super::{ApiError, ApiVersion, Shared};
use crate::engine::records::new_id;

/// The label Docker puts on anonymous volumes.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Serializes volume creation, removal and pruning, so that a prune never
/// deletes a volume another request is creating at that moment.
static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/prune", post(prune))
        .route("/volumes/{name}", get(inspect).delete(remove))
}

/// `[a-zA-Z0-9][a-zA-Z0-9_.-]+`: the names Docker's local driver accepts.
pub fn validate_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if !ok {
        return Err(format!(
            "\"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        ));
    }
    if b.len() < 2 {
        return Err(
            "volume name is too short, names should be at least two alphanumeric characters".into(),
        );
    }
    Ok(())
}

fn is_hex64(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What `meta.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
struct Meta {
    /// Unix nanoseconds.
    created_at: i64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// One volume as found on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub name: String,
    pub mountpoint: PathBuf,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub labels: BTreeMap<String, String>,
}

impl Volume {
    /// Docker's `Volume` object.
    pub fn to_json(&self) -> Value {
        json!({
            "Name": self.name,
            "Driver": "local",
            "Mountpoint": self.mountpoint.to_string_lossy(),
            "CreatedAt": super::time::rfc3339(self.created_at),
            "Labels": self.labels,
            "Scope": "local",
            "Options": {},
        })
    }

    pub fn anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

/// The volumes under one `<root>/volumes` directory.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(root: &Path) -> Store {
        Store {
            dir: root.join("volumes"),
        }
    }

    fn of(d: &Shared) -> Store {
        Store::new(&d.engine.config.root)
    }

    fn vol_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The volume called `name`, if it exists (an invalid name never does).
    pub fn get(&self, name: &str) -> Option<Volume> {
        validate_name(name).ok()?;
        let dir = self.vol_dir(name);
        let data = dir.join("_data");
        let md = std::fs::metadata(&data).ok().filter(|m| m.is_dir())?;
        let meta = std::fs::read(dir.join("meta.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
            .unwrap_or_else(|| {
                // Made before volumes had metadata: a hex name was a
                // container's anonymous volume.
                let created_at = md
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos() as i64)
                    .unwrap_or(0);
                let mut labels = BTreeMap::new();
                if is_hex64(name) {
                    labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
                }
                Meta { created_at, labels }
            });
        Some(Volume {
            name: name.to_string(),
            mountpoint: data,
            created_at: meta.created_at,
            labels: meta.labels,
        })
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<Volume> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        let mut out: Vec<Volume> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| self.get(n)))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Returns the volume `name`, creating it with `labels` when missing.
    pub fn ensure(&self, name: &str, labels: BTreeMap<String, String>) -> Result<Volume, String> {
        validate_name(name)?;
        let _g = lock();
        if let Some(v) = self.get(name) {
            return Ok(v);
        }
        let dir = self.vol_dir(name);
        std::fs::create_dir_all(dir.join("_data"))
            .map_err(|e| format!("failed to create volume directory: {e}"))?;
        let meta = Meta {
            created_at: super::time::now_nanos(),
            labels,
        };
        write_atomic(
            &dir.join("meta.json"),
            &serde_json::to_vec(&meta).expect("json"),
        )
        .map_err(|e| format!("failed to write volume metadata: {e}"))?;
        self.get(name)
            .ok_or_else(|| "volume vanished while being created".to_string())
    }

    /// Deletes a volume's directory; the bytes its data held.
    fn delete(&self, name: &str) -> std::io::Result<u64> {
        let dir = self.vol_dir(name);
        let size = super::model::dir_size(&dir.join("_data"));
        std::fs::remove_dir_all(&dir)?;
        Ok(size)
    }
}

/// Writes `path` through a temporary file and a rename, so readers see the
/// old content or the new, never a torn one.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The `_data` directory of the named volume `name`, created (with its
/// metadata) on first use — what `-v name:/p` mounts. A 64-hex name is a
/// container's anonymous volume and is labelled so.
pub fn data_dir(root: &Path, name: &str) -> Result<PathBuf, ApiError> {
    let mut labels = BTreeMap::new();
    if is_hex64(name) {
        labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
    }
    Store::new(root)
        .ensure(name, labels)
        .map(|v| v.mountpoint)
        .map_err(|e| ApiError::bad_request(format!("create {name}: {e}")))
}

/// Volume name → ids of the containers mounting something under it.
fn users(d: &Shared) -> Result<HashMap<String, Vec<String>>, ApiError> {
    let dir = Store::of(d).dir;
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for c in d.engine.containers()? {
        for m in &c.config.mounts {
            if let Some(name) = volume_of(&dir, Path::new(&m.host_path)) {
                let ids = out.entry(name).or_default();
                if !ids.contains(&c.id) {
                    ids.push(c.id.clone());
                }
            }
        }
    }
    Ok(out)
}

/// The volume a host path lies in, if any.
fn volume_of(volumes: &Path, host: &Path) -> Option<String> {
    let rest = host.strip_prefix(volumes).ok()?;
    let first = rest.components().next()?;
    Some(first.as_os_str().to_str()?.to_string())
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
    f: &Filters,
    all_by_default: bool,
) -> Result<impl Fn(&Volume) -> bool + '_, ApiError> {
    check_filter_keys(f, &["label", "label!", "all"])?;
    let all = bool_filter(f, "all")?.unwrap_or(all_by_default);
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
    let users = users(&d)?;
    let in_use = |n: &str| users.contains_key(n);
    let keep = list_filter(&f, &in_use)?;
    let vols: Vec<Value> = Store::of(&d)
        .list()
        .iter()
        .filter(|v| keep(v))
        .map(Volume::to_json)
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
    let name = req.name.filter(|n| !n.is_empty()).unwrap_or_else(new_id);
    let driver = req.driver.unwrap_or_default();
    if !driver.is_empty() && driver != "local" {
        return Err(ApiError::bad_request(format!(
            "create {name}: volume driver \"{driver}\" is not supported (only local is)"
        )));
    }
    if let Some(opts) = req.driver_opts.filter(|o| !o.is_empty()) {
        let keys: Vec<&str> = opts.keys().map(String::as_str).collect();
        return Err(ApiError::bad_request(format!(
            "create {name}: driver options are not supported by berth's local driver: {}",
            keys.join(", ")
        )));
    }
    validate_name(&name).map_err(|e| ApiError::bad_request(format!("create {name}: {e}")))?;
    let store = Store::of(&d);
    let labels = req.labels.unwrap_or_default();
    let v = tokio::task::spawn_blocking(move || store.ensure(&name, labels).map_err(|e| (name, e)))
        .await
        .map_err(|e| ApiError::internal(format!("volume create task failed: {e}")))?
        .map_err(|(name, e)| ApiError::internal(format!("create {name}: {e}")))?;
    Ok((StatusCode::CREATED, Json(v.to_json())))
}

async fn inspect(
    State(d): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    Store::of(&d)
        .get(&name)
        .map(|v| Json(v.to_json()))
        .ok_or_else(|| ApiError::not_found(format!("get {name}: no such volume")))
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
    let store = Store::of(&d);
    let d2 = d.clone();
    tokio::task::spawn_blocking(move || {
        let _g = lock();
        if store.get(&name).is_none() {
            if flag(&q.force) {
                return Ok(StatusCode::NO_CONTENT);
            }
            return Err(ApiError::not_found(format!("get {name}: no such volume")));
        }
        if let Some(ids) = users(&d2)?.get(&name) {
            return Err(ApiError::conflict(format!(
                "remove {name}: volume is in use - [{}]",
                ids.join(" ")
            )));
        }
        store
            .delete(&name)
            .map_err(|e| ApiError::internal(format!("remove {name}: {e}")))?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
    .map_err(|e| ApiError::internal(format!("volume remove task failed: {e}")))?
}

async fn prune(
    State(d): State<Shared>,
    version: Option<Extension<ApiVersion>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let f = parse_filters(q.filters.as_deref())?;
    // Before 1.42 prune took every unused volume.
    let old = version.is_some_and(|Extension(v)| v < ApiVersion(1, 42));
    let store = Store::of(&d);
    tokio::task::spawn_blocking(move || {
        let keep = prune_filter(&f, old)?;
        let _g = lock();
        let users = users(&d)?;
        let mut deleted = vec![];
        let mut reclaimed = 0u64;
        for v in store.list() {
            if users.contains_key(&v.name) || !keep(&v) {
                continue;
            }
            match store.delete(&v.name) {
                Ok(n) => {
                    reclaimed += n;
                    deleted.push(v.name);
                }
                Err(e) => tracing::warn!(volume = %v.name, "failed to prune volume: {e}"),
            }
        }
        let deleted = (!deleted.is_empty()).then_some(deleted);
        Ok(Json(
            json!({ "VolumesDeleted": deleted, "SpaceReclaimed": reclaimed }),
        ))
    })
    .await
    .map_err(|e| ApiError::internal(format!("volume prune task failed: {e}")))?
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
            mountpoint: PathBuf::from("/x"),
            created_at: 1,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn names_are_validated_like_docker() {
        for ok in ["v1", "my-vol_2.x", "0a", &"f".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-v", ".a", "a/b", "../x", "a b", "é1", "v:1"] {
            let e = validate_name(bad).unwrap_err();
            assert!(e.contains("includes invalid characters"), "{bad}: {e}");
        }
        assert!(validate_name("a").unwrap_err().contains("too short"));
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
        let keep = prune_filter(&f, false).unwrap();
        assert!(keep(&anon) && !keep(&named));
        let keep = prune_filter(&f, true).unwrap();
        assert!(keep(&anon) && keep(&named), "API < 1.42 prunes all");
        let f = filters(&[("all", "true")]);
        let keep = prune_filter(&f, false).unwrap();
        assert!(keep(&anon) && keep(&named));
        let f = filters(&[("all", "1"), ("label!", "keep")]);
        let keep = prune_filter(&f, false).unwrap();
        assert!(keep(&anon) && !keep(&named));
        let f = filters(&[("all", "1"), ("label", "keep=yes")]);
        let keep = prune_filter(&f, false).unwrap();
        assert!(!keep(&anon) && keep(&named));
        assert!(prune_filter(&filters(&[("dangling", "1")]), false).is_err());
    }

    #[test]
    fn store_creates_lists_and_reads_old_volumes() {
        let root = tempfile::tempdir().unwrap();
        let s = Store::new(root.path());
        assert!(s.list().is_empty());
        let labels: BTreeMap<_, _> = [("a".to_string(), "b".to_string())].into();
        let v = s.ensure("v1", labels.clone()).unwrap();
        assert_eq!(v.labels, labels);
        assert_eq!(v.mountpoint, root.path().join("volumes/v1/_data"));
        assert!(v.mountpoint.is_dir());
        // Creating again returns the first one unchanged.
        assert_eq!(s.ensure("v1", BTreeMap::new()).unwrap(), v);
        assert!(s.ensure("../x", BTreeMap::new()).is_err());
        // A volume directory without metadata (an older berth's).
        let hex = "0123456789abcdef".repeat(4);
        std::fs::create_dir_all(root.path().join("volumes").join(&hex).join("_data")).unwrap();
        std::fs::create_dir_all(root.path().join("volumes/stray")).unwrap();
        let all = s.list();
        assert_eq!(
            all.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            [hex.as_str(), "v1"]
        );
        assert!(all[0].anonymous() && all[0].created_at > 0);
        assert!(!all[1].anonymous());
        let json = v.to_json();
        assert_eq!(json["Driver"], "local");
        assert_eq!(json["Scope"], "local");
        assert_eq!(json["Labels"]["a"], "b");
        s.delete("v1").unwrap();
        assert!(s.get("v1").is_none());
        assert!(!root.path().join("volumes/v1").exists());
    }

    #[test]
    fn host_paths_map_to_volumes() {
        let vols = Path::new("/r/volumes");
        assert_eq!(
            volume_of(vols, Path::new("/r/volumes/v1/_data")).as_deref(),
            Some("v1")
        );
        assert_eq!(volume_of(vols, Path::new("/r/volumesx/v1")), None);
        assert_eq!(volume_of(vols, Path::new("/tmp/v1")), None);
    }
}
