//! Path handling for layer entries: splitting tar paths into safe components
//! and resolving a directory inside the layer root the way a chroot would.
//!
//! Symlinks met on the way are followed, but scoped to the root: an absolute
//! target restarts at the root, and a `..` that would climb above the root is
//! an error rather than being clamped. A layer that tries that is hostile or
//! broken, and failing the pull is safer than guessing what it meant.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How many symlinks one resolution may follow before it is called a loop
/// (the kernel's own limit).
const MAX_SYMLINKS: usize = 40;

/// Why an entry path cannot be used as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadPath {
    /// It starts with `/`.
    Absolute,
    /// It has a `..` component.
    DotDot,
}

/// Splits a tar path into its components, dropping empty and `.` ones, so
/// `./usr//bin/` becomes `["usr", "bin"]` and `./` becomes `[]` (the root).
pub(crate) fn split_entry_path(raw: &[u8]) -> Result<Vec<&OsStr>, BadPath> {
    if raw.first() == Some(&b'/') {
        return Err(BadPath::Absolute);
    }
    let mut parts = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(BadPath::DotDot),
            _ => parts.push(OsStr::from_bytes(part)),
        }
    }
    Ok(parts)
}

/// Why a directory could not be resolved inside the root.
#[derive(Debug)]
pub(crate) enum ResolveError {
    /// Following the symlink at `link` (relative to the root) leaves the root.
    Escapes { link: PathBuf },
    /// More than [`MAX_SYMLINKS`] symlinks were followed.
    Loop,
    /// `at` (relative to the root) exists but is not a directory.
    NotADirectory { at: PathBuf },
    /// A component does not exist and creating was not asked for.
    Missing,
    /// A syscall failed.
    Io(io::Error),
}

/// Resolves the directory named by `components` under `root`, following
/// symlinks scoped to `root`, and returns its real path (always under `root`).
///
/// With `create`, missing directories are made with mode 0755, like
/// `mkdir -p`; tar streams often omit parent directory entries.
pub(crate) fn resolve_dir(
    root: &Path,
    components: &[&OsStr],
    create: bool,
) -> Result<PathBuf, ResolveError> {
    // `real` holds the resolved components so far; `pending` what is left to
    // walk, which grows when a symlink's target is spliced in front of it.
    let mut real: Vec<OsString> = Vec::with_capacity(components.len());
    let mut pending: VecDeque<OsString> = components.iter().map(|c| c.to_os_string()).collect();
    let mut current = root.to_path_buf();
    let mut followed = 0;
    // The last symlink followed, for the error when a `..` climbs too far.
    let mut last_link = PathBuf::new();

    while let Some(part) = pending.pop_front() {
        match part.as_bytes() {
            b"" | b"." => continue,
            b".." => {
                // Only symlink targets bring `..` here: entry paths with one
                // are rejected by `split_entry_path` before resolving.
                if real.pop().is_none() {
                    return Err(ResolveError::Escapes { link: last_link });
                }
                current = root.to_path_buf();
                current.extend(&real);
                continue;
            }
            _ => {}
        }
        let candidate = current.join(&part);
        let meta = match std::fs::symlink_metadata(&candidate) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !create {
                    return Err(ResolveError::Missing);
                }
                make_dir(&candidate)?;
                real.push(part);
                current = candidate;
                continue;
            }
            Err(e) => return Err(ResolveError::Io(e)),
        };
        let file_type = meta.file_type();
        if file_type.is_dir() {
            real.push(part);
            current = candidate;
        } else if file_type.is_symlink() {
            followed += 1;
            if followed > MAX_SYMLINKS {
                return Err(ResolveError::Loop);
            }
            let target = std::fs::read_link(&candidate).map_err(ResolveError::Io)?;
            last_link = real.iter().chain(std::iter::once(&part)).collect();
            let target = target.as_os_str().as_bytes();
            if target.first() == Some(&b'/') {
                // Absolute targets are taken relative to the root, as in a chroot.
                real.clear();
                current = root.to_path_buf();
            }
            // Walk the target's components next, `..`s included, so that a
            // symlink inside the target is resolved before a `..` after it.
            for piece in target.rsplit(|&b| b == b'/') {
                pending.push_front(OsStr::from_bytes(piece).to_os_string());
            }
        } else {
            let mut at: PathBuf = real.iter().collect();
            at.push(part);
            return Err(ResolveError::NotADirectory { at });
        }
    }
    Ok(current)
}

