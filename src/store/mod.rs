//! The embedded, crash-safe metadata store (redb): named tables of JSON records.
//!
//! Every change goes through one write transaction, committed (and fsynced) as a
//! whole, so a `kill -9` at any point leaves either the old or the new state.
//!
//! redb refuses every write after an I/O error (a full disk during a commit)
//! until the database is opened again; the store then reopens it (redb
//! repairs on open), so the daemon's metadata works again — the failed
//! transaction itself is lost, never half-applied. A reserve file beside the
//! database (`<db>.reserve`, 4 MiB) is given up before such a reopen, so the
//! repair and the records that follow (a container's exit, the removals
//! that free space) have room on a full disk; it is made again once the
//! filesystem has room.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Tables the daemon uses; each maps a string key to a JSON record.
pub const TABLES: &[&str] = &[
    IMAGES,
    IMAGE_REFS,
    PODS,
    CONTAINERS,
    BUILD_IMAGES,
    BUILD_KEYS,
    HEALTH,
    META,
];
/// pod sandbox id → pod record
pub const PODS: &str = "pods";
/// container id → container record
pub const CONTAINERS: &str = "containers";
/// image id (`sha256:<config digest>`) → image record
pub const IMAGES: &str = "images";
/// `name:tag` or `name@digest` → image id
pub const IMAGE_REFS: &str = "image_refs";
/// image id → record of an image made by a build step (the build cache;
/// not listed as an image, resolvable by full id)
pub const BUILD_IMAGES: &str = "build_images";
/// container id → the container's health check state (Docker `State.Health`)
pub const HEALTH: &str = "health";
/// `schema` → the version of the records' format (absent: 1)
pub const META: &str = "meta";
/// build cache key (parent id + instruction + content) → image id
pub const BUILD_KEYS: &str = "build_keys";

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to open metadata database {path}: {message}")]
    Open { path: String, message: String },
    #[error("metadata database {op} failed: {message}")]
    Db { op: &'static str, message: String },
    #[error("corrupt record {table}/{key}: {source}")]
    Decode {
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

fn db_err<E: std::fmt::Display>(op: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError::Db {
        op,
        message: e.to_string(),
    }
}

fn def(name: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name)
}

/// The metadata database.
pub struct Store {
    path: PathBuf,
    /// `None` while a reopen after an I/O error has not succeeded yet.
    db: Mutex<Option<Arc<Database>>>,
    /// When a missing reserve file was last looked at.
    reserve_checked: Mutex<Option<Instant>>,
}

/// How long a reopen waits for transactions still running on the old handle.
const REOPEN_WAIT: Duration = Duration::from_secs(2);
/// Space kept back for the database on a full disk.
const RESERVE_BYTES: u64 = 4 << 20;
/// How often a missing reserve is looked at again.
const RESERVE_RETRY: Duration = Duration::from_secs(30);

fn reserve_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".reserve");
    PathBuf::from(p)
}

/// Makes the reserve file if it is missing and the filesystem has room for
/// it four times over; true when it is there.
fn ensure_reserve(db: &Path) -> bool {
    let path = reserve_path(db);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() >= RESERVE_BYTES) {
        return true;
    }
    let dir = db.parent().unwrap_or(Path::new("."));
    let room = nix::sys::statvfs::statvfs(dir)
        .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
        .unwrap_or(0);
    if room < 4 * RESERVE_BYTES {
        return false;
    }
    let made = std::fs::File::create(&path).and_then(|f| {
        // Real blocks, not a sparse file: the point is to hold the space.
        nix::fcntl::fallocate(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            nix::fcntl::FallocateFlags::empty(),
            0,
            RESERVE_BYTES as i64,
        )
        .map_err(std::io::Error::from)?;
        f.sync_all()
    });
    if made.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    made.is_ok()
}

fn open_db(path: &Path) -> Result<Database, StoreError> {
    let db = Database::create(path).map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let w = db.begin_write().map_err(db_err("begin"))?;
    for t in TABLES {
        w.open_table(def(t)).map_err(db_err("open table"))?;
    }
    w.commit().map_err(db_err("commit"))?;
    Ok(db)
}

fn previous_io_begin(e: &redb::TransactionError) -> bool {
    matches!(
        e,
        redb::TransactionError::Storage(redb::StorageError::PreviousIo)
    )
}

fn io_commit(e: &redb::CommitError) -> bool {
    matches!(
        e,
        redb::CommitError::Storage(redb::StorageError::PreviousIo | redb::StorageError::Io(_))
    )
}

