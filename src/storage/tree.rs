//! Whole-tree helpers: measuring disk use and removing unpacked snapshots.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Totals over one or more trees, each inode counted once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Sum of regular file sizes (`st_size`).
    pub apparent: u64,
    /// Space allocated on disk (`st_blocks * 512`) by every inode.
    pub allocated: u64,
    /// Number of distinct inodes, directories and the tree roots included.
    pub inodes: u64,
}

/// Walks trees and adds them up; hard links are counted once even when they
/// cross trees measured by the same `Measurer`.
#[derive(Default)]
pub(crate) struct Measurer {
    seen: HashSet<(u64, u64)>,
    totals: Totals,
}

impl Measurer {
    /// Adds the tree at `root` without following symlinks. Entries that vanish
    /// during the walk (a concurrent remove) are skipped, not errors.
    pub fn add(&mut self, root: &Path) -> io::Result<()> {
        // An explicit stack: image trees can be deeper than is safe to recurse.
        let mut stack = vec![root.to_path_buf()];
        while let Some(path) = stack.pop() {
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.nlink() > 1 && !meta.is_dir() && !self.seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            self.totals.inodes += 1;
            self.totals.allocated += meta.blocks() * 512;
            if meta.is_file() {
                self.totals.apparent += meta.len();
            } else if meta.is_dir() {
                let entries = match fs::read_dir(&path) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                for entry in entries {
                    stack.push(entry?.path());
                }
            }
        }
        Ok(())
    }

    /// The totals so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }
}

/// Measures one tree.
pub(crate) fn measure(root: &Path) -> io::Result<Totals> {
    let mut m = Measurer::default();
    m.add(root)?;
    Ok(m.totals())
}

/// Removes `path` and everything under it; a missing path is not an error.
/// Directories without write or search permission (layers ship such, e.g.
/// mode 0555 or 0000) are opened up first if removing them is refused.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return ignore_not_found(fs::remove_file(path));
    }
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_dirs_writable(path)?;
            ignore_not_found(fs::remove_dir_all(path))
        }
        res => ignore_not_found(res),
    }
}

fn ignore_not_found(res: io::Result<()>) -> io::Result<()> {
    match res {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        res => res,
    }
}

/// Gives the owner rwx on every directory under `root` (symlinks not followed).
fn make_dirs_writable(root: &Path) -> io::Result<()> {
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = fs::symlink_metadata(&dir)?;
        if !meta.is_dir() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o700 != 0o700 {
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o700))?;
        }
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_counts_hardlinks_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("a"), vec![1u8; 10_000]).unwrap();
        fs::hard_link(root.join("a"), root.join("sub/b")).unwrap();
        std::os::unix::fs::symlink("a", root.join("s")).unwrap();
        let t = measure(&root).unwrap();
        // root, sub, a (=b), s
        assert_eq!(t.inodes, 4);
        assert_eq!(t.apparent, 10_000);
        assert!(t.allocated >= 10_000);

        // Across trees, too.
        let other = dir.path().join("u");
        fs::create_dir(&other).unwrap();
        fs::hard_link(root.join("a"), other.join("c")).unwrap();
        let mut m = Measurer::default();
        m.add(&root).unwrap();
        m.add(&other).unwrap();
        assert_eq!(m.totals().inodes, 5);
        assert_eq!(m.totals().apparent, 10_000);
    }

    #[test]
    fn measure_missing_root_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            measure(&dir.path().join("nope")).unwrap(),
            Totals::default()
        );
    }

    #[test]
    fn remove_tree_handles_read_only_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        fs::create_dir_all(root.join("ro/inner")).unwrap();
        fs::write(root.join("ro/inner/f"), b"x").unwrap();
        fs::create_dir(root.join("none")).unwrap();
        fs::write(root.join("none/g"), b"y").unwrap();
        for (p, mode) in [("ro/inner", 0o555), ("ro", 0o500), ("none", 0o000)] {
            fs::set_permissions(root.join(p), fs::Permissions::from_mode(mode)).unwrap();
        }
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        // Idempotent, and plain files work too.
        remove_tree(&root).unwrap();
        fs::write(dir.path().join("file"), b"z").unwrap();
        remove_tree(&dir.path().join("file")).unwrap();
        assert!(!dir.path().join("file").exists());
    }

    #[test]
    fn make_dirs_writable_opens_up_modes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::set_permissions(root.join("a/b"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(root.join("a"), fs::Permissions::from_mode(0o111)).unwrap();
        make_dirs_writable(&root).unwrap();
        for p in ["a", "a/b"] {
            let mode = fs::metadata(root.join(p)).unwrap().permissions().mode();
            assert_eq!(mode & 0o700, 0o700, "{p}");
        }
    }
}
