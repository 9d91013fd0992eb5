//! The mount table as `/proc/self/mountinfo` shows it, and the few mount
//! operations the sandbox needs on top of `nix`.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::SandboxError;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone)]
pub(crate) struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
    /// Per-mount options then super-block options, comma-separated.
    #[cfg_attr(not(test), allow(dead_code))]
    pub options: String,
    /// Whether the mount is in a shared peer group (`shared:N`).
    pub shared: bool,
}

/// Undoes the octal escapes (`\040` for a space) the kernel writes in paths.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|o| b[i] == b'\\' && o.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let Some(o) = oct {
            let v = o.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (pre, post) = line.split_once(" - ")?;
    let pre: Vec<&str> = pre.split(' ').collect();
    let post: Vec<&str> = post.split(' ').collect();
    if pre.len() < 6 || post.len() < 3 {
        return None;
    }
    Some(MountEntry {
        mount_point: PathBuf::from(unescape(pre[4])),
        fs_type: post[0].to_string(),
        options: format!("{},{}", pre[5], post[2]),
        shared: pre[6..].iter().any(|f| f.starts_with("shared:")),
    })
}

/// The calling process's mount table, in mount order.
pub(crate) fn mounts() -> io::Result<Vec<MountEntry>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text.lines().filter_map(parse_line).collect())
}

/// The topmost mount at `path`, if `path` is a mount point.
pub(crate) fn find(path: &Path) -> io::Result<Option<MountEntry>> {
    let path = match path.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(mounts()?.into_iter().rev().find(|m| m.mount_point == path))
}

/// Makes `dir` a shared mount, bind-mounting it onto itself first when it is
/// not a mount point (`--make-shared` fails with EINVAL on a plain directory).
/// This is what `ip netns` does for `/run/netns`: mounts made below `dir`
/// then propagate to copies of it in mount namespaces created later, and so
/// do their unmounts — a pinned namespace is not kept alive by a stale copy.
pub(crate) fn make_shared_dir(dir: &Path) -> Result<(), SandboxError> {
    let entry = find(dir).map_err(|e| SandboxError::io("read the mount table for", dir, e))?;
    if entry.is_none() {
        mount(
            Some(dir),
            dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|source| SandboxError::Mount {
            what: "a bind of itself",
            target: dir.to_path_buf(),
            source,
        })?;
    }
    if !entry.is_some_and(|e| e.shared) {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|source| SandboxError::Mount {
            what: "shared propagation",
            target: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Lazily unmounts everything stacked at `path` without following a final
/// symlink. A missing path or one that is not a mount point is fine.
/// Returns how many mounts were detached.
pub(crate) fn detach_all(path: &Path) -> Result<usize, SandboxError> {
    let flags = MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW;
    // Bounded: a path never has this many mounts stacked on it by berth.
    for n in 0..64 {
        match umount2(path, flags) {
            Ok(()) => {}
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(n),
            Err(source) => {
                return Err(SandboxError::Unmount {
                    target: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    Err(SandboxError::Unmount {
        target: path.to_path_buf(),
        source: Errno::EBUSY,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let e = parse_line(
            "36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!(e.mount_point, PathBuf::from("/mnt 2"));
        assert_eq!(e.fs_type, "ext3");
        assert_eq!(e.options, "rw,noatime,rw,errors=continue");
        assert!(e.shared);
        let e = parse_line("22 27 0:21 / /proc rw,relatime - proc proc rw").unwrap();
        assert!(!e.shared);
        assert!(parse_line("garbage").is_none());
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape("plain\\x"), "plain\\x");
    }
}
