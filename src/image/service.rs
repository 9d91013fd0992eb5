//! The image service: the recorded images, their names, and garbage collection.
//!
//! An image is identified by its config digest. Names (`name:tag`) and repo
//! digests (`name@sha256:…`) point at exactly one image each; giving a name to
//! a new image takes it from the old one, which stays listed by id.
//! Recording a pull is one metadata transaction, so a crash before it leaves
//! only unreferenced blobs and snapshots, which the start-up GC removes.

use std::collections::HashSet;
use std::sync::Arc;

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::auth::Credentials;
use super::content::ContentStore;
use super::digest::is_hex64;
use super::manifest;
use super::pull::{blob_key, snapshot_key, Leases, Puller};
use super::registry::RegistryClient;
use super::{Digest, Error, Paths, Reference};
use crate::config::Config;
use crate::storage::SnapshotStore;
use crate::store::{Store, BUILD_IMAGES, IMAGES, IMAGE_REFS};

mod build;
mod local;
mod push;
pub use build::StepLayer;
pub use local::{RemoteImage, Scratch};

/// One layer of a recorded image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub diff_id: Digest,
    pub chain_id: Digest,
}

/// A recorded image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    /// The config digest, `sha256:…`.
    pub id: Digest,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Config plus compressed layers, in bytes.
    pub size: u64,
    pub manifest_digest: Digest,
    #[serde(default)]
    pub index_digest: Option<Digest>,
    pub layers: Vec<LayerRecord>,
    /// Unix nanoseconds of the first pull.
    pub pulled_at: i64,
}

impl ImageRecord {
    /// Every blob this image needs.
    pub fn blobs(&self) -> impl Iterator<Item = &Digest> {
        std::iter::once(&self.id)
            .chain(std::iter::once(&self.manifest_digest))
            .chain(self.index_digest.iter())
            .chain(self.layers.iter().map(|l| &l.digest))
    }

    /// Snapshot keys (chain id hex), bottom layer first.
    pub fn snapshot_keys(&self) -> Vec<String> {
        self.layers
            .iter()
            .map(|l| l.chain_id.hex().to_string())
            .collect()
    }
}

/// What a GC pass removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct GcStats {
    pub blobs: usize,
    pub snapshots: usize,
}

/// Images: pull, list, resolve, remove.
pub struct ImageService {
    store: Arc<Store>,
    content: Arc<ContentStore>,
    snapshots: Arc<SnapshotStore>,
    leases: Arc<Leases>,
    puller: Puller,
    /// Serialises metadata changes with GC's view of what is referenced.
    gc_lock: tokio::sync::Mutex<()>,
    /// Snapshots used by containers, by container id: GC keeps them even
    /// after their image is removed.
    in_use: SnapshotHolds,
    /// The content store's ingest directory (scratch space on its file system).
    ingest: std::path::PathBuf,
    /// Parsed image configs by config digest. Content-addressed, so an entry
    /// is never stale; ListImages, CreateContainer and StopContainer read
    /// configs on every call and need no disk read or JSON parse for them.
    configs: std::sync::Mutex<std::collections::HashMap<String, Arc<ImageConfiguration>>>,
    /// Counts the writes to the image tables ([`ImageService::generation`]):
    /// what a front door caches of the image list is good while it holds.
    generation: std::sync::atomic::AtomicU64,
}

/// Snapshots used by containers, by container id: GC keeps them even after
/// their image is removed. Cheap to clone (one shared map).
#[derive(Debug, Clone, Default)]
pub struct SnapshotHolds(Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>>);

impl SnapshotHolds {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Vec<String>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks `keys` as used by `container`.
    pub fn hold(&self, container: &str, keys: Vec<String>) {
        self.map().insert(container.to_string(), keys);
    }

    /// `container` no longer needs its snapshots.
    pub fn release(&self, container: &str) {
        self.map().remove(container);
    }

    /// Every held snapshot key.
    pub fn keys(&self) -> HashSet<String> {
        self.map().values().flatten().cloned().collect()
    }
}

/// Parsed configs kept in memory before the cache starts over.
const CONFIG_CACHE_LIMIT: usize = 1024;

