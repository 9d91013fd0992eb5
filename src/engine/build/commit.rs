//! The one point where a RUN's container becomes a layer: its writable
//! layer (the overlay upper dir) as a compressed layer tar, written by the
//! storage layer's diff (`storage::diff`: whiteouts, opaque directories,
//! hard links, xattrs), as `docker commit` writes it. The step's cache key
//! does not depend on these bytes.

use std::path::Path;

use crate::engine::commit::mount_points;
use crate::engine::container::blocking;
use crate::engine::{Engine, Error};
use crate::image::archive::Spooled;
use crate::image::service::StepLayer;
use crate::image::Digest;
use crate::storage::diff;

impl Engine {
    /// The writable layer of the exited container `id`, written at `path`.
    pub(super) async fn container_layer(&self, id: &str, path: &Path) -> Result<StepLayer, Error> {
        let rec = self.container(id)?;
        // The runtime's mount points (/etc/hosts, /proc, …) are made in
        // the upper dir but are not the command's changes.
        let skip = mount_points(&rec)?;
        let upper = rec.layer_dir.join("upper");
        let path = path.to_path_buf();
        let p = path.clone();
        let d = blocking(move || {
            let f = std::fs::File::create(&p)
                .map_err(|e| Error::internal(format!("failed to create {}: {e}", p.display())))?;
            diff::write_layer(&upper, &skip, f).map_err(|e| {
                Error::internal(format!(
                    "failed to write the layer of {}: {e}",
                    upper.display()
                ))
            })
        })
        .await?;
        let parse =
            |s: &str| Digest::parse(s).map_err(|e| Error::internal(format!("bad digest {s}: {e}")));
        Ok(StepLayer {
            file: Spooled {
                path,
                size: d.size,
                digest: parse(&d.digest)?,
            },
            diff_id: parse(&d.diff_id)?,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        })
    }
}
