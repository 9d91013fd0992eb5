//! The one point where a RUN's container becomes a layer: its writable
//! layer (the overlay upper dir) as a compressed layer tar and as the new
//! top snapshot, both made by the engine's container diff (as `docker
//! commit` makes them: whiteouts, opaque directories, hard links, xattrs;
//! `storage::diff`), so recording the step unpacks nothing. The step's
//! cache key does not depend on these bytes.

use std::path::Path;

use crate::engine::{Engine, Error};
use crate::image::service::{ImageRecord, StepLayer};

impl Engine {
    /// The writable layer of the exited container `id` over `parent`,
    /// written at `path`; its snapshot is held under the returned key until
    /// released.
    pub(super) async fn container_layer(
        &self,
        id: &str,
        parent: &ImageRecord,
        path: &Path,
    ) -> Result<(StepLayer, String), Error> {
        let rec = self.container(id)?;
        self.upper_layer(&rec, Some(parent), path.to_path_buf())
            .await
    }
}