impl ImageService {
    /// Opens the stores below `config.root`, dropping what a crash left half-made.
    pub fn open(config: Arc<Config>, store: Arc<Store>) -> Result<Self, Error> {
        let paths = Paths::under(&config.root);
        let content = Arc::new(ContentStore::open(&paths.blobs, &paths.ingest)?);
        let snapshots = Arc::new(
            SnapshotStore::open(&paths.snapshots)
                .map_err(|source| Error::unpack("<open>", source))?,
        );
        let leases = Arc::new(Leases::default());
        let puller = Puller::new(
            RegistryClient::new(config)?,
            content.clone(),
            snapshots.clone(),
            leases.clone(),
        );
        Ok(ImageService {
            store,
            content,
            snapshots,
            leases,
            puller,
            gc_lock: tokio::sync::Mutex::new(()),
            in_use: Default::default(),
            ingest: paths.ingest.clone(),
            configs: Default::default(),
            generation: Default::default(),
        })
    }

    /// The snapshot store (the runtime mounts image snapshots from it).
    pub fn snapshots(&self) -> &Arc<SnapshotStore> {
        &self.snapshots
    }

    /// Pulls an image for the host's platform and records it under its name
    /// and repo digest.
    pub async fn pull(&self, image: &str, creds: &Credentials) -> Result<ImageRecord, Error> {
        self.pull_for(image, creds, &manifest::host_platform())
            .await
    }

    /// Pulls an image for `platform` (what an index offers) and records it.
    pub async fn pull_for(
        &self,
        image: &str,
        creds: &Credentials,
        platform: &manifest::Platform,
    ) -> Result<ImageRecord, Error> {
        // A timer dropped unfinished (error or cancelled pull) counts a failure.
        let timer = crate::metrics::global().start_pull();
        let record = match self.pull_and_record(image, creds, platform).await {
            Ok(r) => r,
            Err(e) => {
                // Blobs of a failed pull are kept for the retry — unless the
                // pull failed for want of space: then what it wrote (no
                // image holds it; its lease is gone) is given back at once.
                if out_of_space(&e) {
                    warn!(image, error = %e, "pull ran out of space; collecting what it wrote");
                    if let Err(gc) = self.gc().await {
                        warn!(error = %gc, "collecting after a pull that ran out of space");
                    }
                }
                return Err(e);
            }
        };
        timer.success(record.size);
        // A pull's transient buffers (decompression, tar, HTTP bodies) were
        // freed: hand the pages back now rather than at the next trim tick.
        tokio::task::spawn_blocking(crate::memory::release_free_memory);
        Ok(record)
    }

    async fn pull_and_record(
        &self,
        image: &str,
        creds: &Credentials,
        platform: &manifest::Platform,
    ) -> Result<ImageRecord, Error> {
        let r = Reference::parse(image)?;
        let mut lease = self.leases.lease();
        let pulled = self.puller.pull(&r, creds, platform, &mut lease).await?;
        let _g = self.gc_lock.lock().await;
        let mut names = Vec::new();
        names.extend(r.tagged());
        let repo_digest = r.with_digest(&pulled.repo_digest);
        let id = pulled.config_digest.clone();
        let record = self
            .write_images(move |w| {
                let mut rec = match w.get::<ImageRecord>(IMAGES, id.as_str())? {
                    Some(rec) => rec,
                    None => ImageRecord {
                        id: id.clone(),
                        repo_tags: vec![],
                        repo_digests: vec![],
                        size: pulled.size,
                        manifest_digest: pulled.manifest_digest.clone(),
                        index_digest: pulled.index_digest.clone(),
                        layers: pulled.layers.clone(),
                        pulled_at: now_nanos(),
                    },
                };
                for name in names.iter().chain(std::iter::once(&repo_digest)) {
                    // Move the name from whichever image holds it now.
                    if let Some(old_id) = w.get::<String>(IMAGE_REFS, name)? {
                        if old_id != id.as_str() {
                            if let Some(mut old) = w.get::<ImageRecord>(IMAGES, &old_id)? {
                                old.repo_tags.retain(|t| t != name);
                                old.repo_digests.retain(|t| t != name);
                                w.put(IMAGES, &old_id, &old)?;
                            }
                        }
                    }
                    w.put(IMAGE_REFS, name, &id.to_string())?;
                }
                for t in &names {
                    if !rec.repo_tags.contains(t) {
                        rec.repo_tags.push(t.clone());
                    }
                }
                if !rec.repo_digests.contains(&repo_digest) {
                    rec.repo_digests.push(repo_digest.clone());
                }
                w.put(IMAGES, id.as_str(), &rec)?;
                Ok::<_, Error>(rec)
            })
            .await?;
        drop(lease);
        Ok(record)
    }

