//! The pull pipeline: resolve a reference on the first endpoint that answers,
//! pick the platform from an index, fetch the config, then fetch and unpack the
//! layers in parallel. Every blob is verified by digest and size; a blob or
//! snapshot shared by concurrent pulls is fetched and unpacked once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use oci_spec::image::ImageConfiguration;
use tracing::{debug, info, warn};

use super::auth::Credentials;
use super::content::ContentStore;
use super::digest::chain_ids;
use super::manifest::{self, Descriptor, Document};
use super::registry::{Endpoint, RegistryClient};
use super::service::LayerRecord;
use super::{Digest, Error, Reference};
use crate::storage::SnapshotStore;

/// Layers fetched and unpacked at once.
const LAYER_PARALLELISM: usize = 4;
/// Largest image config accepted.
const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// What a pull produced, ready to be recorded.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub reference: Reference,
    /// The digest the reference resolved to (an index or a manifest).
    pub repo_digest: Digest,
    pub manifest_digest: Digest,
    pub index_digest: Option<Digest>,
    pub config_digest: Digest,
    pub config: ImageConfiguration,
    pub layers: Vec<LayerRecord>,
    /// Config plus compressed layers, in bytes.
    pub size: u64,
}

/// Per-key async mutexes: one download or unpack per digest at a time.
#[derive(Default)]
pub struct KeyedLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl KeyedLocks {
    /// Waits for the lock of `key`.
    pub async fn lock(&self, key: &str) -> KeyedGuard<'_> {
        let m = self
            .0
            .lock()
            .unwrap()
            .entry(key.to_string())
            .or_default()
            .clone();
        let guard = m.lock_owned().await;
        KeyedGuard {
            locks: self,
            key: key.to_string(),
            guard: Some(guard),
        }
    }
}

/// Holds one key's lock; the map entry goes when nobody else waits for it.
pub struct KeyedGuard<'a> {
    locks: &'a KeyedLocks,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.0.lock().unwrap();
        // The map and our guard hold the only references: no waiter, forget the key.
        if map
            .get(&self.key)
            .is_some_and(|a| Arc::strong_count(a) == 2)
        {
            map.remove(&self.key);
        }
        self.guard.take();
    }
}

/// Content and snapshots in use by pulls not yet recorded; GC spares them.
#[derive(Default)]
pub struct Leases(Mutex<HashMap<String, usize>>);

/// Holds keys leased until dropped.
pub struct Lease<'a> {
    leases: &'a Leases,
    keys: Vec<String>,
}

impl Leases {
    /// Starts an empty lease.
    pub fn lease(&self) -> Lease<'_> {
        Lease {
            leases: self,
            keys: Vec::new(),
        }
    }

    /// True if `key` is held by a lease.
    pub fn contains(&self, key: &str) -> bool {
        self.0.lock().unwrap().contains_key(key)
    }
}

impl Lease<'_> {
    /// Adds a key (e.g. `blob:sha256:…`, `snapshot:<hex>`).
    pub fn add(&mut self, key: String) {
        *self
            .leases
            .0
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default() += 1;
        self.keys.push(key);
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut m = self.leases.0.lock().unwrap();
        for k in &self.keys {
            if let Some(n) = m.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    m.remove(k);
                }
            }
        }
    }
}

/// The lease key of a blob.
pub fn blob_key(d: &Digest) -> String {
    format!("blob:{d}")
}

/// The lease key of a snapshot.
pub fn snapshot_key(chain_id: &Digest) -> String {
    format!("snapshot:{}", chain_id.hex())
}

/// Fetches images into the content and snapshot stores.
pub struct Puller {
    pub registry: RegistryClient,
    pub content: Arc<ContentStore>,
    pub snapshots: Arc<SnapshotStore>,
    pub leases: Arc<Leases>,
    blob_locks: KeyedLocks,
    snapshot_locks: KeyedLocks,
}

impl Puller {
    pub fn new(
        registry: RegistryClient,
        content: Arc<ContentStore>,
        snapshots: Arc<SnapshotStore>,
        leases: Arc<Leases>,
    ) -> Self {
        Puller {
            registry,
            content,
            snapshots,
            leases,
            blob_locks: KeyedLocks::default(),
            snapshot_locks: KeyedLocks::default(),
        }
    }

