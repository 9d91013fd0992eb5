//! The engine owns the model — images now; pods and containers as they land —
//! and is the only place that changes state. The CRI and Docker front doors call it.

use std::sync::Arc;

use tracing::info;

use crate::config::Config;
use crate::image::{self, ImageService};
use crate::store::Store;

/// Errors while bringing the engine up.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("failed to create {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Image(#[from] image::Error),
}

/// The daemon's state.
pub struct Engine {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub images: ImageService,
}

impl Engine {
    /// Opens the metadata store and the image stores, then reconciles them:
    /// content a crash left unreferenced is collected before anything is served.
    pub async fn open(config: Arc<Config>) -> Result<Self, EngineError> {
        for dir in [&config.root, &config.state] {
            std::fs::create_dir_all(dir).map_err(|source| EngineError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let store = Arc::new(Store::open(&config.root.join("metadata.redb"))?);
        let images = ImageService::open(config.clone(), store.clone())?;
        let gc = images.gc().await?;
        info!(
            images = images.list()?.len(),
            stale_blobs = gc.blobs,
            stale_snapshots = gc.snapshots,
            "engine recovered"
        );
        Ok(Engine {
            config,
            store,
            images,
        })
    }
}