    /// A number that changes after every write to the image tables (pull,
    /// tag, untag, removal, load, build). Read it before reading the list: a
    /// list cached under the generation read before it is current as long as
    /// the generation is unchanged (a write bumps it only after its commit).
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// One write transaction on the image tables, off the async workers,
    /// then a new [`generation`](Self::generation) (also when the write
    /// failed: whether it committed is not known to the caller).
    async fn write_images<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut crate::store::Writer<'_>) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let store = self.store.clone();
        let res = blocking(move || store.write(f)).await;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        res
    }

    /// Every image, oldest first.
    pub fn list(&self) -> Result<Vec<ImageRecord>, Error> {
        let mut v: Vec<ImageRecord> = self
            .store
            .list::<ImageRecord>(IMAGES)?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        v.sort_by_key(|r| r.pulled_at);
        Ok(v)
    }

    /// Finds an image by id (`sha256:…`, full hex, or a unique hex prefix),
    /// by name (`busybox`, `name:tag`) or by repo digest (`name@sha256:…`).
    pub fn resolve(&self, name_or_id: &str) -> Result<Option<ImageRecord>, Error> {
        let s = name_or_id.trim();
        if s.is_empty() {
            return Err(Error::InvalidReference {
                reference: String::new(),
                reason: "empty image name".into(),
            });
        }
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if is_hex64(hex) {
            let id = format!("sha256:{hex}");
            if let Some(r) = self.store.get::<ImageRecord>(IMAGES, &id)? {
                return Ok(Some(r));
            }
        }
        if let Ok(r) = Reference::parse(s) {
            let key = match (&r.digest, r.tagged()) {
                (Some(d), _) => r.with_digest(d),
                (None, Some(t)) => t,
                (None, None) => unreachable!("a reference has a tag or a digest"),
            };
            if let Some(id) = self.store.get::<String>(IMAGE_REFS, &key)? {
                return Ok(self.store.get::<ImageRecord>(IMAGES, &id)?);
            }
        }
        if is_hex64(hex) {
            // A build step's image (a build's RUN container runs from it).
            let id = format!("sha256:{hex}");
            if let Some(r) = self.store.get::<ImageRecord>(BUILD_IMAGES, &id)? {
                return Ok(Some(r));
            }
        }
        // A short id, as Docker allows.
        if hex.len() >= 3 && hex.len() < 64 && hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            let hits: Vec<ImageRecord> = self
                .list()?
                .into_iter()
                .filter(|r| r.id.hex().starts_with(hex))
                .collect();
            if hits.len() == 1 {
                return Ok(hits.into_iter().next());
            }
        }
        Ok(None)
    }

    /// Removes an image with all its names, then its unshared content.
    /// Returns false if there was no such image.
    pub async fn remove(&self, name_or_id: &str) -> Result<bool, Error> {
        let Some(rec) = self.resolve(name_or_id)? else {
            return Ok(false);
        };
        if self
            .store
            .get::<ImageRecord>(IMAGES, rec.id.as_str())?
            .is_none()
        {
            // Only a build step's image: `/build/prune` removes those.
            return Ok(false);
        }
        {
            let _g = self.gc_lock.lock().await;
            let r = rec.clone();
            self.write_images(move |w| {
                for name in r.repo_tags.iter().chain(&r.repo_digests) {
                    if w.get::<String>(IMAGE_REFS, name)?.as_deref() == Some(r.id.as_str()) {
                        w.delete(IMAGE_REFS, name)?;
                    }
                }
                w.delete(IMAGES, r.id.as_str())?;
                Ok::<_, Error>(())
            })
            .await?;
        }
        info!(image = %rec.id, tags = ?rec.repo_tags, "removed image");
        self.gc().await?;
        Ok(true)
    }

    /// Removes blobs and snapshots that no image references and no pull holds.
    pub async fn gc(&self) -> Result<GcStats, Error> {
        let _g = self.gc_lock.lock().await;
        let mut blobs: HashSet<Digest> = HashSet::new();
        let mut snaps: HashSet<String> = HashSet::new();
        for r in self.list()?.into_iter().chain(self.build_steps()?) {
            blobs.extend(r.blobs().cloned());
            snaps.extend(r.snapshot_keys());
        }
        snaps.extend(self.in_use.keys());
        let content = self.content.clone();
        let snapshots = self.snapshots.clone();
        let leases = self.leases.clone();
        blocking(move || {
            let mut stats = GcStats::default();
            for d in content.list()? {
                if !blobs.contains(&d) && !leases.contains(&blob_key(&d)) {
                    content.remove(&d)?;
                    stats.blobs += 1;
                }
            }
            let keys = snapshots
                .list()
                .map_err(|source| Error::unpack("<gc>", source))?;
            for k in keys {
                let leased = Digest::parse(&format!("sha256:{k}"))
                    .map(|d| leases.contains(&snapshot_key(&d)))
                    .unwrap_or(false);
                if !snaps.contains(&k) && !leased {
                    if let Err(e) = snapshots.remove(&k) {
                        warn!(snapshot = %k, error = %e, "failed to remove snapshot");
                        continue;
                    }
                    stats.snapshots += 1;
                }
            }
            if stats.blobs + stats.snapshots > 0 {
                info!(
                    blobs = stats.blobs,
                    snapshots = stats.snapshots,
                    "garbage-collected image content"
                );
            }
            Ok(stats)
        })
        .await
    }

    /// Marks snapshots as used by a container (its rootfs lower dirs).
    pub fn hold_snapshots(&self, container: &str, keys: Vec<String>) {
        self.in_use.hold(container, keys);
    }

    /// A container no longer needs its snapshots.
    pub fn release_snapshots(&self, container: &str) {
        self.in_use.release(container);
    }

    /// The holds themselves, for work that ends outside a request (a
    /// container's rootfs unmounted in the background releases its own).
    pub fn snapshot_holds(&self) -> SnapshotHolds {
        self.in_use.clone()
    }

    /// The image's config, read from the content store.
    pub async fn config(&self, rec: &ImageRecord) -> Result<ImageConfiguration, Error> {
        Ok((*self.shared_config(rec).await?).clone())
    }

    /// [`ImageService::config`] without a copy, from the in-memory cache when
    /// it was read before.
    pub async fn shared_config(&self, rec: &ImageRecord) -> Result<Arc<ImageConfiguration>, Error> {
        let key = rec.id.to_string();
        if let Some(c) = self.cached_configs().get(&key) {
            return Ok(c.clone());
        }
        let bytes = self.content.read(&rec.id).await?;
        let config: ImageConfiguration =
            serde_json::from_slice(&bytes).map_err(|e| Error::BadManifest {
                what: format!("image config {}", rec.id),
                reason: e.to_string(),
            })?;
        let config = Arc::new(config);
        let mut cache = self.cached_configs();
        if cache.len() >= CONFIG_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, config.clone());
        Ok(config)
    }

    fn cached_configs(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<ImageConfiguration>>> {
        self.configs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes and inodes used by blobs and snapshots.
    pub async fn usage(&self) -> Result<(u64, u64), Error> {
        let content = self.content.clone();
        let snapshots = self.snapshots.clone();
        blocking(move || {
            let (b, f) = content.usage();
            let u = snapshots
                .usage()
                .map_err(|source| Error::unpack("<usage>", source))?;
            Ok((b + u.bytes, f + u.inodes))
        })
        .await
    }
}

/// Runs blocking work (fsync, directory walks) off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Cancelled(format!("blocking task: {e}")))?
}