    /// Pulls `r` for platform `want` (from an index; a single manifest is
    /// taken as it is); the content stays leased by `lease` until the caller
    /// has recorded it.
    pub async fn pull(
        &self,
        r: &Reference,
        creds: &Credentials,
        want: &manifest::Platform,
        lease: &mut Lease<'_>,
    ) -> Result<Pulled, Error> {
        let (ep, top) = self.resolve(r, creds).await?;
        let repo = r.repository.as_str();
        let top_doc = manifest::parse(&format!("manifest of {r}"), &top.content_type, &top.body)?;
        let (manifest, manifest_digest, manifest_body, index) = match top_doc {
            Document::Manifest(m) => (m, top.digest.clone(), top.body.clone(), None),
            Document::Index(idx) => {
                let d =
                    manifest::select_platform(&idx, want).ok_or_else(|| Error::BadManifest {
                        what: format!("image index of {r}"),
                        reason: format!("no manifest for platform {want}"),
                    })?;
                debug!(image = %r, manifest = %d.digest, "selected platform manifest");
                let m = self
                    .registry
                    .manifest(&ep, repo, d.digest.as_str(), creds)
                    .await?;
                match manifest::parse(&format!("manifest {}", d.digest), &m.content_type, &m.body)?
                {
                    Document::Manifest(man) => (
                        man,
                        m.digest,
                        m.body,
                        Some((top.digest.clone(), top.body.clone())),
                    ),
                    Document::Index(_) => {
                        return Err(Error::BadManifest {
                            what: format!("image index of {r}"),
                            reason: "nested indexes are not supported".into(),
                        })
                    }
                }
            }
        };

        // Config first: it names the layers' diff IDs.
        let cfg = &manifest.config;
        if cfg.size > MAX_CONFIG_BYTES {
            return Err(Error::BadManifest {
                what: format!("config {}", cfg.digest),
                reason: format!("config larger than {MAX_CONFIG_BYTES} bytes"),
            });
        }
        lease.add(blob_key(&cfg.digest));
        self.ensure_blob(&ep, repo, cfg, creds).await?;
        let config_bytes = self.content.read(&cfg.digest).await?;
        let config: ImageConfiguration =
            serde_json::from_slice(&config_bytes).map_err(|e| Error::BadManifest {
                what: format!("image config {}", cfg.digest),
                reason: e.to_string(),
            })?;
        let diff_ids = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::BadManifest {
                what: format!("image config {}", cfg.digest),
                reason: e.to_string(),
            })?;
        if diff_ids.len() != manifest.layers.len() {
            return Err(Error::BadManifest {
                what: format!("manifest {manifest_digest}"),
                reason: format!(
                    "{} layers but the config lists {} diff IDs",
                    manifest.layers.len(),
                    diff_ids.len()
                ),
            });
        }
        let chains = chain_ids(&diff_ids);
        for (l, c) in manifest.layers.iter().zip(&chains) {
            lease.add(blob_key(&l.digest));
            lease.add(snapshot_key(c));
        }
        for d in [&manifest_digest, &top.digest] {
            lease.add(blob_key(d));
        }

        let layers_desc = &manifest.layers;
        let jobs = (0..layers_desc.len())
            .map(|i| self.layer(&ep, repo, &layers_desc[i], &diff_ids[i], &chains[i], creds));
        let layers: Vec<LayerRecord> = futures::stream::iter(jobs)
            .buffered(LAYER_PARALLELISM)
            .try_collect()
            .await?;

        self.content.write(&manifest_digest, &manifest_body).await?;
        if let Some((d, body)) = &index {
            self.content.write(d, body).await?;
        }
        let size = cfg.size + layers.iter().map(|l| l.size).sum::<u64>();
        info!(image = %r, id = %cfg.digest, layers = layers.len(), size, "pulled image");
        Ok(Pulled {
            reference: r.clone(),
            repo_digest: top.digest,
            manifest_digest,
            index_digest: index.map(|(d, _)| d),
            config_digest: cfg.digest.clone(),
            config,
            layers,
            size,
        })
    }

    /// The first endpoint (mirrors, then the host) that serves the manifest.
    async fn resolve(
        &self,
        r: &Reference,
        creds: &Credentials,
    ) -> Result<(Endpoint, super::registry::FetchedManifest), Error> {
        let mut last = None;
        for ep in self.registry.endpoints(r) {
            match self
                .registry
                .manifest(&ep, &r.repository, &r.manifest_ref(), creds)
                .await
            {
                Ok(m) => {
                    debug!(image = %r, endpoint = %ep.base, "resolved manifest");
                    return Ok((ep, m));
                }
                Err(e) => {
                    if ep.is_mirror {
                        warn!(image = %r, mirror = %ep.base, error = %e, "mirror failed, trying the next endpoint if any");
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::InvalidReference {
            reference: r.to_string(),
            reason: format!(
                "no endpoint to pull from: registries.{:?} has mirrors_only and no usable mirror",
                r.registry
            ),
        }))
    }

    async fn layer(
        &self,
        ep: &Endpoint,
        repo: &str,
        desc: &Descriptor,
        diff_id: &Digest,
        chain_id: &Digest,
        creds: &Credentials,
    ) -> Result<LayerRecord, Error> {
        self.ensure_blob(ep, repo, desc, creds).await?;
        let _g = self.snapshot_locks.lock(chain_id.as_str()).await;
        let key = chain_id.hex().to_string();
        if !self.snapshots.exists(&key) {
            let snaps = self.snapshots.clone();
            let blob = self.content.path(&desc.digest);
            let media_type = desc.media_type.clone();
            let expected = diff_id.to_string();
            let layer = desc.digest.to_string();
            tokio::task::spawn_blocking(move || {
                snaps.unpack(&key, &blob, &media_type, Some(&expected))
            })
            .await
            .map_err(|e| Error::Cancelled(format!("unpack task for layer {layer}: {e}")))?
            .map_err(|source| Error::unpack(desc.digest.to_string(), source))?;
        }
        Ok(LayerRecord {
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
            size: desc.size,
            diff_id: diff_id.clone(),
            chain_id: chain_id.clone(),
        })
    }

    async fn ensure_blob(
        &self,
        ep: &Endpoint,
        repo: &str,
        desc: &Descriptor,
        creds: &Credentials,
    ) -> Result<(), Error> {
        let _g = self.blob_locks.lock(desc.digest.as_str()).await;
        if self.content.exists(&desc.digest) {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let res = self.fetch_blob(ep, repo, desc, creds).await;
            match res {
                Err(Error::Network { .. }) if attempt < 3 => {
                    warn!(blob = %desc.digest, attempt, "blob download failed, retrying");
                }
                other => return other,
            }
        }
    }

    async fn fetch_blob(
        &self,
        ep: &Endpoint,
        repo: &str,
        desc: &Descriptor,
        creds: &Credentials,
    ) -> Result<(), Error> {
        let resp = self.registry.blob(ep, repo, &desc.digest, creds).await?;
        let url = resp.url().to_string();
        let stream = resp.bytes_stream().map(move |r| {
            r.map_err(|source| Error::Network {
                url: url.clone(),
                source,
            })
        });
        self.content.ingest(&desc.digest, desc.size, stream).await
    }
}
