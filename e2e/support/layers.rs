//! Layer tarballs built in memory, with no Docker: normal entries through a
//! small builder, hostile entries (`../x`, `/x`) by writing the header's name
//! bytes directly, since the tar crate refuses to create them.

use std::io::Write;
use std::sync::OnceLock;

use tar::{EntryType, Header};

use super::digest_of;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

/// A layer as pushed: the (compressed) blob and the digest of its tar.
#[derive(Debug, Clone)]
pub struct Layer {
    pub data: Vec<u8>,
    /// `sha256:` of `data`, the manifest's layer digest.
    pub digest: String,
    /// `sha256:` of the uncompressed tar, the config's `rootfs.diff_ids` entry.
    pub diff_id: String,
    pub compression: Compression,
}

impl Layer {
    /// Compresses `tar` (gzip at the default level).
    pub fn new(tar: &[u8], compression: Compression) -> Layer {
        Self::with_gzip_level(tar, compression, 6)
    }

    /// Compresses `tar`; `gzip_level` 0 stores deflate blocks uncompressed
    /// (still real gzip for the reader, cheap to make in a debug build).
    pub fn with_gzip_level(tar: &[u8], compression: Compression, gzip_level: u32) -> Layer {
        let data = match compression {
            Compression::Gzip => {
                let level = flate2::Compression::new(gzip_level);
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), level);
                enc.write_all(tar).expect("gzip");
                enc.finish().expect("gzip finish")
            }
            Compression::Zstd => zstd::encode_all(tar, 3).expect("zstd"),
            Compression::None => tar.to_vec(),
        };
        Layer {
            digest: digest_of(&data),
            diff_id: digest_of(tar),
            data,
            compression,
        }
    }

    /// The OCI media type of this layer.
    pub fn oci_media_type(&self) -> &'static str {
        match self.compression {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }

    /// The Docker schema2 media type of this layer (Docker has no zstd type).
    pub fn docker_media_type(&self) -> &'static str {
        match self.compression {
            Compression::Gzip => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.docker.image.rootfs.diff.tar",
        }
    }
}

/// Builds a layer tar in memory. Every entry is owned by 0:0 unless stated,
/// with a fixed mtime so identical content gives identical digests.
pub struct TarBuilder {
    builder: tar::Builder<Vec<u8>>,
}

const MTIME: u64 = 1_700_000_000;

impl Default for TarBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TarBuilder {
    pub fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: EntryType, mode: u32, uid: u64, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(MTIME);
        h.set_size(size);
        h
    }

    /// A directory (`path` without trailing slash).
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.dir_owned(path, mode, 0)
    }

    /// A directory owned by `id:id`.
    pub fn dir_owned(&mut self, path: &str, mode: u32, id: u64) -> &mut Self {
        let mut h = Self::header(EntryType::Directory, mode, id, 0);
        self.builder
            .append_data(&mut h, format!("{path}/"), std::io::empty())
            .expect("tar dir");
        self
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, data: &[u8], mode: u32) -> &mut Self {
        let mut h = Self::header(EntryType::Regular, mode, 0, data.len() as u64);
        self.builder
            .append_data(&mut h, path, data)
            .expect("tar file");
        self
    }

    /// A symbolic link `path -> target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(EntryType::Symlink, 0o777, 0, 0);
        self.builder
            .append_link(&mut h, path, target)
            .expect("tar symlink");
        self
    }

    /// A hard link `path` to the earlier entry `target`.
    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(EntryType::Link, 0o644, 0, 0);
        self.builder
            .append_link(&mut h, path, target)
            .expect("tar hardlink");
        self
    }

    /// An entry whose name is written verbatim, bypassing the tar crate's
    /// path checks: how hostile layers get `../evil` or `/evil` in.
    pub fn raw(
        &mut self,
        name: &str,
        kind: EntryType,
        link: Option<&str>,
        data: &[u8],
    ) -> &mut Self {
        let mut h = Self::header(kind, 0o644, 0, data.len() as u64);
        let slot = &mut h.as_gnu_mut().expect("gnu header").name;
        assert!(name.len() < slot.len(), "raw tar name too long: {name}");
        slot.fill(0);
        slot[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            h.set_link_name(link).expect("tar link name");
        }
        h.set_cksum();
        self.builder.append(&h, data).expect("tar raw entry");
        self
    }

    /// Finishes the archive (two zero blocks) and returns its bytes.
    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().expect("tar finish")
    }
}

