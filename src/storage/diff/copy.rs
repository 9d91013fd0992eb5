//! An upper dir copied into a snapshot directory as unpacking its layer tar
//! would leave it: whiteout devices stay, an opaque directory gets
//! `trusted.overlay.opaque=y` (the form snapshots use, also for an upper
//! dir marked with `user.overlay.opaque`), owners, modes, xattrs and mtimes
//! are kept, and hard links stay hard links. File contents are copied with
//! `copy_file_range` (`std::fs::copy`), never read into memory.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::{walk, xattrs, Form, Node};

/// Copies the upper dir `upper` (without the relative paths in `skip`) into
/// `dest`, an existing empty directory. On error `dest` is left partly
/// filled; the caller removes it. Blocking.
pub fn copy_upper(upper: &Path, skip: &HashSet<PathBuf>, dest: &Path) -> io::Result<()> {
    let nodes = walk(upper, Form::Upper, skip)?;
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut dirs: Vec<(&Node, PathBuf)> = Vec::new();
    for n in &nodes {
        let target = dest.join(&n.rel);
        let ft = n.meta.file_type();
        if n.whiteout {
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))?;
            lchown(&target, Some(n.meta.uid()), Some(n.meta.gid()))?;
            continue;
        }
        if ft.is_file() && n.meta.nlink() > 1 {
            let key = (n.meta.dev(), n.meta.ino());
            if let Some(first) = links.get(&key) {
                fs::hard_link(first, &target)?;
                continue;
            }
            links.insert(key, target.clone());
        }
        if ft.is_dir() {
            fs::create_dir(&target)?;
        } else if ft.is_file() {
            fs::copy(&n.host, &target)?;
        } else if ft.is_symlink() {
            symlink(fs::read_link(&n.host)?, &target)?;
        } else {
            use std::os::unix::fs::FileTypeExt;
            let kind = if ft.is_char_device() {
                SFlag::S_IFCHR
            } else if ft.is_block_device() {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFIFO
            };
            mknod(&target, kind, Mode::empty(), n.meta.rdev())?;
        }
        // Owner before mode: chown clears the set-id bits.
        lchown(&target, Some(n.meta.uid()), Some(n.meta.gid()))?;
        if !ft.is_symlink() {
            fs::set_permissions(&target, fs::Permissions::from_mode(n.meta.mode() & 0o7777))?;
        }
        for (name, value) in xattrs(n)? {
            xattr::set(&target, &name, &value)?;
        }
        if n.opaque {
            xattr::set(&target, "trusted.overlay.opaque", b"y")?;
        }
        if ft.is_dir() {
            dirs.push((n, target));
        } else {
            set_mtime(&target, &n.meta)?;
        }
    }
    // Directories last, deepest first: making their entries bumped them.
    for (n, target) in dirs.iter().rev() {
        set_mtime(target, &n.meta)?;
    }
    Ok(())
}

fn set_mtime(target: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let t = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(None, target, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
}
