//! Unpacking one image layer (a tar stream) into a directory, in the form
//! overlayfs stacks: OCI whiteouts become overlay whiteouts.
//!
//! Entries are applied in order, a later one replacing an earlier one at the
//! same path (a directory over a directory keeps its contents). Ownership,
//! modes (set-id and sticky bits included), xattrs and mtimes are restored;
//! directory mtimes are set last, since creating entries inside bumps them.
//!
//! A layer is untrusted input. Paths with `..` components or a leading `/`,
//! hard links that point outside, and entries whose parent resolves through
//! a symlink to outside the root fail the unpack instead of being silently
//! rewritten; `storage::resolve` documents how parents are resolved.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::sys::time::TimeSpec;
use tar::EntryType;

mod attrs;
mod error;

use attrs::{read_attrs, set_times, set_xattr, Attrs};
use error::{invalid, io_error, resolve_error};

pub use super::compression::{decompressor, Compression};
pub use error::UnpackError;

use super::resolve::{resolve_dir, split_entry_path, BadPath, ResolveError};
use super::snapshot::SnapshotInfo;
use super::tree;

/// Buffer between the (decompressed) stream and the tar parser, which reads
/// headers 512 bytes at a time.
const STREAM_BUFFER: usize = 256 * 1024;
/// Buffer for copying file contents.
const COPY_BUFFER: usize = 256 * 1024;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The xattr overlayfs reads to hide a lower directory's contents.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Unpacks the tar stream `reader` (already decompressed) into `dest`, an
/// existing empty directory, and returns what the result holds.
///
/// On error `dest` is left partly filled; the caller removes it.
pub fn unpack_layer<R: Read>(reader: R, dest: &Path) -> Result<SnapshotInfo, UnpackError> {
    let read_err = |source| UnpackError::Read { source };
    let mut archive = tar::Archive::new(BufReader::with_capacity(STREAM_BUFFER, reader));
    let mut unpacker = Unpacker::new(dest);
    for entry in archive.entries().map_err(read_err)? {
        unpacker.apply(&mut entry.map_err(read_err)?)?;
    }
    // Drain what follows the end-of-archive blocks, so that a compressed
    // stream reaches its trailer and verifies its checksum.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(read_err)?;
    unpacker.finish()?;
    let totals = tree::measure(dest).map_err(|source| UnpackError::Measure {
        dir: dest.to_path_buf(),
        source,
    })?;
    Ok(SnapshotInfo {
        bytes: totals.apparent,
        inodes: totals.inodes,
    })
}

/// What an entry creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    HardLink,
    Char,
    Block,
    Fifo,
    /// Carries nothing to unpack (a PAX global header).
    Skip,
}

struct Unpacker<'a> {
    root: &'a Path,
    buf: Vec<u8>,
    /// The last parent resolved, keyed by its components as written in the
    /// tar: layers list siblings together, so this saves most lookups.
    /// Dropped whenever an existing path is removed, as that may change how
    /// any path resolves.
    parent_cache: Option<(Vec<u8>, PathBuf)>,
    /// Directory mtimes, applied by `finish` once nothing more is written.
    dir_times: HashMap<PathBuf, TimeSpec>,
}

