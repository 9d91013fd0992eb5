//! The snapshot store: one directory per unpacked layer, keyed by chain id.
//!
//! See the module docs of [`super`] for the on-disk layout and how
//! atomicity is achieved.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::compression::decompressor;
use super::tree::{self, Measurer};
use super::unpack::{unpack_layer, UnpackError};
use super::StorageError;

const FS_DIR: &str = "fs";
const INFO_FILE: &str = "info.json";
const TEMP_PREFIX: &str = ".tmp-";

/// Tells temp directories of concurrent unpacks of one key apart.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// What one snapshot holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Total size of regular file contents (`st_size`, hard links once).
    pub bytes: u64,
    /// Distinct inodes, directories and the root included.
    pub inodes: u64,
}

/// Space used by all snapshots together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Disk space allocated (`st_blocks * 512`), hard-linked inodes once.
    pub bytes: u64,
    /// Distinct inodes.
    pub inodes: u64,
}

/// Unpacked layers under one root directory, e.g. `/var/lib/berth/snapshots`.
///
/// Only one store may be open on a root at a time: `open` deletes the temp
/// directories of unpacks that another store would still be writing.
#[derive(Debug)]
pub struct SnapshotStore {
    root: PathBuf,
}

impl SnapshotStore {
    /// Opens (creating) the store; removes incomplete snapshot dirs left by a crash (temp dirs).
    pub fn open(root: &Path) -> Result<Self, StorageError> {
        fs::create_dir_all(root).map_err(StorageError::io("create snapshot root", root))?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))
            .map_err(StorageError::io("set mode of snapshot root", root))?;
        let entries = fs::read_dir(root).map_err(StorageError::io("list snapshot root", root))?;
        for entry in entries {
            let entry = entry.map_err(StorageError::io("list snapshot root", root))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            // A key directory always holds `fs`, as it is renamed into
            // place whole; one without it was made by something else.
            let incomplete =
                name.starts_with(TEMP_PREFIX) || (is_key(&name) && !is_dir(&path.join(FS_DIR)));
            if incomplete {
                tracing::info!(path = %path.display(), "removing incomplete snapshot");
                tree::remove_tree(&path)
                    .map_err(StorageError::io("remove incomplete snapshot", &path))?;
            }
        }
        Ok(SnapshotStore {
            root: root.to_path_buf(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory that holds the unpacked filesystem of snapshot `key` (a 64-char hex chain id), e.g. <root>/<key>/fs.
    ///
    /// `key` is not checked here; pass only keys that [`Self::exists`] or
    /// [`Self::unpack`] accepted.
    pub fn fs_path(&self, key: &str) -> PathBuf {
        self.root.join(key).join(FS_DIR)
    }

    /// True if snapshot `key` is complete and present.
    pub fn exists(&self, key: &str) -> bool {
        is_key(key) && is_dir(&self.fs_path(key))
    }

    /// The size of snapshot `key`, as recorded when it was unpacked.
    pub fn info(&self, key: &str) -> Result<SnapshotInfo, StorageError> {
        check_key(key)?;
        if !self.exists(key) {
            return Err(StorageError::NotFound {
                key: key.to_string(),
            });
        }
        let info_path = self.root.join(key).join(INFO_FILE);
        if let Ok(data) = fs::read(&info_path) {
            if let Ok(info) = serde_json::from_slice(&data) {
                return Ok(info);
            }
        }
        // Lost or damaged: measure again, which gives the same numbers.
        let fs_path = self.fs_path(key);
        let totals = tree::measure(&fs_path).map_err(StorageError::io("measure", fs_path))?;
        Ok(SnapshotInfo {
            bytes: totals.apparent,
            inodes: totals.inodes,
        })
    }

    /// Unpacks the layer blob file `blob` into a new snapshot `key`.
    ///
    /// The compression (gzip, zstd or none) is sniffed from the blob's magic
    /// bytes; `media_type` is only a hint. The layer is unpacked into a temp
    /// dir inside the root and renamed into place, so `key` either appears
    /// whole or not at all; on any error the temp dir is removed. If `key`
    /// already exists its info is returned without unpacking. Blocking:
    /// call it from `spawn_blocking`.
    pub fn unpack(
        &self,
        key: &str,
        blob: &Path,
        media_type: &str,
        expected_diff_id: Option<&str>,
    ) -> Result<SnapshotInfo, StorageError> {
        check_key(key)?;
        if self.exists(key) {
            return self.info(key);
        }
        let file = File::open(blob).map_err(|source| StorageError::OpenBlob {
            path: blob.to_path_buf(),
            source,
        })?;
        let temp = TempDir::create(self.temp_path(key))?;
        let fs_dir = temp.path.join(FS_DIR);
        make_dir(&fs_dir, 0o755)?;

        let info = decompressor(file, media_type)
            .map_err(|source| UnpackError::Read { source })
            .and_then(|(compression, stream)| {
                tracing::debug!(key, ?compression, blob = %blob.display(), "unpacking layer");
                let mut hashed = HashingReader::new(stream);
                let info = unpack_layer(&mut hashed, &fs_dir)?;
                // The diff ID covers the whole tar stream, end-of-archive padding included.
                std::io::copy(&mut hashed, &mut std::io::sink())
                    .map_err(|source| UnpackError::Read { source })?;
                let actual = hashed.digest();
                match expected_diff_id {
                    Some(want) if want != actual => Err(UnpackError::DiffIdMismatch {
                        expected: want.to_string(),
                        actual,
                    }),
                    _ => Ok(info),
                }
            })
            .map_err(|source| StorageError::Unpack {
                key: key.to_string(),
                blob: blob.to_path_buf(),
                source,
            })?;
        self.finish(key, temp, info)
    }

    /// Makes snapshot `key` from a container's upper dir `upper` (without
    /// the relative paths in `skip`) by copying its tree, whiteouts and
    /// opaque directories in overlay form, so the layer written from the
    /// same dir needs no unpack. Appears whole or not at all, as
    /// [`Self::unpack`]; an existing `key` is kept. Blocking.
    pub fn import_upper(
        &self,
        key: &str,
        upper: &Path,
        skip: &std::collections::HashSet<PathBuf>,
    ) -> Result<SnapshotInfo, StorageError> {
        check_key(key)?;
        if self.exists(key) {
            return self.info(key);
        }
        let temp = TempDir::create(self.temp_path(key))?;
        let fs_dir = temp.path.join(FS_DIR);
        make_dir(&fs_dir, 0o755)?;
        super::diff::copy_upper(upper, skip, &fs_dir)
            .map_err(StorageError::io("copy the writable layer", upper))?;
        let totals = tree::measure(&fs_dir).map_err(StorageError::io("measure", &fs_dir))?;
        let info = SnapshotInfo {
            bytes: totals.apparent,
            inodes: totals.inodes,
        };
        self.finish(key, temp, info)
    }

    /// Writes `info` into the finished temp dir and renames it into place.
    fn finish(
        &self,
        key: &str,
        temp: TempDir,
        info: SnapshotInfo,
    ) -> Result<SnapshotInfo, StorageError> {
        let info_path = temp.path.join(INFO_FILE);
        let json = serde_json::to_vec(&info).expect("SnapshotInfo serializes");
        fs::write(&info_path, json).map_err(StorageError::io("write", info_path))?;
        let dest = self.root.join(key);
        match fs::rename(&temp.path, &dest) {
            Ok(()) => {
                temp.keep();
                Ok(info)
            }
            // A concurrent unpack of the same key finished first: keep theirs.
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST))
                    && self.exists(key) =>
            {
                drop(temp);
                self.info(key)
            }
            Err(source) => Err(StorageError::Io {
                op: "move unpacked snapshot into",
                path: dest,
                source,
            }),
        }
    }

    /// Removes snapshot `key`; removing a missing snapshot succeeds.
    ///
    /// The snapshot is first renamed to a temp name, so it vanishes at once
    /// and a crash part-way through deleting is cleaned up by `open`.
    pub fn remove(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        let path = self.root.join(key);
        let doomed = self.temp_path(&format!("rm-{key}"));
        match fs::rename(&path, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(StorageError::Io {
                    op: "move aside snapshot",
                    path,
                    source,
                })
            }
        }
        tree::remove_tree(&doomed).map_err(StorageError::io("remove snapshot", doomed))
    }

    /// Keys of all complete snapshots, sorted.
    pub fn list(&self) -> Result<Vec<String>, StorageError> {
        let io_err = || StorageError::io("list snapshot root", &self.root);
        let mut keys = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_err())? {
            let entry = entry.map_err(io_err())?;
            if let Some(name) = entry.file_name().to_str() {
                if self.exists(name) {
                    keys.push(name.to_string());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Disk space (`st_blocks * 512`) and inodes used by all snapshots,
    /// hard-linked inodes counted once.
    pub fn usage(&self) -> Result<Usage, StorageError> {
        let mut measurer = Measurer::default();
        for key in self.list()? {
            let path = self.root.join(&key);
            measurer
                .add(&path)
                .map_err(StorageError::io("measure", path))?;
        }
        let totals = measurer.totals();
        Ok(Usage {
            bytes: totals.allocated,
            inodes: totals.inodes,
        })
    }

    fn temp_path(&self, tag: &str) -> PathBuf {
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        self.root.join(format!("{TEMP_PREFIX}{tag}-{pid}-{seq}"))
    }
}

/// Hashes (SHA-256) everything read through it: the layer's diff ID.
struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: std::io::Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: sha2::Sha256::default(),
        }
    }

    fn digest(self) -> String {
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(self.hasher.finalize()))
    }
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A temp directory removed on drop unless kept, so that every early return
/// (and a panic) cleans up after a failed unpack.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    fn create(path: PathBuf) -> Result<Self, StorageError> {
        make_dir(&path, 0o700)?;
        Ok(TempDir { path, keep: false })
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(error) = tree::remove_tree(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "failed to remove temp snapshot");
        }
    }
}

fn make_dir(path: &Path, mode: u32) -> Result<(), StorageError> {
    fs::create_dir(path).map_err(StorageError::io("create directory", path))?;
    // Explicit, so the daemon's umask does not decide the layer root's mode.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(StorageError::io("set mode of", path))
}

fn is_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// True for a chain id: 64 lowercase hex characters.
fn is_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_key(key: &str) -> Result<(), StorageError> {
    if is_key(key) {
        Ok(())
    } else {
        Err(StorageError::InvalidKey {
            key: key.to_string(),
        })
    }
}

#[cfg(test)]
mod tests;
