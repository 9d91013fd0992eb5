//! CheckpointContainer: a running container checkpointed with CRIU through
//! its OCI runtime (`runc checkpoint --leave-running`), the image directory
//! written as a tar archive at the kubelet's location.
//!
//! Refused with FailedPrecondition when the handler's runtime has no CRIU
//! support (Debian's crun is built without it) or when `criu check` fails on
//! this host (Debian's criu 3.17.1 cannot read kernel 6.18's vDSO).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::records::now_nanos;
use super::{Engine, Error};

/// How long `criu check` may take.
const CRIU_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `criu check`; `Err` with its last error line when CRIU cannot work here.
async fn criu_check() -> Result<(), String> {
    let run = tokio::process::Command::new("criu")
        .arg("check")
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(CRIU_CHECK_TIMEOUT, run).await {
        Err(_) => return Err("criu check did not finish".into()),
        Ok(Err(e)) => return Err(format!("criu cannot be run: {e}")),
        Ok(Ok(o)) => o,
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // criu 3.17 exits 0 even when it cannot initialise: read what it says.
    match text.lines().rev().find(|l| l.contains("Error")) {
        Some(l) => Err(l.trim().to_string()),
        None if out.status.success() => Ok(()),
        None => Err(text.trim().to_string()),
    }
}

impl Engine {
    /// Checkpoints a running container into the tar archive `location`.
    pub async fn checkpoint_container(&self, id: &str, location: &str) -> Result<(), Error> {
        let location = Path::new(location);
        if !location.is_absolute() {
            return Err(Error::InvalidArgument(format!(
                "checkpoint location {location:?} must be an absolute path"
            )));
        }
        let _g = self.locks.lock(id).await;
        let rec = self.running(id)?;
        let handler = if rec.runtime_handler.is_empty() {
            self.config.runtime.default_handler.clone()
        } else {
            rec.runtime_handler.clone()
        };
        if !self
            .handler_features
            .get(&handler)
            .is_some_and(|f| f.checkpoint)
        {
            return Err(Error::FailedPrecondition(format!(
                "runtime handler {handler:?} cannot checkpoint: its OCI runtime has no CRIU support (runc has)"
            )));
        }
        criu_check().await.map_err(|why| {
            Error::FailedPrecondition(format!("criu cannot checkpoint on this host: {why}"))
        })?;
        let work: PathBuf = rec.dir.join(format!("checkpoint-{}", now_nanos()));
        let images = work.join("checkpoint");
        std::fs::create_dir_all(&images)
            .map_err(|e| Error::io(format!("failed to create {}", images.display()), e))?;
        let oci = self.oci(&handler)?;
        let (img, wk) = (images.display().to_string(), work.display().to_string());
        let done = oci
            .run_simple(
                format!("checkpoint container {id}"),
                &[
                    "checkpoint",
                    "--leave-running",
                    "--image-path",
                    &img,
                    "--work-path",
                    &wk,
                    id,
                ],
            )
            .await;
        let archived = match done {
            Ok(()) => {
                let _ = std::fs::copy(rec.dir.join("config.json"), work.join("config.dump"));
                let out = tokio::process::Command::new("tar")
                    .arg("-C")
                    .arg(&work)
                    .arg("-cf")
                    .arg(location)
                    .args(["checkpoint", "config.dump"])
                    .output()
                    .await
                    .map_err(|e| Error::io("failed to run tar", e))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(Error::internal(format!(
                        "failed to write the checkpoint archive {}: {}",
                        location.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )))
                }
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_dir_all(&work);
        archived
    }
}
