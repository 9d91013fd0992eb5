//! CRI ImageService.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};
use tracing::{info_span, Instrument};

use super::image_status;
use crate::engine::Engine;
use crate::image::auth::Credentials;
use crate::image::service::image_user;
use crate::image::ImageRecord;

/// The gRPC ImageService over the engine.
pub struct Images {
    engine: Arc<Engine>,
    /// The unfiltered ListImages answer, under the image generation it was
    /// made in: the kubelet lists images every few seconds, and between
    /// pulls and removals the answer is the same (no store read, no config
    /// lookup, no pinned-name resolution).
    listed: std::sync::Mutex<Option<(u64, Vec<cri::Image>)>>,
}

impl Images {
    pub fn new(engine: Arc<Engine>) -> Self {
        Images {
            engine,
            listed: std::sync::Mutex::new(None),
        }
    }

    fn cached_list(&self) -> std::sync::MutexGuard<'_, Option<(u64, Vec<cri::Image>)>> {
        self.listed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every image in CRI form, from memory while no image changed.
    async fn all_images(&self) -> Result<Vec<cri::Image>, Status> {
        let generation = self.engine.images.generation();
        if let Some((g, images)) = self.cached_list().as_ref() {
            if *g == generation {
                return Ok(images.clone());
            }
        }
        let records = self
            .engine
            .images
            .list()
            .map_err(|e| image_status("failed to list images", e))?;
        let images = self.listed_images(&records).await?;
        *self.cached_list() = Some((generation, images.clone()));
        Ok(images)
    }

    /// ListImages' answer for these records.
    async fn listed_images(&self, records: &[ImageRecord]) -> Result<Vec<cri::Image>, Status> {
        let mut images = Vec::with_capacity(records.len());
        for r in records {
            images.push(
                self.to_cri(r)
                    .await
                    .map_err(|e| image_status("failed to list images", e))?,
            );
        }
        Ok(images)
    }

    async fn to_cri(&self, rec: &ImageRecord) -> Result<cri::Image, crate::image::Error> {
        let config = self.engine.images.shared_config(rec).await?;
        let (uid, username) = image_user(&config);
        Ok(cri::Image {
            id: rec.id.to_string(),
            repo_tags: rec.repo_tags.clone(),
            repo_digests: rec.repo_digests.clone(),
            size: rec.size,
            uid: uid.map(|value| cri::Int64Value { value }),
            username,
            spec: Some(cri::ImageSpec {
                image: rec.id.to_string(),
                annotations: HashMap::new(),
                ..Default::default()
            }),
            pinned: self.pinned(rec),
        })
    }

    /// Whether `cri.pinned_images` names this image (by tag, digest or id).
    fn pinned(&self, rec: &ImageRecord) -> bool {
        self.engine
            .config
            .cri
            .pinned_images
            .iter()
            .any(|name| matches!(self.engine.images.resolve(name), Ok(Some(p)) if p.id == rec.id))
    }
}

fn image_name(spec: Option<&cri::ImageSpec>) -> Result<&str, Status> {
    match spec.map(|s| s.image.trim()) {
        Some(s) if !s.is_empty() => {
            tracing::Span::current().record("image", s);
            Ok(s)
        }
        _ => Err(Status::invalid_argument(
            "image spec with a non-empty image name is required",
        )),
    }
}

#[tonic::async_trait]
impl ImageService for Images {
    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let filter = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.is_empty());
        let Some(f) = filter else {
            let images = self.all_images().await?;
            return Ok(Response::new(cri::ListImagesResponse { images }));
        };
        let found: Vec<ImageRecord> = self
            .engine
            .images
            .resolve(&f)
            .map_err(|e| image_status("failed to list images", e))?
            .into_iter()
            .collect();
        let images = self.listed_images(&found).await?;
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let req = req.into_inner();
        let name = image_name(req.image.as_ref())?;
        let op = || format!("failed to get status of image {name:?}");
        let Some(rec) = self
            .engine
            .images
            .resolve(name)
            .map_err(|e| image_status(&op(), e))?
        else {
            return Ok(Response::new(cri::ImageStatusResponse::default()));
        };
        let image = self
            .to_cri(&rec)
            .await
            .map_err(|e| image_status(&op(), e))?;
        let mut info = HashMap::new();
        if req.verbose {
            let config = self
                .engine
                .images
                .config(&rec)
                .await
                .map_err(|e| image_status(&op(), e))?;
            let v = serde_json::json!({
                "imageSpec": config,
                "manifestDigest": rec.manifest_digest,
                "indexDigest": rec.index_digest,
                "chainID": rec.layers.last().map(|l| l.chain_id.to_string()),
                "layers": rec.layers,
                "snapshotter": "overlayfs",
            });
            info.insert("info".to_string(), v.to_string());
        }
        Ok(Response::new(cri::ImageStatusResponse {
            image: Some(image),
            info,
        }))
    }

    async fn pull_image(
        &self,
        req: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let req = req.into_inner();
        let name = image_name(req.image.as_ref())?.to_string();
        let op = format!("failed to pull image {name:?}");
        let creds = match &req.auth {
            Some(a) => Credentials::from_parts(
                &a.username,
                &a.password,
                &a.auth,
                &a.identity_token,
                &a.registry_token,
            )
            .map_err(|e| image_status(&op, e))?,
            None => Credentials::Anonymous,
        };
        // The image spec's runtime handler picks the platform (kubelet's
        // RuntimeClassInImageCriApi); an unknown handler is refused.
        let handler = req
            .image
            .as_ref()
            .map(|i| i.runtime_handler.as_str())
            .unwrap_or("");
        let platform = self
            .engine
            .pull_platform(handler)
            .map_err(|e| crate::cri::engine_status(&op, e))?;
        let rec = self
            .engine
            .pull_image(&name, &creds, &platform)
            .instrument(info_span!("pull_image", image = %name, %platform))
            .await
            .map_err(|e| image_status(&op, e))?;
        Ok(Response::new(cri::PullImageResponse {
            image_ref: rec.id.to_string(),
        }))
    }

    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let req = req.into_inner();
        let name = image_name(req.image.as_ref())?;
        // Removing an image that is already gone succeeds (CRI: idempotent).
        self.engine
            .remove_image(name)
            .instrument(info_span!("remove_image", image = %name))
            .await
            .map_err(|e| image_status(&format!("failed to remove image {name:?}"), e))?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _req: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let (bytes, inodes) = self
            .engine
            .images
            .usage()
            .await
            .map_err(|e| image_status("failed to measure the image filesystem", e))?;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(1);
        let usage = cri::FilesystemUsage {
            timestamp,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: self.engine.config.root.display().to_string(),
            }),
            used_bytes: Some(cri::UInt64Value { value: bytes }),
            inodes_used: Some(cri::UInt64Value { value: inodes }),
        };
        let (layer_bytes, layer_inodes) = self
            .engine
            .writable_layers_usage()
            .await
            .map_err(|e| super::engine_status("failed to measure the container layers", e))?;
        // The same filesystem as the images (both under `root`), named as
        // ContainerStats names the writable layers, so the kubelet sees one disk.
        let layers = cri::FilesystemUsage {
            timestamp,
            fs_id: usage.fs_id.clone(),
            used_bytes: Some(cri::UInt64Value { value: layer_bytes }),
            inodes_used: Some(cri::UInt64Value {
                value: layer_inodes,
            }),
        };
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![usage],
            container_filesystems: vec![layers],
        }))
    }
}
