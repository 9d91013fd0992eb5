//! The build cache: the image each build step made, recorded apart from
//! the images (`docker images` and `crictl images` list only what a build
//! finished), found again by the step's cache key — its parent image, its
//! instruction and, for COPY/ADD, the digest of what it copied. A build
//! step's image can be resolved by its full id (a RUN container runs from
//! it); the image a build ends with is promoted into the images with its
//! tags. GC keeps what the cache references; `/build/prune` drops it all.

use super::local::{claim, Target};
use super::{blocking, ImageRecord, ImageService};
use crate::image::archive::{LoadLayer, Spooled};
use crate::image::{Digest, Error};
use crate::store::{BUILD_IMAGES, BUILD_KEYS, IMAGES};

/// A layer a build step made: a compressed tar in a scratch file.
#[derive(Debug, Clone)]
pub struct StepLayer {
    pub file: Spooled,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    pub media_type: String,
}

impl ImageService {
    /// The image a build step with `key` made before, if it is still whole.
    pub fn cached_step(&self, key: &str) -> Result<Option<ImageRecord>, Error> {
        let Some(id) = self.store.get::<String>(BUILD_KEYS, key)? else {
            return Ok(None);
        };
        let rec = self
            .store
            .get::<ImageRecord>(BUILD_IMAGES, &id)?
            .or(self.store.get::<ImageRecord>(IMAGES, &id)?);
        Ok(rec.filter(|r| {
            r.blobs().all(|b| self.content.exists(b))
                && r.snapshot_keys().iter().all(|k| self.snapshots.exists(k))
        }))
    }

    /// Records a build step's image: `config` (whose diff IDs are the
    /// parent's plus the new layer's, if any) over `parent`'s layers.
    pub async fn register_step(
        &self,
        config: Vec<u8>,
        parent: Option<&ImageRecord>,
        layer: Option<StepLayer>,
        key: String,
    ) -> Result<ImageRecord, Error> {
        let layers = self.child_layers(parent, layer);
        self.register_into(config, layers, None, Target::Build(key))
            .await
    }

    /// Records an image (`docker commit`): `config` over `parent`'s layers
    /// and `layer`, named `names`. A snapshot already made for the new
    /// layer's chain id is used as it is.
    pub async fn register_child(
        &self,
        config: Vec<u8>,
        parent: Option<&ImageRecord>,
        layer: Option<StepLayer>,
        names: Vec<String>,
    ) -> Result<ImageRecord, Error> {
        let layers = self.child_layers(parent, layer);
        self.register_into(config, layers, None, Target::Images(names))
            .await
    }

    /// The layers of `parent` (from the content store) and `layer`.
    fn child_layers(
        &self,
        parent: Option<&ImageRecord>,
        layer: Option<StepLayer>,
    ) -> Vec<LoadLayer> {
        let mut layers: Vec<LoadLayer> = parent
            .into_iter()
            .flat_map(|p| &p.layers)
            .map(|l| LoadLayer {
                file: Spooled {
                    path: self.content.path(&l.digest),
                    size: l.size,
                    digest: l.digest.clone(),
                },
                media_type: l.media_type.clone(),
            })
            .collect();
        if let Some(l) = layer {
            layers.push(LoadLayer {
                file: l.file,
                media_type: l.media_type,
            });
        }
        layers
    }

    /// Every build step's image.
    pub fn build_steps(&self) -> Result<Vec<ImageRecord>, Error> {
        Ok(self
            .store
            .list::<ImageRecord>(BUILD_IMAGES)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// Makes the build step's image `id` an image (listed, run by CRI
    /// pods), with `names` (full `registry/repo:tag` strings).
    pub async fn promote(&self, id: &Digest, names: Vec<String>) -> Result<ImageRecord, Error> {
        let _g = self.gc_lock.lock().await;
        let store = self.store.clone();
        let id = id.clone();
        blocking(move || {
            store.write(|w| {
                let mut rec = match w.get::<ImageRecord>(IMAGES, id.as_str())? {
                    Some(r) => r,
                    None => {
                        let mut r = w
                            .get::<ImageRecord>(BUILD_IMAGES, id.as_str())?
                            .ok_or_else(|| Error::NotFound(id.to_string()))?;
                        r.repo_tags.clear();
                        r.repo_digests.clear();
                        r.pulled_at = super::now_nanos();
                        r
                    }
                };
                for n in &names {
                    claim(w, &mut rec, n)?;
                }
                w.put(IMAGES, rec.id.as_str(), &rec)?;
                Ok(rec)
            })
        })
        .await
    }

    /// Forgets every build step (`POST /build/prune`) and collects what only
    /// they used: the ids forgotten and the bytes reclaimed.
    pub async fn prune_build_cache(&self) -> Result<(Vec<String>, u64), Error> {
        let before = self.usage().await?.0;
        let ids = {
            let _g = self.gc_lock.lock().await;
            let store = self.store.clone();
            blocking(move || {
                let keys = store.list::<serde_json::Value>(BUILD_KEYS)?;
                let ids: Vec<String> = store
                    .list::<serde_json::Value>(BUILD_IMAGES)?
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                store.write(|w| {
                    for (k, _) in &keys {
                        w.delete(BUILD_KEYS, k)?;
                    }
                    for id in &ids {
                        w.delete(BUILD_IMAGES, id)?;
                    }
                    Ok::<_, Error>(ids)
                })
            })
            .await?
        };
        self.gc().await?;
        let after = self.usage().await?.0;
        Ok((ids, before.saturating_sub(after)))
    }
}
