//! Images that do not come from a pull: registering local blobs (`docker
//! load`, `docker import`), naming and unnaming images (`docker tag`,
//! `docker rmi` of one name), and looking at a remote image before pulling it
//! (so a front end can report layers and fail early on an unknown tag).

use std::path::PathBuf;

use futures::Stream;
use oci_spec::image::ImageConfiguration;
use tokio::io::AsyncReadExt;
use tracing::info;

use super::{now_nanos, ImageRecord, ImageService, LayerRecord};
use crate::image::archive::{self, LoadLayer};
use crate::image::auth::Credentials;
use crate::image::digest::chain_ids;
use crate::image::manifest::{self, Descriptor, Document};
use crate::image::pull::{blob_key, snapshot_key};
use crate::image::{Digest, Error, Reference};
use crate::store::{Writer, BUILD_IMAGES, BUILD_KEYS, IMAGES, IMAGE_REFS};

/// What a registry says an image is, before pulling it.
#[derive(Debug, Clone)]
pub struct RemoteImage {
    pub reference: Reference,
    /// What the reference resolves to (an index or a manifest).
    pub digest: Digest,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl ImageService {
    /// Resolves `image` on its registry (mirrors first) and reads the
    /// manifest for this host, without fetching any blob.
    pub async fn remote_manifest(
        &self,
        image: &str,
        creds: &Credentials,
    ) -> Result<RemoteImage, Error> {
        let r = Reference::parse(image)?;
        let registry = &self.puller.registry;
        let mut last = None;
        for ep in registry.endpoints(&r) {
            let top = match registry
                .manifest(&ep, &r.repository, &r.manifest_ref(), creds)
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let doc = manifest::parse(&format!("manifest of {r}"), &top.content_type, &top.body)?;
            let m = match doc {
                Document::Manifest(m) => m,
                Document::Index(idx) => {
                    let want = manifest::host_platform();
                    let d = manifest::select_platform(&idx, &want).ok_or_else(|| {
                        Error::BadManifest {
                            what: format!("image index of {r}"),
                            reason: format!(
                                "no manifest for platform {}/{}",
                                want.os, want.architecture
                            ),
                        }
                    })?;
                    let inner = registry
                        .manifest(&ep, &r.repository, d.digest.as_str(), creds)
                        .await?;
                    match manifest::parse(
                        &format!("manifest {}", d.digest),
                        &inner.content_type,
                        &inner.body,
                    )? {
                        Document::Manifest(m) => m,
                        Document::Index(_) => {
                            return Err(Error::BadManifest {
                                what: format!("image index of {r}"),
                                reason: "nested indexes are not supported".into(),
                            })
                        }
                    }
                }
            };
            return Ok(RemoteImage {
                reference: r,
                digest: top.digest,
                config: m.config,
                layers: m.layers,
            });
        }
        Err(last.expect("there is always at least the registry itself"))
    }

    /// True if a blob is in the content store.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.content.exists(d)
    }

    /// Reads a (small) blob from the content store.
    pub async fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, Error> {
        self.content.read(d).await
    }

