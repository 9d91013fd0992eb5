//! Layer diffs: a container's writable layer (the overlay upper dir) as an
//! OCI layer tar, the same tree copied into a snapshot without a tar in
//! between, its changes as `docker diff` lists them, and a merged root
//! filesystem as a plain tar (`docker export`).
//!
//! The upper dir holds overlayfs's own forms: a deleted path is a 0/0
//! character device, a directory that hides the lower one's contents has
//! `trusted.overlay.opaque=y` (`user.overlay.opaque` on a `userxattr`
//! mount). A layer tar holds the OCI forms instead: `.wh.<name>` and
//! `.wh..wh..opq` (as moby's overlay driver writes them). Entries come in a
//! reproducible order (a directory, then its entries sorted by name, depth
//! first), hard links within the tree stay tar hard links (by device and
//! inode), sockets are skipped, and xattrs other than overlayfs's own go in
//! PAX `SCHILY.xattr.` records. Everything streams: only the list of paths
//! and their stat is held in memory, never a file's content.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::Digest as _;

mod copy;
#[cfg(test)]
mod tests;

pub use copy::copy_upper;

/// The opaque-directory xattrs overlayfs reads (the `userxattr` form too).
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What a layer tar written by [`write_layer`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDiff {
    /// `sha256:<hex>` of the compressed blob.
    pub digest: String,
    /// Bytes of the compressed blob.
    pub size: u64,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
}

/// How a tree is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// An overlay upper dir: whiteout devices and opaque xattrs are overlay's.
    Upper,
    /// A plain tree (a mounted rootfs): what is there is what is archived.
    Plain,
}

/// One path of a walked tree.
#[derive(Debug)]
pub(crate) struct Node {
    /// Relative to the tree's root, never empty.
    pub rel: PathBuf,
    pub host: PathBuf,
    pub meta: Metadata,
    /// A 0/0 character device in an upper dir: deleted here.
    pub whiteout: bool,
    /// A directory of an upper dir that hides what the layers below hold.
    pub opaque: bool,
}

/// Walks `root`: each directory before its entries, entries sorted by
/// name, sockets left out, and so are the paths in `skip` (relative) with
/// everything below them. Directories on another file system than `root`
/// are listed but not entered.
pub(crate) fn walk(root: &Path, form: Form, skip: &HashSet<PathBuf>) -> io::Result<Vec<Node>> {
    let dev = fs::symlink_metadata(root)?.dev();
    let mut out = Vec::new();
    // One level per open directory: its names still to visit, last first.
    let mut stack = vec![(root.to_path_buf(), PathBuf::new(), sorted_names(root)?)];
    while let Some((dir, rel, names)) = stack.last_mut() {
        let Some(name) = names.pop() else {
            stack.pop();
            continue;
        };
        let host = dir.join(&name);
        let rel = rel.join(&name);
        if skip.contains(&rel) {
            continue;
        }
        let meta = fs::symlink_metadata(&host)?;
        let ft = meta.file_type();
        if ft.is_socket() {
            continue;
        }
        let whiteout = form == Form::Upper && ft.is_char_device() && meta.rdev() == 0;
        let opaque = form == Form::Upper && ft.is_dir() && is_opaque(&host);
        let descend = ft.is_dir() && meta.dev() == dev;
        out.push(Node {
            rel: rel.clone(),
            host: host.clone(),
            meta,
            whiteout,
            opaque,
        });
        if descend {
            let names = sorted_names(&host)?;
            stack.push((host, rel, names));
        }
    }
    Ok(out)
}

/// The names in `dir`, sorted by their bytes, in reverse (popped in order).
fn sorted_names(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names: Vec<OsString> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
    Ok(names)
}

/// True when the upper dir's directory `p` is marked opaque.
fn is_opaque(p: &Path) -> bool {
    OPAQUE_XATTRS
        .iter()
        .any(|x| xattr::get(p, x).ok().flatten().is_some_and(|v| v == b"y"))
}

/// The xattrs a layer carries for `n`: all but overlayfs's own.
pub(crate) fn xattrs(n: &Node) -> io::Result<Vec<(String, Vec<u8>)>> {
    let names = match xattr::list(&n.host) {
        Ok(names) => names,
        // A file system without xattrs has none to keep.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") {
            continue;
        }
        if let Some(v) = xattr::get(&n.host, name)? {
            out.push((name.to_string(), v));
        }
    }
    out.sort();
    Ok(out)
}

