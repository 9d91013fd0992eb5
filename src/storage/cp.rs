//! `docker cp`'s file system side: finding a path in a container's root
//! as Docker's stat does, writing it as the tar Docker sends, and
//! extracting a tar into the root ([`extract`]), every path resolved with
//! [`super::scoped`] (inside the root, as a chroot would).
//!
//! The root is the container's overlay mount (present while the container
//! exists, running or not); paths bind-mounted into a running container are
//! not part of it and show the image's content (or nothing) instead.
//! Entries are created with `O_NOFOLLOW`/`O_EXCL` to narrow the race of a
//! running container swapping a directory for a symlink.

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::scoped::{clean_abs, host_path, resolve};

mod extract;

pub use extract::{extract, ExtractError};

/// Go's `os.FileMode` of a Unix `st_mode`: permission bits plus Go's own
/// type and special bits (not the Unix ones).
pub fn go_file_mode(st_mode: u32) -> u32 {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const DEVICE: u32 = 1 << 26;
    const NAMED_PIPE: u32 = 1 << 25;
    const SOCKET: u32 = 1 << 24;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const CHAR_DEVICE: u32 = 1 << 21;
    const STICKY: u32 = 1 << 20;
    let mut m = st_mode & 0o777;
    m |= match st_mode & libc::S_IFMT {
        libc::S_IFDIR => DIR,
        libc::S_IFLNK => SYMLINK,
        libc::S_IFBLK => DEVICE,
        libc::S_IFCHR => DEVICE | CHAR_DEVICE,
        libc::S_IFIFO => NAMED_PIPE,
        libc::S_IFSOCK => SOCKET,
        _ => 0,
    };
    if st_mode & libc::S_ISUID != 0 {
        m |= SETUID;
    }
    if st_mode & libc::S_ISGID != 0 {
        m |= SETGID;
    }
    if st_mode & libc::S_ISVTX != 0 {
        m |= STICKY;
    }
    m
}

/// Docker's `PathStat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    pub mode: u32,
    pub mtime: i64,
    pub link_target: String,
}

/// A path inside a container's root, resolved for reading.
#[derive(Debug)]
pub struct Located {
    /// The container path asked for, cleaned (`/` + path).
    pub cpath: PathBuf,
    /// The name of the top entry of its tar: the base name, or `.` for a
    /// directory asked for as `dir/.` (its content only) or for `/`.
    pub base: PathBuf,
    /// Where it is on the host (parents resolved, last component not followed
    /// unless the path ended in `/` or `/.`).
    pub host: PathBuf,
    pub meta: std::fs::Metadata,
    pub stat: PathStat,
}

/// Finds `path` in the container root as Docker's stat does.
pub fn locate(root: &Path, path: &str) -> io::Result<Located> {
    let cpath = clean_abs(path);
    // A trailing `/` or `/.` makes the kernel follow the last link too.
    let trailing = path.ends_with('/') || path.ends_with("/.");
    let parent = cpath.parent().unwrap_or(Path::new("/"));
    let resolved = match cpath.file_name() {
        Some(name) if !trailing => resolve(root, parent, true)?.join(name),
        _ => resolve(root, &cpath, true)?,
    };
    let host = host_path(root, &resolved);
    let meta = std::fs::symlink_metadata(&host)?;
    if trailing && !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{path}: not a directory"),
        ));
    }
    let link_target = if meta.file_type().is_symlink() {
        resolve(root, &resolved, true)?
            .to_string_lossy()
            .into_owned()
    } else {
        String::new()
    };
    let name = cpath
        .file_name()
        .map_or_else(|| "/".to_string(), |n| n.to_string_lossy().into_owned());
    let stat = PathStat {
        name,
        size: meta.len() as i64,
        mode: go_file_mode(meta.mode()),
        mtime: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        link_target,
    };
    let base = if path.ends_with("/.") || cpath.file_name().is_none() {
        PathBuf::from(".")
    } else {
        PathBuf::from(cpath.file_name().unwrap_or_default())
    };
    Ok(Located {
        cpath,
        base,
        host,
        meta,
        stat,
    })
}

/// Writes the tar Docker sends for a located path: a directory as `<base>/…`
/// (its own name, or `.` for a path ending in `/.`), anything else as one
/// entry named after it. Symlinks are archived as links, never followed.
pub fn write_tar(loc: &Located, out: &mut impl Write) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    let base = loc.base.clone();
    append(&mut b, &loc.host, &base, &loc.meta)?;
    if loc.meta.is_dir() {
        let mut stack = vec![(loc.host.clone(), base)];
        while let Some((dir, name)) = stack.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(&dir)?.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let meta = e.path().symlink_metadata()?;
                let child = name.join(e.file_name());
                append(&mut b, &e.path(), &child, &meta)?;
                if meta.is_dir() {
                    stack.push((e.path(), child));
                }
            }
        }
    }
    b.into_inner()?.flush()
}

fn append<W: Write>(
    b: &mut tar::Builder<W>,
    host: &Path,
    name: &Path,
    meta: &std::fs::Metadata,
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
    let ft = meta.file_type();
    if ft.is_symlink() {
        h.set_size(0);
        let target = std::fs::read_link(host)?;
        b.append_link(&mut h, name, target)
    } else if ft.is_file() {
        let f = std::fs::File::open(host)?;
        b.append_data(&mut h, name, f)
    } else if ft.is_dir() {
        h.set_size(0);
        let mut dir = name.as_os_str().to_os_string();
        dir.push("/");
        b.append_data(&mut h, dir, io::empty())
    } else {
        // Devices and fifos: the header says it all; sockets are skipped, as Go does.
        use std::os::unix::fs::FileTypeExt;
        if ft.is_socket() {
            return Ok(());
        }
        h.set_size(0);
        b.append_data(&mut h, name, io::empty())
    }
}

#[cfg(test)]
mod tests;