    /// Where a blob lives in the content store.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.content.path(d)
    }

    /// A scratch directory on the content store's file system, emptied at
    /// start-up (so a crash leaves nothing behind) and removed when dropped.
    pub fn scratch(&self) -> Result<Scratch, Error> {
        let dir = self.ingest.join(format!(
            "scratch-{}-{}",
            std::process::id(),
            super::next_scratch()
        ));
        std::fs::create_dir(&dir)
            .map_err(|e| Error::io(format!("failed to create {}", dir.display()), e))?;
        Ok(Scratch(dir))
    }

    /// Records an image made of local files: stores the layer blobs, config
    /// and manifest (an OCI manifest is made when none is given), unpacks
    /// each layer checking its diff ID against the config, then records the
    /// image under `names` (full `registry/repo:tag` strings), taking them
    /// from any image that held them. On error nothing is recorded.
    pub async fn register(
        &self,
        config: Vec<u8>,
        layers: Vec<LoadLayer>,
        manifest_body: Option<Vec<u8>>,
        names: Vec<String>,
    ) -> Result<ImageRecord, Error> {
        self.register_into(config, layers, manifest_body, Target::Images(names))
            .await
    }

    /// [`ImageService::register`] into the build cache, under `key`
    /// (see `service/build.rs`).
    pub(super) async fn register_into(
        &self,
        config: Vec<u8>,
        layers: Vec<LoadLayer>,
        manifest_body: Option<Vec<u8>>,
        target: Target,
    ) -> Result<ImageRecord, Error> {
        let id = Digest::of(&config);
        let bad = |reason: String| Error::BadManifest {
            what: format!("image config {id}"),
            reason,
        };
        let parsed: ImageConfiguration =
            serde_json::from_slice(&config).map_err(|e| bad(e.to_string()))?;
        let diff_ids = parsed
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if diff_ids.len() != layers.len() {
            return Err(bad(format!(
                "{} layers but the config lists {} diff IDs",
                layers.len(),
                diff_ids.len()
            )));
        }
        let chains = chain_ids(&diff_ids);
        let manifest_body = manifest_body.unwrap_or_else(|| {
            let l: Vec<(Digest, u64, String)> = layers
                .iter()
                .map(|l| (l.file.digest.clone(), l.file.size, l.media_type.clone()))
                .collect();
            archive::oci_manifest(&id, config.len() as u64, &l)
        });
        let manifest_digest = Digest::of(&manifest_body);

        let mut lease = self.leases.lease();
        lease.add(blob_key(&id));
        lease.add(blob_key(&manifest_digest));
        for (l, c) in layers.iter().zip(&chains) {
            lease.add(blob_key(&l.file.digest));
            lease.add(snapshot_key(c));
        }
        let stored = self
            .store_local(&id, &config, &layers, &diff_ids, &chains, &manifest_body)
            .await;
        let records = match stored {
            Ok(r) => r,
            Err(e) => {
                drop(lease);
                // What was stored before the failure is referenced by nothing.
                if let Err(gc) = self.gc().await {
                    tracing::warn!(error = %gc, "failed to collect an unfinished image import");
                }
                return Err(e);
            }
        };
        let size = config.len() as u64 + records.iter().map(|l| l.size).sum::<u64>();
        let _g = self.gc_lock.lock().await;
        let rec = self
            .write_images(move |w| {
                let table = match &target {
                    Target::Images(_) => IMAGES,
                    Target::Build(_) => BUILD_IMAGES,
                };
                let mut rec = w
                    .get::<ImageRecord>(table, id.as_str())?
                    .unwrap_or(ImageRecord {
                        id: id.clone(),
                        repo_tags: vec![],
                        repo_digests: vec![],
                        size,
                        manifest_digest,
                        index_digest: None,
                        layers: records,
                        pulled_at: now_nanos(),
                    });
                match &target {
                    Target::Images(names) => {
                        for n in names {
                            claim(w, &mut rec, n)?;
                        }
                    }
                    Target::Build(key) => w.put(BUILD_KEYS, key, &rec.id.to_string())?,
                }
                w.put(table, rec.id.as_str(), &rec)?;
                Ok::<_, Error>(rec)
            })
            .await?;
        drop(lease);
        info!(image = %rec.id, tags = ?rec.repo_tags, "registered local image");
        Ok(rec)
    }

    async fn store_local(
        &self,
        id: &Digest,
        config: &[u8],
        layers: &[LoadLayer],
        diff_ids: &[Digest],
        chains: &[Digest],
        manifest_body: &[u8],
    ) -> Result<Vec<LayerRecord>, Error> {
        let mut out = Vec::with_capacity(layers.len());
        for ((l, diff_id), chain) in layers.iter().zip(diff_ids).zip(chains) {
            let d = &l.file.digest;
            if !self.content.exists(d) {
                self.content
                    .ingest(d, l.file.size, file_stream(l.file.path.clone()))
                    .await?;
            }
            let key = chain.hex().to_string();
            if !self.snapshots.exists(&key) {
                let snaps = self.snapshots.clone();
                let blob = self.content.path(d);
                let media_type = l.media_type.clone();
                let expected = diff_id.to_string();
                let layer = d.to_string();
                tokio::task::spawn_blocking(move || {
                    snaps.unpack(&key, &blob, &media_type, Some(&expected))
                })
                .await
                .map_err(|e| Error::Cancelled(format!("unpack task for layer {layer}: {e}")))?
                .map_err(|source| Error::unpack(d.to_string(), source))?;
            }
            out.push(LayerRecord {
                digest: d.clone(),
                media_type: l.media_type.clone(),
                size: l.file.size,
                diff_id: diff_id.clone(),
                chain_id: chain.clone(),
            });
        }
        self.content.write(id, config).await?;
        self.content
            .write(&Digest::of(manifest_body), manifest_body)
            .await?;
        Ok(out)
    }

    /// Gives image `id` the name `name` (a full `registry/repo:tag`), taking
    /// it from whichever image held it.
    pub async fn tag(&self, id: &Digest, name: &str) -> Result<ImageRecord, Error> {
        let _g = self.gc_lock.lock().await;
        let (id, name) = (id.clone(), name.to_string());
        self.write_images(move |w| {
            let mut rec = w
                .get::<ImageRecord>(IMAGES, id.as_str())?
                .ok_or_else(|| Error::NotFound(id.to_string()))?;
            claim(w, &mut rec, &name)?;
            w.put(IMAGES, rec.id.as_str(), &rec)?;
            Ok(rec)
        })
        .await
    }

    /// Takes the name `name` (a full tagged or digested reference) off its
    /// image, which stays recorded even with no name left. Returns the
    /// image as it is afterwards, or `None` if no image had the name.
    pub async fn untag(&self, name: &str) -> Result<Option<ImageRecord>, Error> {
        let _g = self.gc_lock.lock().await;
        let name = name.to_string();
        self.write_images(move |w| {
            let Some(id) = w.get::<String>(IMAGE_REFS, &name)? else {
                return Ok(None);
            };
            w.delete(IMAGE_REFS, &name)?;
            let Some(mut rec) = w.get::<ImageRecord>(IMAGES, &id)? else {
                return Ok(None);
            };
            rec.repo_tags.retain(|t| t != &name);
            rec.repo_digests.retain(|t| t != &name);
            w.put(IMAGES, &id, &rec)?;
            Ok(Some(rec))
        })
        .await
    }
}