fn make_dir(path: &Path) -> Result<(), ResolveError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(path).map_err(ResolveError::Io)?;
    // Set the mode explicitly: the daemon's umask must not leak into images.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(ResolveError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn parts(raw: &str) -> Vec<String> {
        split_entry_path(raw.as_bytes())
            .unwrap()
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn split_normalizes_dots_and_slashes() {
        assert_eq!(parts("./usr//bin/"), ["usr", "bin"]);
        assert_eq!(parts("etc/passwd"), ["etc", "passwd"]);
        assert!(parts("./").is_empty());
        assert!(parts(".").is_empty());
        assert_eq!(parts("a/./b/..c"), ["a", "b", "..c"]);
    }

    #[test]
    fn split_rejects_absolute_and_dotdot() {
        assert_eq!(split_entry_path(b"/etc/passwd"), Err(BadPath::Absolute));
        assert_eq!(split_entry_path(b"../evil"), Err(BadPath::DotDot));
        assert_eq!(split_entry_path(b"a/../../evil"), Err(BadPath::DotDot));
        assert_eq!(split_entry_path(b"a/b/.."), Err(BadPath::DotDot));
    }

    fn resolve(root: &Path, rel: &str, create: bool) -> Result<PathBuf, ResolveError> {
        let comps = split_entry_path(rel.as_bytes()).unwrap();
        resolve_dir(root, &comps, create)
    }

    #[test]
    fn creates_missing_parents() {
        let dir = tempfile::tempdir().unwrap();
        let got = resolve(dir.path(), "a/b/c", true).unwrap();
        assert_eq!(got, dir.path().join("a/b/c"));
        assert!(got.is_dir());
        assert!(matches!(
            resolve(dir.path(), "x/y", false),
            Err(ResolveError::Missing)
        ));
    }

    #[test]
    fn follows_symlinks_scoped_to_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/usr/lib", root.join("abs")).unwrap();
        symlink("../lib", root.join("usr/up")).unwrap();
        assert_eq!(resolve(root, "lib", false).unwrap(), root.join("usr/lib"));
        assert_eq!(resolve(root, "abs", false).unwrap(), root.join("usr/lib"));
        assert_eq!(
            resolve(root, "usr/up", false).unwrap(),
            root.join("usr/lib")
        );
        // An absolute target that does not exist is created inside the root.
        symlink("/opt/app", root.join("app")).unwrap();
        assert_eq!(
            resolve(root, "app/x", true).unwrap(),
            root.join("opt/app/x")
        );
    }

    #[test]
    fn symlink_climbing_out_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("a")).unwrap();
        symlink("../../etc", root.join("a/out")).unwrap();
        symlink("..", root.join("top")).unwrap();
        assert!(matches!(
            resolve(root, "a/out", true),
            Err(ResolveError::Escapes { link }) if link == Path::new("a/out")
        ));
        assert!(matches!(
            resolve(root, "top/x", true),
            Err(ResolveError::Escapes { .. })
        ));
        // Nothing was created outside.
        assert!(!root.parent().unwrap().join("etc").join("x").exists());
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        assert!(matches!(
            resolve(dir.path(), "a/x", true),
            Err(ResolveError::Loop)
        ));
    }

    #[test]
    fn file_in_parent_chain_is_not_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        assert!(matches!(
            resolve(dir.path(), "f/x", true),
            Err(ResolveError::NotADirectory { at }) if at == Path::new("f")
        ));
    }
}