/// The busybox applets every test image links into `bin/`.
pub const APPLETS: &[&str] = &[
    "sh",
    "ash",
    "echo",
    "cat",
    "ls",
    "sleep",
    "id",
    "true",
    "false",
    "env",
    "wget",
    "httpd",
    "top",
    "ps",
    "mkdir",
    "rm",
    "touch",
    "test",
    "[",
    "grep",
    "head",
    "tail",
    "wc",
    "stat",
    "hostname",
    "ip",
    "nc",
    "printf",
    "pwd",
    "uname",
    "whoami",
    "kill",
    "mount",
    "sync",
    "date",
    "chmod",
    "chown",
    "cp",
    "mv",
    "ln",
    "sed",
    "awk",
    "tr",
    "dd",
    "find",
    "sha256sum",
    "readlink",
    "nslookup",
    "ping",
    "yes",
    "timeout",
    "tee",
    "seq",
];

/// `etc/passwd`: root, nobody and `berthuser` (1234:1234).
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
berthuser:x:1234:1234::/home/berthuser:/bin/sh\n";

/// `etc/group`: berthuser's own group 1234 and a supplementary group 5555.
pub const GROUP: &str = "root:x:0:\n\
nogroup:x:65534:\n\
berthuser:x:1234:\n\
berthextra:x:5555:berthuser\n";

/// The uncompressed base layer: busybox from the host plus a tiny `/etc`.
pub fn busybox_tar() -> &'static [u8] {
    static TAR: OnceLock<Vec<u8>> = OnceLock::new();
    TAR.get_or_init(|| {
        let busybox = std::fs::read("/bin/busybox").expect("read /bin/busybox (busybox-static)");
        let mut t = TarBuilder::new();
        t.dir("bin", 0o755).file("bin/busybox", &busybox, 0o755);
        for applet in APPLETS {
            t.symlink(&format!("bin/{applet}"), "busybox");
        }
        t.dir("etc", 0o755)
            .file("etc/passwd", PASSWD.as_bytes(), 0o644)
            .file("etc/group", GROUP.as_bytes(), 0o644)
            .file("etc/hostname", b"berth-e2e\n", 0o644)
            .dir("home", 0o755)
            .dir_owned("home/berthuser", 0o755, 1234)
            .dir("root", 0o700)
            .dir("tmp", 0o1777)
            .dir("proc", 0o555)
            .dir("sys", 0o555)
            .dir("dev", 0o755)
            .dir("var", 0o755);
        t.finish()
    })
}

/// The busybox base layer, compressed.
pub fn busybox_layer(compression: Compression) -> Layer {
    Layer::new(busybox_tar(), compression)
}

/// A layer holding one file `path` with `content`.
pub fn single_file_layer(path: &str, content: &[u8], compression: Compression) -> Layer {
    let mut t = TarBuilder::new();
    if let Some((dir, _)) = path.rsplit_once('/') {
        let mut prefix = String::new();
        for part in dir.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            t.dir(&prefix, 0o755);
        }
    }
    t.file(path, content, 0o644);
    Layer::new(&t.finish(), compression)
}

/// Deterministic pseudo-random bytes (xorshift64*) from `seed`. Only the
/// low 6 bits of each byte vary, so gzip saves about a quarter: it has work
/// to do, but the data does not collapse.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        out.extend(word.to_le_bytes().iter().map(|b| b'0' + (b & 0x3f)));
    }
    out.truncate(len);
    out
}

/// The file a big layer holds: `data/blob-<index>` of `size` bytes.
pub fn big_file(index: usize, size: usize) -> (String, Vec<u8>) {
    (
        format!("data/blob-{index}"),
        pseudo_random(0xBE27 + index as u64, size),
    )
}

/// A layer of the big image: `data/blob-<index>`.
pub fn big_layer(index: usize, size: usize, compression: Compression, gzip_level: u32) -> Layer {
    let (path, data) = big_file(index, size);
    let mut t = TarBuilder::new();
    t.dir("data", 0o755).file(&path, &data, 0o644);
    Layer::with_gzip_level(&t.finish(), compression, gzip_level)
}
