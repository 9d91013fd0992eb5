//! Builders for in-memory layer tars, including entries that `tar::Builder`
//! would refuse (`..`, absolute paths), for the storage tests.

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;

use tar::{EntryType, Header};
use tempfile::TempDir;

use super::snapshot::SnapshotInfo;
use super::unpack::{unpack_layer, UnpackError};

/// A scratch dir holding an empty `root` to unpack into, with room beside
/// it to check that nothing escaped.
pub(crate) struct Scratch {
    pub dir: TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        Scratch { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Unpacks an in-memory tar into `root`.
    pub fn unpack(&self, tar: &[u8]) -> Result<SnapshotInfo, UnpackError> {
        unpack_layer(tar, &self.root())
    }

    /// Unpacks a tar stream, e.g. from a decoder, into `root`.
    pub fn unpack_stream(&self, stream: impl Read) -> Result<SnapshotInfo, UnpackError> {
        unpack_layer(stream, &self.root())
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    pub fn meta(&self, rel: &str) -> fs::Metadata {
        fs::symlink_metadata(self.path(rel)).unwrap()
    }

    /// Everything in the scratch dir except `root`: must stay as the test left it.
    pub fn outside(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "root")
            .collect();
        names.sort();
        names
    }
}

/// Entry metadata in one call.
pub(crate) fn meta(mode: u32, uid: u64, gid: u64, mtime: u64) -> Meta {
    Meta {
        mode,
        uid,
        gid,
        mtime,
    }
}

/// Builds a layer tar entry by entry.
pub(crate) struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

/// Optional fields of one entry.
#[derive(Clone)]
pub(crate) struct Meta {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
        }
    }
}

impl Layer {
    pub fn new() -> Self {
        Layer {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    /// A header with `path` written raw into the name field, unchecked.
    fn header(kind: EntryType, path: &str, meta: &Meta, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        let name = &mut h.as_old_mut().name;
        assert!(path.len() < name.len(), "use long() for long paths");
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_mode(meta.mode);
        h.set_uid(meta.uid);
        h.set_gid(meta.gid);
        h.set_mtime(meta.mtime);
        h.set_size(size);
        h
    }

    fn push(&mut self, mut h: Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    pub fn dir(&mut self, path: &str, meta: Meta) -> &mut Self {
        let h = Self::header(EntryType::Directory, path, &meta, 0);
        self.push(h, &[])
    }

    pub fn file(&mut self, path: &str, data: &[u8], meta: Meta) -> &mut Self {
        let h = Self::header(EntryType::Regular, path, &meta, data.len() as u64);
        self.push(h, data)
    }

    pub fn link(&mut self, kind: EntryType, path: &str, target: &str, meta: Meta) -> &mut Self {
        let mut h = Self::header(kind, path, &meta, 0);
        h.set_link_name_literal(target).unwrap();
        self.push(h, &[])
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let meta = Meta {
            mode: 0o777,
            ..Meta::default()
        };
        self.link(EntryType::Symlink, path, target, meta)
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.link(EntryType::Link, path, target, Meta::default())
    }

    pub fn node(&mut self, kind: EntryType, path: &str, major: u32, minor: u32) -> &mut Self {
        let mut h = Self::header(kind, path, &Meta::default(), 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.push(h, &[])
    }

    /// An entry of any type byte, e.g. an unsupported one.
    pub fn raw(&mut self, typeflag: u8, path: &str) -> &mut Self {
        let mut h = Self::header(EntryType::new(typeflag), path, &Meta::default(), 0);
        h.as_old_mut().linkflag[0] = typeflag;
        self.push(h, &[])
    }

    /// PAX records for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.builder
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    /// A regular file through `append_data`, which writes GNU long-name
    /// records for long paths.
    pub fn long(&mut self, path: &str, data: &[u8]) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        self.builder.append_data(&mut h, path, data).unwrap();
        self
    }

    /// The finished tar, with its end-of-archive blocks.
    pub fn tar(&mut self) -> Vec<u8> {
        let mut out = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        out.finish().unwrap();
        out.into_inner().unwrap()
    }
}

/// `data` gzip-compressed.
pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// `data` zstd-compressed.
pub(crate) fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}