/// Writes the nodes as tar entries (uncompressed) to `out`.
pub(crate) fn write_tar<W: Write>(nodes: &[Node], form: Form, out: W) -> io::Result<W> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for n in nodes {
        append(&mut b, n, form, &mut links)?;
    }
    b.into_inner()
}

fn header(meta: &Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(0);
    h
}

fn append<W: Write>(
    b: &mut tar::Builder<W>,
    n: &Node,
    form: Form,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let parent = n.rel.parent().unwrap_or(Path::new(""));
    if n.whiteout {
        let name = n.rel.file_name().unwrap_or_default();
        let mut wh = OsString::from(WHITEOUT_PREFIX);
        wh.push(name);
        let mut h = header(&n.meta, tar::EntryType::Regular);
        h.set_mode(0o600);
        return b.append_data(&mut h, parent.join(wh), io::empty());
    }
    let ft = n.meta.file_type();
    let attrs = xattrs(n)?;
    let pax: Vec<(String, &[u8])> = attrs
        .iter()
        .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
        .collect();
    if ft.is_file() && n.meta.nlink() > 1 {
        let key = (n.meta.dev(), n.meta.ino());
        if let Some(first) = links.get(&key) {
            let mut h = header(&n.meta, tar::EntryType::Link);
            return b.append_link(&mut h, &n.rel, first);
        }
        links.insert(key, n.rel.clone());
    }
    b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))?;
    if ft.is_dir() {
        let mut h = header(&n.meta, tar::EntryType::Directory);
        let mut name = n.rel.clone().into_os_string();
        name.push("/");
        b.append_data(&mut h, name, io::empty())?;
        if form == Form::Upper && n.opaque {
            let mut h = header(&n.meta, tar::EntryType::Regular);
            h.set_mode(n.meta.mode() & 0o777);
            b.append_data(&mut h, n.rel.join(OPAQUE_MARKER), io::empty())?;
        }
        Ok(())
    } else if ft.is_file() {
        let f = File::open(&n.host)?;
        let mut h = header(&n.meta, tar::EntryType::Regular);
        h.set_size(n.meta.len());
        // Exactly the size in the header, even if a running container
        // changes the file while it is read (zeros fill a file that shrank),
        // so the archive stays well formed.
        let len = n.meta.len();
        let body = io::Read::take(io::Read::chain(io::Read::take(f, len), io::repeat(0)), len);
        b.append_data(&mut h, &n.rel, body)
    } else if ft.is_symlink() {
        let target = fs::read_link(&n.host)?;
        let mut h = header(&n.meta, tar::EntryType::Symlink);
        b.append_link(&mut h, &n.rel, target)
    } else {
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else {
            tar::EntryType::Fifo
        };
        let mut h = header(&n.meta, kind);
        if kind != tar::EntryType::Fifo {
            let rdev = n.meta.rdev();
            h.set_device_major(libc::major(rdev))?;
            h.set_device_minor(libc::minor(rdev))?;
        }
        b.append_data(&mut h, &n.rel, io::empty())
    }
}

/// Hashes (sha256) and counts what passes through to `inner`: a layer's
/// digest and size on the compressed side, its diff id on the plain side.
pub struct Hashing<W> {
    pub inner: W,
    hasher: sha2::Sha256,
    /// Bytes written through.
    pub n: u64,
}

impl<W> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: sha2::Sha256::default(),
            n: 0,
        }
    }

    /// `sha256:<hex>` of what was written so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the upper dir `upper` (without the paths in `skip`, relative:
/// the runtime's mount points) as a gzip-compressed layer tar to `out`,
/// with its digest and diff id computed on the way. Blocking.
pub fn write_layer<W: Write>(
    upper: &Path,
    skip: &HashSet<PathBuf>,
    out: W,
) -> io::Result<LayerDiff> {
    let nodes = walk(upper, Form::Upper, skip)?;
    let compressed = Hashing::new(io::BufWriter::with_capacity(256 << 10, out));
    // gzip's default level, as Docker compresses layers: level 1 (zlib-rs's
    // "quick" strategy, static Huffman trees) barely shrinks text-like data.
    let gz = flate2::write::GzEncoder::new(compressed, flate2::Compression::default());
    let plain = write_tar(&nodes, Form::Upper, Hashing::new(gz))?;
    let diff_id = plain.digest();
    let mut compressed = plain.inner.finish()?;
    compressed.flush()?;
    Ok(LayerDiff {
        digest: compressed.digest(),
        size: compressed.n,
        diff_id,
    })
}

/// Writes the tree at `root` (a mounted root filesystem) as a plain tar to
/// `out`, as `docker export` gives it. Blocking.
pub fn export_tree<W: Write>(root: &Path, out: W) -> io::Result<()> {
    let nodes = walk(root, Form::Plain, &HashSet::new())?;
    let mut w = write_tar(&nodes, Form::Plain, out)?;
    w.flush()
}

/// What `docker diff` reports for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Kind 0: there below and changed (or a directory with changes in it).
    Modified,
    /// Kind 1: new in the writable layer.
    Added,
    /// Kind 2: deleted.
    Deleted,
}

impl ChangeKind {
    /// Docker's number for the kind.
    pub fn code(self) -> u8 {
        match self {
            ChangeKind::Modified => 0,
            ChangeKind::Added => 1,
            ChangeKind::Deleted => 2,
        }
    }
}

/// One entry of `docker diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Absolute path in the container.
    pub path: String,
    pub kind: ChangeKind,
}

/// The changes of the upper dir `upper` over `lowers` (top-most first):
/// a whiteout is a deletion, a path the layers below have is a change, any
/// other a new path. A directory copied up only because something inside
/// it changed is reported (as Docker does) only when something below it
/// is, or when its mode or owner changed. Blocking.
pub fn changes(
    upper: &Path,
    lowers: &[PathBuf],
    skip: &HashSet<PathBuf>,
) -> io::Result<Vec<Change>> {
    let nodes = walk(upper, Form::Upper, skip)?;
    let mut kinds = Vec::with_capacity(nodes.len());
    let mut shown: HashSet<&Path> = HashSet::new();
    for n in &nodes {
        let kind = if n.whiteout {
            ChangeKind::Deleted
        } else {
            match lower_meta(lowers, &n.rel) {
                None => ChangeKind::Added,
                Some(_) if !n.meta.is_dir() => ChangeKind::Modified,
                Some(m) => {
                    let same = m.is_dir()
                        && m.mode() == n.meta.mode()
                        && m.uid() == n.meta.uid()
                        && m.gid() == n.meta.gid()
                        && !n.opaque;
                    if same {
                        kinds.push(None);
                        continue;
                    }
                    ChangeKind::Modified
                }
            }
        };
        kinds.push(Some(kind));
        // Every directory above a reported path is reported too.
        for a in n.rel.ancestors() {
            if !a.as_os_str().is_empty() && !shown.insert(a) {
                break;
            }
        }
    }
    Ok(nodes
        .iter()
        .zip(kinds)
        .filter(|(n, _)| shown.contains(n.rel.as_path()))
        .map(|(n, k)| Change {
            path: format!("/{}", n.rel.display()),
            kind: k.unwrap_or(ChangeKind::Modified),
        })
        .collect())
}

/// What the layers below (top-most first) hold at `rel`, if anything.
fn lower_meta(lowers: &[PathBuf], rel: &Path) -> Option<Metadata> {
    for lower in lowers {
        if let Ok(m) = fs::symlink_metadata(lower.join(rel)) {
            let gone = m.file_type().is_char_device() && m.rdev() == 0;
            return (!gone).then_some(m);
        }
        // Hidden from the layers further down by a whiteout or an opaque
        // directory on the way in this one.
        let hidden = rel.ancestors().skip(1).any(|a| {
            if a.as_os_str().is_empty() {
                return false;
            }
            let p = lower.join(a);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_char_device() && m.rdev() == 0 => true,
                Ok(m) if m.is_dir() => is_opaque(&p),
                Ok(_) => true,
                Err(_) => false,
            }
        });
        if hidden {
            return None;
        }
    }
    None
}
