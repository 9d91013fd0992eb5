//! Image operations that publish Docker's image events (`pull`, `untag`,
//! `delete`) from inside the engine, so an image pulled or removed through
//! CRI shows in `docker events` as one pulled or removed through Docker.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::events::Event;
use super::Engine;
use crate::image::archive::{layer_media_type, LoadLayer, Spooled};
use crate::image::auth::Credentials;
use crate::image::digest::Hasher;
use crate::image::{manifest, Digest, Error, ImageRecord, Reference};

/// A root file system to import as a one-layer image (`docker import`).
pub struct RootfsImport {
    /// The image config without its `rootfs` (added here).
    pub config: serde_json::Value,
    /// Names the image gets (already tagged references).
    pub names: Vec<String>,
}

impl Engine {
    /// Publishes an image event with Docker's attributes.
    pub(crate) fn emit_image(&self, action: &str, id: &str, name: &str) {
        self.events
            .emit(Event::new("image", action, id).with("name", name));
    }

    /// Pulls `name` for `platform` and publishes `pull` (named as Docker
    /// names it: `busybox:latest` for `docker.io/library/busybox:latest`).
    pub async fn pull_image(
        &self,
        name: &str,
        creds: &Credentials,
        platform: &manifest::Platform,
    ) -> Result<ImageRecord, Error> {
        let rec = self.images.pull_for(name, creds, platform).await?;
        let shown = Reference::parse(name)
            .map(|r| r.familiar())
            .unwrap_or_else(|_| name.to_string());
        self.emit_image("pull", &shown, &shown);
        Ok(rec)
    }

    /// Takes the name `name` off its image and publishes `untag`.
    pub async fn untag_image(&self, name: &str) -> Result<Option<ImageRecord>, Error> {
        let after = self.images.untag(name).await?;
        if let Some(rec) = &after {
            let id = rec.id.as_str();
            self.emit_image("untag", id, id);
        }
        Ok(after)
    }

    /// Removes the image `name_or_id` (with every name it still has) and
    /// publishes `delete`; false when there was no such image.
    pub async fn delete_image(&self, name_or_id: &str) -> Result<bool, Error> {
        let id = self.images.resolve(name_or_id)?.map(|r| r.id.to_string());
        let removed = self.images.remove(name_or_id).await?;
        if let (true, Some(id)) = (removed, id) {
            self.emit_image("delete", &id, &id);
        }
        Ok(removed)
    }

    /// CRI's RemoveImage: the image and all its names go, as `docker rmi`
    /// of its id does (an `untag` per name, then `delete`).
    pub async fn remove_image(&self, name_or_id: &str) -> Result<bool, Error> {
        let Some(rec) = self.images.resolve(name_or_id)? else {
            return Ok(false);
        };
        for name in rec.repo_tags.iter().chain(&rec.repo_digests) {
            self.untag_image(name).await?;
        }
        self.delete_image(rec.id.as_str()).await
    }

    /// Imports a (possibly compressed) tar of a root file system, read from
    /// `body`, as a one-layer image and publishes `import`. An empty body or
    /// one that is no archive is the caller's error.
    pub async fn import_rootfs<E: std::fmt::Display>(
        &self,
        body: impl Stream<Item = Result<Bytes, E>> + Unpin,
        mut import: RootfsImport,
    ) -> Result<ImageRecord, super::Error> {
        let scratch = self.images.scratch()?;
        let path = scratch.path().join("layer");
        let (size, digest) = spool(body, &path).await?;
        if size == 0 {
            return Err(super::Error::InvalidArgument(
                "nothing to import: the request body must be a tar archive of a root file system"
                    .into(),
            ));
        }
        let p = path.clone();
        let (compression, diff_id) = super::container::blocking(move || {
            diff_id_of(&p).map_err(|e| {
                super::Error::InvalidArgument(format!("failed to read the imported archive: {e}"))
            })
        })
        .await?;
        import.config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": [diff_id]});
        let layer = LoadLayer {
            file: Spooled { path, size, digest },
            media_type: layer_media_type(compression).to_string(),
        };
        let config = serde_json::to_vec(&import.config).map_err(|e| {
            super::Error::internal(format!("failed to encode the image config: {e}"))
        })?;
        let rec = self
            .images
            .register(config, vec![layer], None, import.names)
            .await?;
        drop(scratch);
        let id = rec.id.as_str();
        self.emit_image("import", id, id);
        Ok(rec)
    }
}

/// Writes a byte stream to `path`, returning its size and digest.
async fn spool<E: std::fmt::Display>(
    mut body: impl Stream<Item = Result<Bytes, E>> + Unpin,
    path: &std::path::Path,
) -> Result<(u64, Digest), super::Error> {
    let io = |e: std::io::Error| super::Error::io(format!("failed to write {}", path.display()), e);
    let mut f = tokio::fs::File::create(path).await.map_err(io)?;
    let mut hasher = Hasher::default();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            super::Error::InvalidArgument(format!("failed to read request body: {e}"))
        })?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        f.write_all(&chunk).await.map_err(io)?;
    }
    f.flush().await.map_err(io)?;
    Ok((size, hasher.finish()))
}

/// The compression of a layer file and the digest of its tar stream.
fn diff_id_of(
    path: &std::path::Path,
) -> std::io::Result<(crate::storage::compression::Compression, Digest)> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let (compression, mut r) = crate::storage::compression::decompressor(f, "")?;
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok((compression, h.finish()))
}