impl Store {
    /// Opens (creating) the database file and its tables.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = open_db(path)?;
        let reserved = ensure_reserve(path);
        Ok(Store {
            path: path.to_path_buf(),
            db: Mutex::new(Some(Arc::new(db))),
            reserve_checked: Mutex::new((!reserved).then(Instant::now)),
        })
    }

    fn slot(&self) -> MutexGuard<'_, Option<Arc<Database>>> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The open database, reopening it if an earlier reopen failed.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        let mut slot = self.slot();
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let _ = std::fs::remove_file(reserve_path(&self.path));
        let db = Arc::new(open_db(&self.path)?);
        tracing::info!(path = %self.path.display(), "metadata database reopened");
        *slot = Some(db.clone());
        Ok(db)
    }

    /// Drops `failed` (once the transactions still on it are done) and opens
    /// the file again; a later call retries if this open fails.
    fn reopen(&self, failed: Arc<Database>) {
        let mut slot = self.slot();
        match slot.as_ref() {
            Some(cur) if Arc::ptr_eq(cur, &failed) => {}
            // Someone else already reopened it.
            _ => return,
        }
        let old = slot.take();
        drop(failed);
        let deadline = Instant::now() + REOPEN_WAIT;
        while old.as_ref().is_some_and(|o| Arc::strong_count(o) > 1) {
            if Instant::now() >= deadline {
                tracing::warn!("metadata database still in use; not reopened");
                *slot = old;
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(old);
        // Room for redb's repair and the next records, on a full disk.
        if std::fs::remove_file(reserve_path(&self.path)).is_ok() {
            tracing::warn!("metadata database reserve given up for the reopen");
            *self
                .reserve_checked
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
        match open_db(&self.path) {
            Ok(db) => {
                tracing::warn!(path = %self.path.display(), "metadata database reopened after an I/O error");
                *slot = Some(Arc::new(db));
            }
            Err(e) => {
                tracing::warn!(error = %e, "reopening the metadata database failed; retried on the next use")
            }
        }
    }

    /// One record.
    pub fn get<T: DeserializeOwned>(
        &self,
        table: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let db = self.db()?;
        let r = db.begin_read().map_err(db_err("begin read"))?;
        let t = r.open_table(def(table)).map_err(db_err("open table"))?;
        let v = t.get(key).map_err(db_err("get"))?;
        v.map(|g| decode(table, key, g.value())).transpose()
    }

    /// All records of a table, in key order.
    pub fn list<T: DeserializeOwned>(
        &self,
        table: &'static str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let db = self.db()?;
        let r = db.begin_read().map_err(db_err("begin read"))?;
        let t = r.open_table(def(table)).map_err(db_err("open table"))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(db_err("iterate"))? {
            let (k, v) = item.map_err(db_err("iterate"))?;
            out.push((k.value().to_string(), decode(table, k.value(), v.value())?));
        }
        Ok(out)
    }

    /// Runs `f` in one write transaction; commits only if it returns `Ok`.
    pub fn write<R, E>(&self, f: impl FnOnce(&mut Writer<'_>) -> Result<R, E>) -> Result<R, E>
    where
        E: From<StoreError>,
    {
        let mut db = self.db()?;
        let txn = match db.begin_write() {
            Ok(t) => t,
            // Nothing was done yet: reopen and begin again.
            Err(e) if previous_io_begin(&e) => {
                self.reopen(db);
                db = self.db()?;
                db.begin_write().map_err(db_err("begin write"))?
            }
            Err(e) => return Err(db_err("begin write")(e).into()),
        };
        let mut w = Writer { txn: &txn };
        let out = f(&mut w)?;
        if let Err(e) = txn.commit() {
            let err = db_err("commit")(&e);
            if io_commit(&e) {
                self.reopen(db);
            }
            return Err(err.into());
        }
        self.restore_reserve();
        Ok(out)
    }

    /// Makes the reserve file again once there is room (looked at every
    /// [`RESERVE_RETRY`] while it is missing).
    fn restore_reserve(&self) {
        let mut checked = self
            .reserve_checked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *checked {
            None => {}
            Some(at) if at.elapsed() < RESERVE_RETRY => {}
            Some(_) => {
                *checked = if ensure_reserve(&self.path) {
                    None
                } else {
                    Some(Instant::now())
                };
            }
        }
    }
}

/// Access to the tables inside a write transaction.
pub struct Writer<'a> {
    txn: &'a redb::WriteTransaction,
}

impl Writer<'_> {
    /// Reads a record as of this transaction.
    pub fn get<T: DeserializeOwned>(
        &self,
        table: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let t = self
            .txn
            .open_table(def(table))
            .map_err(db_err("open table"))?;
        let v = t.get(key).map_err(db_err("get"))?;
        v.map(|g| decode(table, key, g.value())).transpose()
    }

    /// Inserts or replaces a record.
    pub fn put<T: Serialize>(
        &mut self,
        table: &'static str,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(db_err("encode"))?;
        let mut t = self
            .txn
            .open_table(def(table))
            .map_err(db_err("open table"))?;
        t.insert(key, bytes.as_slice()).map_err(db_err("insert"))?;
        Ok(())
    }

    /// Deletes a record; true if it existed.
    pub fn delete(&mut self, table: &'static str, key: &str) -> Result<bool, StoreError> {
        let mut t = self
            .txn
            .open_table(def(table))
            .map_err(db_err("open table"))?;
        let existed = t.remove(key).map_err(db_err("remove"))?.is_some();
        Ok(existed)
    }
}

fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        table,
        key: key.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_and_abort() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let s = Store::open(&path).unwrap();
        s.write(|w| {
            w.put(IMAGES, "a", &1u32)?;
            w.put(IMAGES, "b", &2u32)?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
        // A failing closure commits nothing.
        let r: Result<(), StoreError> = s.write(|w| {
            w.put(IMAGES, "c", &3u32)?;
            w.delete(IMAGES, "a")?;
            Err(StoreError::Db {
                op: "test",
                message: "abort".into(),
            })
        });
        assert!(r.is_err());
        let all: Vec<(String, u32)> = s.list(IMAGES).unwrap();
        assert_eq!(all, vec![("a".into(), 1), ("b".into(), 2)]);
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.get::<u32>(IMAGES, "b").unwrap(), Some(2));
        assert_eq!(s.get::<u32>(IMAGES, "zz").unwrap(), None);
    }
}