/// Tells scratch directories apart.
fn next_scratch() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The uid or user name an image runs as, from its config's `User`.
pub fn image_user(config: &ImageConfiguration) -> (Option<i64>, String) {
    let user = config
        .config()
        .as_ref()
        .and_then(|c| c.user().clone())
        .unwrap_or_default();
    let name = user.split(':').next().unwrap_or("");
    if name.is_empty() {
        return (None, String::new());
    }
    match name.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, name.to_string()),
    }
}

/// True when `e` (or an error it wraps) is a full filesystem (ENOSPC,
/// EDQUOT).
fn out_of_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) {
                return true;
            }
        }
        // Some layers carry the cause as text only (an unpack error).
        if err.to_string().contains("No space left on device") {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod out_of_space_tests {
    #[derive(Debug, thiserror::Error)]
    #[error("writing a blob")]
    struct Wrapper(#[source] std::io::Error);

    #[test]
    fn enospc_is_found_through_wrappers_and_text() {
        let full = Wrapper(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(super::out_of_space(&full));
        let quota = std::io::Error::from_raw_os_error(libc::EDQUOT);
        assert!(super::out_of_space(&quota));
        let text = std::io::Error::other("unpack: write x: No space left on device (os error 28)");
        assert!(super::out_of_space(&text));
        let other = Wrapper(std::io::Error::from_raw_os_error(libc::EACCES));
        assert!(!super::out_of_space(&other));
    }
}
