//! A read-only view of an image's file system (its snapshots stacked),
//! for what a build reads from it: COPY's destination checks, `--chown`
//! names, COPY `--from` sources. Unmounted when dropped.

use std::path::{Path, PathBuf};

use tracing::warn;

use crate::engine::{rootfs, Error};
use crate::image::{ImageRecord, ImageService};

/// An image's file system mounted read-only in a scratch directory.
pub struct View {
    target: PathBuf,
    mounted: bool,
    /// Keeps the scratch directory until the view is gone.
    _scratch: crate::image::service::Scratch,
}

impl View {
    /// Mounts `image` (None: scratch, an empty directory).
    pub fn open(images: &ImageService, image: Option<&ImageRecord>) -> Result<View, Error> {
        let scratch = images.scratch()?;
        let target = scratch.path().join("rootfs");
        std::fs::create_dir_all(&target)
            .map_err(|e| Error::io(format!("failed to create {}", target.display()), e))?;
        let lowers: Vec<PathBuf> = image
            .map(|i| {
                i.snapshot_keys()
                    .iter()
                    .map(|k| images.snapshots().fs_path(k))
                    .collect()
            })
            .unwrap_or_default();
        let mounted = !lowers.is_empty();
        if mounted {
            rootfs::mount_read_only(&lowers, &target)?;
        }
        Ok(View {
            target,
            mounted,
            _scratch: scratch,
        })
    }

    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = rootfs::unmount(&self.target) {
                warn!(path = %self.target.display(), error = %e, "failed to unmount a build view");
            }
        }
    }
}

/// `user[:group]` as ids, names looked up in the view's /etc/passwd and
/// /etc/group. A user alone also names the group (its primary group for
/// a name, the same number for an id), as Docker's `--chown` reads it.
pub fn lookup_ids(view: &Path, spec: &str) -> Result<(u64, u64), String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |f: &str| {
        crate::build::context::resolve_in(view, f, true)
            .ok()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    let (uid, primary) = match u.parse::<u64>() {
        Ok(n) => (n, n),
        Err(_) => {
            let passwd = read("/etc/passwd");
            let line = passwd
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 3 && f[0] == u)
                .ok_or_else(|| {
                    format!("unable to find user {u}: no matching entries in passwd file")
                })?;
            (
                line[2]
                    .parse()
                    .map_err(|_| format!("bad uid for user {u}"))?,
                line[3]
                    .parse()
                    .map_err(|_| format!("bad gid for user {u}"))?,
            )
        }
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                let group = read("/etc/group");
                let line = group
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() > 2 && f[0] == g)
                    .ok_or_else(|| {
                        format!("unable to find group {g}: no matching entries in group file")
                    })?;
                line[2]
                    .parse()
                    .map_err(|_| format!("bad gid for group {g}"))?
            }
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    #[test]
    fn chown_names() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(t.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let l = |s: &str| super::lookup_ids(t.path(), s);
        assert_eq!(l("app").unwrap(), (1000, 1001));
        assert_eq!(l("app:staff").unwrap(), (1000, 50));
        assert_eq!(l("7").unwrap(), (7, 7));
        assert_eq!(l("7:8").unwrap(), (7, 8));
        assert!(l("nobody").is_err());
        assert!(l("app:nogroup").is_err());
    }
}