impl<'a> Unpacker<'a> {
    fn new(root: &'a Path) -> Self {
        Unpacker {
            root,
            buf: vec![0; COPY_BUFFER],
            parent_cache: None,
            dir_times: HashMap::new(),
        }
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let path = String::from_utf8_lossy(&raw).into_owned();
        let kind =
            kind_of(entry.header(), &raw).map_err(|typeflag| UnpackError::UnsupportedType {
                path: path.clone(),
                typeflag,
            })?;
        if kind == Kind::Skip {
            return Ok(());
        }
        let components = split_entry_path(&raw).map_err(|bad| match bad {
            BadPath::Absolute => UnpackError::AbsolutePath { path: path.clone() },
            BadPath::DotDot => UnpackError::EscapesRoot { path: path.clone() },
        })?;
        let Some((name, parents)) = components.split_last() else {
            // `./` names the root itself; only a directory fits there.
            if kind != Kind::Dir {
                return Err(invalid(&path, "only a directory may name the layer root"));
            }
            let attrs = read_attrs(entry, &path)?;
            let root = self.root.to_path_buf();
            return self.set_attrs(&root, &attrs, kind, &path);
        };
        if name.as_bytes().starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(parents, name.as_bytes(), &path);
        }
        let target = self.parent_dir(parents, &path)?.join(name);
        if kind == Kind::HardLink {
            return self.hard_link(entry, &target, &path);
        }
        let attrs = read_attrs(entry, &path)?;
        match kind {
            Kind::Dir => {
                if !self.clear(&target, true, &path)? {
                    fs::create_dir(&target).map_err(|e| io_error(&path, "create directory", e))?;
                }
            }
            Kind::File => {
                self.clear(&target, false, &path)?;
                self.write_file(entry, &target, &path)?;
            }
            Kind::Symlink => {
                let link = entry.link_name_bytes().unwrap_or_default().into_owned();
                if link.is_empty() {
                    return Err(invalid(&path, "symlink has no target"));
                }
                self.clear(&target, false, &path)?;
                symlink(OsStr::from_bytes(&link), &target)
                    .map_err(|e| io_error(&path, "create symlink", e))?;
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let (file_type, dev) = match kind {
                    Kind::Char => (SFlag::S_IFCHR, makedev(major.into(), minor.into())),
                    Kind::Block => (SFlag::S_IFBLK, makedev(major.into(), minor.into())),
                    _ => (SFlag::S_IFIFO, 0),
                };
                self.clear(&target, false, &path)?;
                let perm = Mode::from_bits_truncate(attrs.mode & 0o777);
                mknod(&target, file_type, perm, dev)
                    .map_err(|e| io_error(&path, "create device node", e.into()))?;
            }
            Kind::HardLink | Kind::Skip => unreachable!("handled above"),
        }
        self.set_attrs(&target, &attrs, kind, &path)
    }

    /// Turns an OCI whiteout entry into its overlayfs form.
    fn whiteout(&mut self, parents: &[&OsStr], name: &[u8], path: &str) -> Result<(), UnpackError> {
        if name == OPAQUE_MARKER {
            let dir = self.parent_dir(parents, path)?;
            return xattr::set(&dir, OPAQUE_XATTR, b"y").map_err(|source| UnpackError::Xattr {
                path: path.to_string(),
                name: OPAQUE_XATTR.to_string(),
                source,
            });
        }
        if name.starts_with(WHITEOUT_META_PREFIX) {
            tracing::debug!(entry = path, "ignoring whiteout metadata entry");
            return Ok(());
        }
        let hidden = &name[WHITEOUT_PREFIX.len()..];
        if matches!(hidden, b"" | b"." | b"..") {
            return Err(invalid(path, "whiteout names no file"));
        }
        let target = self
            .parent_dir(parents, path)?
            .join(OsStr::from_bytes(hidden));
        self.clear(&target, false, path)?;
        // overlayfs treats a 0:0 character device as "deleted here".
        mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
            .map_err(|e| io_error(path, "create whiteout device", e.into()))
    }

    fn hard_link<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        target: &Path,
        path: &str,
    ) -> Result<(), UnpackError> {
        let raw = entry.link_name_bytes().unwrap_or_default().into_owned();
        let link = String::from_utf8_lossy(&raw).into_owned();
        let escapes = || UnpackError::LinkEscapes {
            path: path.to_string(),
            target: link.clone(),
        };
        let missing = || UnpackError::LinkTargetMissing {
            path: path.to_string(),
            target: link.clone(),
        };
        let components = split_entry_path(&raw).map_err(|_| escapes())?;
        let Some((name, parents)) = components.split_last() else {
            return Err(invalid(path, "hard link to the layer root"));
        };
        let dir = resolve_dir(self.root, parents, false).map_err(|e| match e {
            ResolveError::Escapes { .. } => escapes(),
            ResolveError::Missing | ResolveError::NotADirectory { .. } => missing(),
            e => resolve_error(e, path),
        })?;
        let source = dir.join(name);
        match fs::symlink_metadata(&source) {
            Ok(meta) if meta.is_dir() => return Err(invalid(path, "hard link to a directory")),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(io_error(path, "inspect hard link target", e)),
        }
        if source == target {
            // A link to itself: removing first would lose the file.
            return Ok(());
        }
        self.clear(target, false, path)?;
        // linkat without AT_SYMLINK_FOLLOW: a symlink source is linked itself.
        fs::hard_link(&source, target).map_err(|e| io_error(path, "create hard link", e))
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        target: &Path,
        path: &str,
    ) -> Result<(), UnpackError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(target)
            .map_err(|e| io_error(path, "create file", e))?;
        let expected = entry.size();
        let mut got = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(UnpackError::ReadEntry {
                        path: path.to_string(),
                        source,
                    })
                }
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| io_error(path, "write file", e))?;
            got += n as u64;
        }
        if got != expected {
            return Err(UnpackError::Truncated {
                path: path.to_string(),
                expected,
                got,
            });
        }
        Ok(())
    }

    /// Resolves (creating as needed) the directory an entry goes into.
    fn parent_dir(&mut self, parents: &[&OsStr], path: &str) -> Result<PathBuf, UnpackError> {
        if parents.is_empty() {
            return Ok(self.root.to_path_buf());
        }
        let mut key = Vec::new();
        for part in parents {
            key.extend_from_slice(part.as_bytes());
            key.push(b'/');
        }
        if let Some((cached, dir)) = &self.parent_cache {
            if *cached == key {
                return Ok(dir.clone());
            }
        }
        let dir = resolve_dir(self.root, parents, true).map_err(|e| resolve_error(e, path))?;
        self.parent_cache = Some((key, dir.clone()));
        Ok(dir)
    }

    /// Makes way for a new entry at `target`, never following a symlink there.
    /// Returns true if an existing directory was kept (`keep_dir`).
    fn clear(&mut self, target: &Path, keep_dir: bool, path: &str) -> Result<bool, UnpackError> {
        let meta = match fs::symlink_metadata(target) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_error(path, "inspect existing file", e)),
        };
        if meta.is_dir() && keep_dir {
            return Ok(true);
        }
        self.parent_cache = None;
        let removed = if meta.is_dir() {
            self.dir_times.remove(target);
            tree::remove_tree(target)
        } else {
            fs::remove_file(target)
        };
        removed.map_err(|e| io_error(path, "replace existing file", e))?;
        Ok(false)
    }

    /// Applies ownership, then mode (chown clears set-id bits), then xattrs
    /// (chown clears `security.capability`), then times.
    fn set_attrs(
        &mut self,
        target: &Path,
        attrs: &Attrs,
        kind: Kind,
        path: &str,
    ) -> Result<(), UnpackError> {
        lchown(target, Some(attrs.uid), Some(attrs.gid))
            .map_err(|e| io_error(path, "change owner", e))?;
        if kind != Kind::Symlink {
            fs::set_permissions(target, fs::Permissions::from_mode(attrs.mode))
                .map_err(|e| io_error(path, "set mode", e))?;
        }
        for (name, value) in &attrs.xattrs {
            set_xattr(target, name, value, kind, path)?;
        }
        if kind == Kind::Dir {
            self.dir_times.insert(target.to_path_buf(), attrs.mtime);
            return Ok(());
        }
        set_times(target, attrs.mtime).map_err(|e| io_error(path, "set mtime", e))
    }

    /// Sets the deferred directory mtimes.
    fn finish(self) -> Result<(), UnpackError> {
        for (dir, mtime) in &self.dir_times {
            match set_times(dir, *mtime) {
                Ok(()) => {}
                // Removed by a later entry's replacement of a parent.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    let rel = dir.strip_prefix(self.root).unwrap_or(dir);
                    return Err(io_error(&rel.to_string_lossy(), "set directory mtime", e));
                }
            }
        }
        Ok(())
    }
}

fn kind_of(header: &tar::Header, raw_path: &[u8]) -> Result<Kind, char> {
    Ok(match header.entry_type() {
        EntryType::Directory => Kind::Dir,
        // Pre-POSIX tars mark directories only by a trailing slash.
        EntryType::Regular if header.as_old().linkflag[0] == 0 && raw_path.ends_with(b"/") => {
            Kind::Dir
        }
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Kind::File,
        EntryType::Symlink => Kind::Symlink,
        EntryType::Link => Kind::HardLink,
        EntryType::Char => Kind::Char,
        EntryType::Block => Kind::Block,
        EntryType::Fifo => Kind::Fifo,
        EntryType::XGlobalHeader => Kind::Skip,
        other => return Err(char::from(other.as_byte())),
    })
}

#[cfg(test)]
mod safety_tests;
#[cfg(test)]
mod tests;
