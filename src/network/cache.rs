//! The attachment cache: for every ADD, the exact network config, CNI_ARGS,
//! capabilities and result, in `<cache_dir>/<network>-<container_id>.json`,
//! so DEL and CHECK after a daemon restart (or a config change) give the
//! plugins the same input as ADD did — libcni keeps the same kind of record.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::CniError;

/// The `kind` of a record in berth's cache format.
pub(crate) const KIND: &str = "berthCniCacheV1";

/// What was attached to a container, as recorded at ADD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedAttachment {
    pub kind: String,
    pub container_id: String,
    pub network: String,
    pub if_name: String,
    /// The netns path given at ADD.
    pub netns: PathBuf,
    pub cni_args: Vec<(String, String)>,
    pub capabilities: Map<String, Value>,
    /// The network config list as used for ADD.
    pub config: Value,
    /// `None` from just before ADD until it succeeded: a record left so by a
    /// crash still lets DEL undo a half-done ADD with the right arguments.
    pub result: Option<Value>,
}

/// The cache file of `container_id` on `network`.
pub(crate) fn path(dir: &Path, network: &str, container_id: &str) -> PathBuf {
    dir.join(format!("{network}-{container_id}.json"))
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CniError + 'a {
    move |source| CniError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a record atomically (temp file, fsync, rename, fsync the directory).
pub(crate) fn write(dir: &Path, rec: &CachedAttachment) -> Result<PathBuf, CniError> {
    std::fs::create_dir_all(dir).map_err(io("create cni cache directory", dir))?;
    let dest = path(dir, &rec.network, &rec.container_id);
    let tmp = dir.join(format!(
        ".{}-{}.json.tmp{}",
        rec.network,
        rec.container_id,
        std::process::id()
    ));
    let bytes = serde_json::to_vec_pretty(rec).expect("a cache record serializes");
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &dest)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io("write cni cache", &dest))?;
    Ok(dest)
}

/// Every cache file of `container_id` (one per network); a file that cannot
/// be read as a record comes back as `None`.
pub(crate) fn find(
    dir: &Path,
    container_id: &str,
) -> Result<Vec<(PathBuf, Option<CachedAttachment>)>, CniError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read cni cache directory", dir)(e)),
    };
    let suffix = format!("-{container_id}.json");
    let mut found = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(&suffix) {
            continue;
        }
        let p = entry.path();
        let rec = std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<CachedAttachment>(&b).ok())
            .filter(|r| r.kind == KIND && r.container_id == container_id);
        found.push((p, rec));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// Removes a cache file; a missing one is fine.
pub(crate) fn remove(path: &Path) -> Result<(), CniError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove cni cache", path)(e)),
        _ => Ok(()),
    }
}