/// Where [`ImageService::register_into`] records an image.
pub(super) enum Target {
    /// As an image, with these names.
    Images(Vec<String>),
    /// In the build cache, under this key.
    Build(String),
}

/// Points `name` at `rec` (in `rec.repo_tags`, or `repo_digests` for a
/// `name@digest`), removing it from the image that held it.
pub(super) fn claim(w: &mut Writer<'_>, rec: &mut ImageRecord, name: &str) -> Result<(), Error> {
    if let Some(old_id) = w.get::<String>(IMAGE_REFS, name)? {
        if old_id != rec.id.as_str() {
            if let Some(mut old) = w.get::<ImageRecord>(IMAGES, &old_id)? {
                old.repo_tags.retain(|t| t != name);
                old.repo_digests.retain(|t| t != name);
                w.put(IMAGES, &old_id, &old)?;
            }
        }
    }
    w.put(IMAGE_REFS, name, &rec.id.to_string())?;
    let list = if name.contains('@') {
        &mut rec.repo_digests
    } else {
        &mut rec.repo_tags
    };
    if !list.iter().any(|t| t == name) {
        list.push(name.to_string());
    }
    Ok(())
}

/// A file's bytes as a stream, for the content store's ingest.
fn file_stream(path: PathBuf) -> impl Stream<Item = Result<bytes::Bytes, Error>> {
    futures::stream::try_unfold((None::<tokio::fs::File>, path), |(file, path)| async move {
        let mut f = match file {
            Some(f) => f,
            None => tokio::fs::File::open(&path)
                .await
                .map_err(|e| Error::io(format!("failed to open {}", path.display()), e))?,
        };
        let mut buf = vec![0u8; 256 << 10];
        let n = f
            .read(&mut buf)
            .await
            .map_err(|e| Error::io(format!("failed to read {}", path.display()), e))?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((bytes::Bytes::from(buf), (Some(f), path))))
    })
}

/// A scratch directory, removed with its contents when dropped.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "failed to remove scratch directory");
        }
    }
}
