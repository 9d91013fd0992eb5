//! The embedded, crash-safe metadata store (redb): named tables of JSON records.
//!
//! Every change goes through one write transaction, committed (and fsynced) as a
//! whole, so a `kill -9` at any point leaves either the old or the new state.

use std::path::Path;

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
    db: Database,
}

impl Store {
    /// Opens (creating) the database file and its tables.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let w = db.begin_write().map_err(db_err("begin"))?;
        for t in TABLES {
            w.open_table(def(t)).map_err(db_err("open table"))?;
        }
        w.commit().map_err(db_err("commit"))?;
        Ok(Store { db })
    }

    /// One record.
    pub fn get<T: DeserializeOwned>(
        &self,
        table: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let r = self.db.begin_read().map_err(db_err("begin read"))?;
        let t = r.open_table(def(table)).map_err(db_err("open table"))?;
        let v = t.get(key).map_err(db_err("get"))?;
        v.map(|g| decode(table, key, g.value())).transpose()
    }

    /// All records of a table, in key order.
    pub fn list<T: DeserializeOwned>(
        &self,
        table: &'static str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let r = self.db.begin_read().map_err(db_err("begin read"))?;
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
        let txn = self.db.begin_write().map_err(db_err("begin write"))?;
        let mut w = Writer { txn: &txn };
        let out = f(&mut w)?;
        txn.commit().map_err(db_err("commit"))?;
        Ok(out)
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
