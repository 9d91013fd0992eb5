//! Container root filesystems: the image's snapshots stacked read-only under
//! a writable layer with overlayfs.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::Error;

/// Mounts `lowers` (bottom layer first) under `upper` at `target`.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), Error> {
    mount_overlay_as(lowers, upper, work, target, None)
}

/// [`mount_overlay`], for a container in a user-namespaced pod when `userns`
/// is given: every lower layer is an idmapped mount (the pod's mappings), so
/// the image's root-owned files belong to the container's root instead of
/// showing as `nobody`; the writable layer's top belongs to it too. The
/// idmapped layers are detached mounts (`open_tree` clones, named to
/// overlayfs as `/proc/self/fd/N`), held by the overlay alone: nothing else
/// to unmount. A kernel that cannot idmap a layer gets the plain overlay
/// (logged).
pub fn mount_overlay_as(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    userns: Option<&crate::runtime::userns::PodUserNamespace>,
) -> Result<(), Error> {
    for d in [upper, work, target] {
        std::fs::create_dir_all(d)
            .map_err(|e| Error::io(format!("failed to create {}", d.display()), e))?;
    }
    let mut held = Vec::new();
    let mut lower_paths: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    if let Some(u) = userns {
        match crate::runtime::idmap::idmapped_layers(lowers, u) {
            Ok(fds) => {
                lower_paths = fds
                    .iter()
                    .map(|fd| format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd)))
                    .collect();
                held = fds;
            }
            Err(e) => tracing::warn!(
                error = %e,
                "the rootfs layers cannot be idmapped here: the image's files show as nobody in the pod's user namespace"
            ),
        }
        std::os::unix::fs::chown(upper, Some(u.uid.host_id()), Some(u.gid.host_id()))
            .map_err(|e| Error::io(format!("failed to chown {}", upper.display()), e))?;
    }
    // overlayfs wants the top-most lower dir first.
    let lower = lower_paths
        .iter()
        .rev()
        .cloned()
        .collect::<Vec<_>>()
        .join(":");
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    if opts.len() >= 4096 {
        return Err(Error::FailedPrecondition(format!(
            "image has too many layers for one overlay mount ({} lower dirs)",
            lowers.len()
        )));
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| {
        Error::internal(format!(
            "failed to mount overlay at {}: {e}",
            target.display()
        ))
    })?;
    drop(held);
    Ok(())
}

/// Mounts an image's `lowers` (bottom first) read-only at `target`, for an
/// image volume: one layer is bound, several are stacked without an upper.
pub fn mount_read_only(lowers: &[PathBuf], target: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(target)
        .map_err(|e| Error::io(format!("failed to create {}", target.display()), e))?;
    let failed = |e: nix::Error| {
        Error::internal(format!(
            "failed to mount the image volume at {}: {e}",
            target.display()
        ))
    };
    match lowers {
        [] => Err(Error::FailedPrecondition(
            "the image of an image volume has no layers".into(),
        )),
        [one] => {
            mount(
                Some(one),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(failed)?;
            let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            mount(None::<&str>, target, None::<&str>, ro, None::<&str>).map_err(failed)
        }
        _ => {
            let lower = lowers
                .iter()
                .rev()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":");
            let opts = format!("lowerdir={lower}");
            if opts.len() >= 4096 {
                return Err(Error::FailedPrecondition(format!(
                    "image has too many layers for one overlay mount ({} lower dirs)",
                    lowers.len()
                )));
            }
            mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::MS_RDONLY,
                Some(opts.as_str()),
            )
            .map_err(failed)
        }
    }
}

/// Unmounts a rootfs; not mounted is fine.
pub fn unmount(target: &Path) -> Result<(), Error> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::internal(format!(
            "failed to unmount {}: {e}",
            target.display()
        ))),
    }
}

/// Removes a directory tree; absent is fine.
pub fn remove_dir(p: &Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::internal(format!(
            "failed to remove {}: {e}",
            p.display()
        ))),
        _ => Ok(()),
    }
}
