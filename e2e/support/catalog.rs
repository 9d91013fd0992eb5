//! The images the tests use, built from the host's busybox.

use std::sync::atomic::{AtomicUsize, Ordering};

use tar::EntryType;

use super::images::{host_arch, other_arch, BuiltIndex, Format, ImageBuilder};
use super::layers::{big_layer, busybox_layer, single_file_layer, Compression, Layer, TarBuilder};

/// busybox with `/etc/passwd` and `/etc/group`, one gzip layer, Docker format.
pub fn busybox() -> ImageBuilder {
    ImageBuilder::new().layer(busybox_layer(Compression::Gzip))
}

/// busybox with its base layer compressed as asked, OCI format (Docker
/// schema2 has no zstd media type).
pub fn busybox_oci(compression: Compression) -> ImageBuilder {
    ImageBuilder::new()
        .format(Format::Oci)
        .layer(busybox_layer(compression))
}

/// Three layers exercising whiteouts:
/// 1. busybox;
/// 2. `data/a.txt`, `data/keep/old.txt`;
/// 3. `data/.wh.a.txt` (delete a.txt), `data/keep/.wh..wh..opq` (make keep
///    opaque) and `data/keep/new.txt`.
pub fn whiteout_image() -> ImageBuilder {
    let mut l2 = TarBuilder::new();
    l2.dir("data", 0o755)
        .file("data/a.txt", b"layer two\n", 0o644)
        .dir("data/keep", 0o755)
        .file("data/keep/old.txt", b"old\n", 0o644);
    let mut l3 = TarBuilder::new();
    l3.dir("data", 0o755)
        .file("data/.wh.a.txt", b"", 0o644)
        .dir("data/keep", 0o755)
        .file("data/keep/.wh..wh..opq", b"", 0o644)
        .file("data/keep/new.txt", b"new\n", 0o644);
    busybox()
        .layer(Layer::new(&l2.finish(), Compression::Gzip))
        .layer(Layer::new(&l3.finish(), Compression::Gzip))
}

/// The path of the marker file an index image for `arch` carries.
pub fn platform_marker(arch: &str) -> String {
    format!("platform/{arch}")
}

/// An index (OCI) or manifest list (Docker) with a host-arch image and an
/// image for another arch; their top layers differ (a marker file each).
pub fn platform_index(format: Format) -> BuiltIndex {
    let image = |arch: &str| {
        let marker = platform_marker(arch);
        ImageBuilder::new()
            .format(format)
            .arch(arch)
            .label("berth.e2e.arch", arch)
            .layer(busybox_layer(Compression::Gzip))
            .layer(single_file_layer(
                &marker,
                arch.as_bytes(),
                Compression::Gzip,
            ))
            .build()
    };
    BuiltIndex::new(format, vec![image(other_arch()), image(host_arch())])
}

/// The ways a layer can try to write outside its snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// A file entry `../<evil>`.
    ParentDir,
    /// A file entry `/<evil>`.
    Absolute,
    /// A hard link `<evil>` to `../../etc/passwd`.
    HardlinkOut,
    /// A symlink `lnk -> ../../..` and then a file `lnk/<evil>`.
    SymlinkEscape,
}

/// A hostile single-layer image. Returns the image and the unique file name
/// it tries to plant, so a test can look for it everywhere afterwards.
/// `needle` is the part of the offending entry an error message should name.
pub fn hostile(kind: Hostile) -> (ImageBuilder, HostileInfo) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let evil = format!(
        "berth-evil-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut t = TarBuilder::new();
    t.dir("etc", 0o755).file("etc/ok", b"fine\n", 0o644);
    let (entry, needle) = match kind {
        Hostile::ParentDir => {
            let name = format!("../{evil}");
            t.raw(&name, EntryType::Regular, None, b"escaped\n");
            (name.clone(), name)
        }
        Hostile::Absolute => {
            let name = format!("/{evil}");
            t.raw(&name, EntryType::Regular, None, b"escaped\n");
            (name.clone(), name)
        }
        Hostile::HardlinkOut => {
            t.raw(&evil, EntryType::Link, Some("../../etc/passwd"), b"");
            (evil.clone(), "../../etc/passwd".to_string())
        }
        Hostile::SymlinkEscape => {
            t.symlink("lnk", "../../..");
            let name = format!("lnk/{evil}");
            t.raw(&name, EntryType::Regular, None, b"escaped\n");
            (name, "lnk".to_string())
        }
    };
    let image = ImageBuilder::new().layer(Layer::new(&t.finish(), Compression::Gzip));
    (
        image,
        HostileInfo {
            evil,
            entry,
            needle,
        },
    )
}

/// What a hostile image tries to do.
#[derive(Debug, Clone)]
pub struct HostileInfo {
    /// The unique file name it tries to create outside the snapshot.
    pub evil: String,
    /// The offending tar entry's name.
    pub entry: String,
    /// What an error message is expected to mention.
    pub needle: String,
}

/// Sizes of the big image's data layers (after busybox): about 50 MB total.
pub const BIG_LAYER_SIZES: &[usize] = &[20 << 20, 12 << 20, 8 << 20, 5 << 20, 3 << 20];

/// A ~50 MB multi-layer image: busybox plus `data/blob-<i>` layers of
/// pseudo-random bytes. `gzip_level` 0 makes stored (uncompressed) deflate
/// blocks, cheap to build in debug builds; the benchmark uses real levels.
pub fn big_image(gzip_level: u32) -> ImageBuilder {
    let mut image = busybox().label("berth.e2e.big", "yes");
    for (i, size) in BIG_LAYER_SIZES.iter().enumerate() {
        image = image.layer(big_layer(i, *size, Compression::Gzip, gzip_level));
    }
    image
}
