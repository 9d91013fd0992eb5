//! The one size walker: what a directory tree holds, for every figure that
//! reports it — CRI's writable-layer stats and `ImageFsInfo`, Docker's
//! `SizeRw` (`docker ps -s`, inspect, `container prune`'s reclaimed space) and
//! volume sizes (`docker system df -v`).
//!
//! One walk gives both measures the two worlds use for the same tree:
//! containerd and CRI-O report allocated blocks (what fills the disk, what
//! the kubelet evicts on), Docker reports file lengths. Symlinks are not
//! followed, other file systems mounted inside are not entered, and a file
//! with several hard links is counted once.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What a tree holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirUsage {
    /// The lengths of everything but directories (Docker's sizes).
    pub apparent_bytes: u64,
    /// Allocated blocks of every entry, directories included (CRI's `used_bytes`).
    pub disk_bytes: u64,
    /// Entries below the root, each inode once (CRI's `inodes_used`).
    pub inodes: u64,
}

impl std::ops::Add for DirUsage {
    type Output = DirUsage;
    fn add(self, o: DirUsage) -> DirUsage {
        DirUsage {
            apparent_bytes: self.apparent_bytes + o.apparent_bytes,
            disk_bytes: self.disk_bytes + o.disk_bytes,
            inodes: self.inodes + o.inodes,
        }
    }
}

/// Walks `root` (all zeros when it does not exist). Entries that vanish or
/// cannot be read during the walk are skipped: a running container changes
/// its layer while it is measured.
pub fn dir_usage(root: &Path) -> DirUsage {
    let mut u = DirUsage::default();
    let Ok(top) = std::fs::symlink_metadata(root) else {
        return u;
    };
    let dev = top.dev();
    let mut seen = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                // A mount point inside the tree: its content is not ours.
                continue;
            }
            if !seen.insert(m.ino()) {
                continue;
            }
            u.inodes += 1;
            u.disk_bytes += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            } else {
                u.apparent_bytes += m.len();
            }
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_links_count_once_and_symlinks_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![1u8; 10_000]).unwrap();
        std::fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/c"), b"abc").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("big"), vec![0u8; 50_000]).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("link")).unwrap();
        let u = dir_usage(d.path());
        assert_eq!(u.inodes, 4, "a/b share an inode, plus sub, sub/c, link");
        let link_len = outside.path().as_os_str().len() as u64;
        assert_eq!(u.apparent_bytes, 10_000 + 3 + link_len);
        assert!(u.disk_bytes >= 10_000, "{u:?}");
        assert!(
            u.disk_bytes < 50_000,
            "the link's target is not counted: {u:?}"
        );
    }

    #[test]
    fn a_missing_tree_is_empty() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(dir_usage(&d.path().join("gone")), DirUsage::default());
    }
}
