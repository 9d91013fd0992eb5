//! Unpacking behaviour: entry types, metadata, replacement, whiteouts and
//! broken streams. Path-safety cases live in `safety_tests.rs`.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use tar::EntryType;

use super::*;
use crate::storage::testutil::{gzip, meta, Layer, Meta, Scratch};

#[test]
fn unpacks_every_entry_type() {
    let s = Scratch::new();
    let tar = Layer::new()
        .dir("./", meta(0o755, 0, 0, 1))
        .dir("./etc/", meta(0o755, 0, 0, 1))
        .file("./etc/hosts", b"127.0.0.1 localhost\n", Meta::default())
        .symlink("./etc/link", "hosts")
        .hardlink("./etc/hard", "./etc/hosts")
        .node(EntryType::Char, "dev-null", 1, 3)
        .node(EntryType::Block, "loop0", 7, 0)
        .node(EntryType::Fifo, "pipe", 0, 0)
        .tar();
    let info = s.unpack(&tar).unwrap();

    assert_eq!(
        fs::read(s.path("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n"
    );
    assert_eq!(
        fs::read_link(s.path("etc/link")).unwrap(),
        Path::new("hosts")
    );
    assert_eq!(s.meta("etc/hard").ino(), s.meta("etc/hosts").ino());
    let null = s.meta("dev-null");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), makedev(1, 3));
    let loop0 = s.meta("loop0");
    assert!(loop0.file_type().is_block_device());
    assert_eq!(loop0.rdev(), makedev(7, 0));
    assert!(s.meta("pipe").file_type().is_fifo());
    // root, etc, hosts (= hard), link, dev-null, loop0, pipe
    assert_eq!(info.inodes, 7);
    assert_eq!(info.bytes, 20);
}

#[test]
fn restores_modes_ownership_and_special_bits() {
    let s = Scratch::new();
    let tar = Layer::new()
        .dir("tmp", meta(0o1777, 0, 0, 1))
        .file("bin/su", b"x", meta(0o4755, 0, 0, 1))
        .file("bin/wall", b"x", meta(0o2755, 0, 5, 1))
        .file("home/u/f", b"x", meta(0o640, 1000, 1001, 1))
        .link(
            EntryType::Symlink,
            "home/u/l",
            "f",
            meta(0o777, 1234, 5678, 1),
        )
        .dir("ro", meta(0o555, 0, 0, 1))
        .file("ro/inside", b"x", meta(0o444, 0, 0, 1))
        .tar();
    s.unpack(&tar).unwrap();

    let mode = |p: &str| s.meta(p).mode() & 0o7777;
    assert_eq!(mode("tmp"), 0o1777);
    assert_eq!(mode("bin/su"), 0o4755);
    assert_eq!(mode("bin/wall"), 0o2755);
    assert_eq!(s.meta("bin/wall").gid(), 5);
    assert_eq!(mode("home/u/f"), 0o640);
    assert_eq!(
        (s.meta("home/u/f").uid(), s.meta("home/u/f").gid()),
        (1000, 1001)
    );
    // lchown: the symlink itself is owned, not its target.
    assert_eq!(
        (s.meta("home/u/l").uid(), s.meta("home/u/l").gid()),
        (1234, 5678)
    );
    assert_eq!(mode("ro"), 0o555);
    assert_eq!(mode("ro/inside"), 0o444);
    // Parents the tar never named are made 0755.
    assert_eq!(mode("bin"), 0o755);
    assert_eq!(mode("home/u"), 0o755);
}

#[test]
fn restores_mtimes_with_directories_last() {
    let s = Scratch::new();
    let tar = Layer::new()
        .dir("d", meta(0o755, 0, 0, 1_000_000))
        .file("d/f", b"x", meta(0o644, 0, 0, 2_000_000))
        .symlink("d/l", "f")
        .dir("d/sub", meta(0o755, 0, 0, 3_000_000))
        .file("d/sub/g", b"y", Meta::default())
        .pax(&[("mtime", b"1700000000.123456789")])
        .file("precise", b"z", Meta::default())
        .tar();
    s.unpack(&tar).unwrap();

    assert_eq!(s.meta("d").mtime(), 1_000_000);
    assert_eq!(s.meta("d/sub").mtime(), 3_000_000);
    assert_eq!(s.meta("d/f").mtime(), 2_000_000);
    assert_eq!(s.meta("d/l").mtime(), 1_600_000_000);
    let precise = s.meta("precise");
    assert_eq!(
        (precise.mtime(), precise.mtime_nsec()),
        (1_700_000_000, 123_456_789)
    );
}

#[test]
fn restores_pax_xattrs() {
    let s = Scratch::new();
    let tar = Layer::new()
        .pax(&[
            ("SCHILY.xattr.user.comment", b"hello"),
            ("SCHILY.xattr.trusted.berth", b"\x00\x01binary"),
        ])
        .file("f", b"x", Meta::default())
        // overlayfs's own xattrs are not taken from layers.
        .pax(&[
            ("SCHILY.xattr.user.dir", b"d"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/elsewhere"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ])
        .dir("d", Meta::default())
        // user.* cannot exist on symlinks: skipped, not an error.
        .pax(&[("SCHILY.xattr.user.nope", b"n")])
        .symlink("l", "f")
        .tar();
    s.unpack(&tar).unwrap();

    assert_eq!(
        xattr::get(s.path("f"), "user.comment").unwrap().unwrap(),
        b"hello"
    );
    assert_eq!(
        xattr::get(s.path("f"), "trusted.berth").unwrap().unwrap(),
        b"\x00\x01binary"
    );
    assert_eq!(xattr::get(s.path("d"), "user.dir").unwrap().unwrap(), b"d");
    assert!(xattr::get(s.path("d"), "trusted.overlay.redirect")
        .unwrap()
        .is_none());
    assert!(xattr::get(s.path("d"), OPAQUE_XATTR).unwrap().is_none());
    assert!(xattr::get(s.path("l"), "user.nope").unwrap().is_none());
}

#[test]
fn later_entries_replace_earlier_ones() {
    let s = Scratch::new();
    let tar = Layer::new()
        .file("f", b"old", Meta::default())
        .file("f", b"new", Meta::default())
        // A directory over a directory keeps what is inside, takes the new mode.
        .dir("d", meta(0o700, 0, 0, 1))
        .file("d/keep", b"k", Meta::default())
        .dir("d", meta(0o750, 0, 0, 1))
        // Other replacements swap the whole thing.
        .file("was-file", b"x", Meta::default())
        .dir("was-file", Meta::default())
        .dir("was-dir", Meta::default())
        .file("was-dir/child", b"x", Meta::default())
        .file("was-dir", b"now a file", Meta::default())
        // Replacing one name of a hard-linked file leaves the other alone.
        .file("a", b"shared", Meta::default())
        .hardlink("b", "a")
        .file("b", b"b only", Meta::default())
        .tar();
    s.unpack(&tar).unwrap();

    assert_eq!(fs::read(s.path("f")).unwrap(), b"new");
    assert_eq!(fs::read(s.path("d/keep")).unwrap(), b"k");
    assert_eq!(s.meta("d").mode() & 0o7777, 0o750);
    assert!(s.meta("was-file").is_dir());
    assert_eq!(fs::read(s.path("was-dir")).unwrap(), b"now a file");
    assert_eq!(fs::read(s.path("a")).unwrap(), b"shared");
    assert_eq!(fs::read(s.path("b")).unwrap(), b"b only");
}

#[test]
fn oci_whiteouts_become_overlay_whiteouts() {
    let s = Scratch::new();
    let tar = Layer::new()
        .dir("etc", Meta::default())
        .file("etc/.wh.passwd", b"", Meta::default())
        .file("var/cache/.wh..wh..opq", b"", Meta::default())
        .file(".wh..wh.plnk", b"", Meta::default())
        .file("tmp/.wh..wh.aufs", b"", Meta::default())
        // A whiteout replaces whatever the same layer put there before.
        .file("gone", b"x", Meta::default())
        .file(".wh.gone", b"", Meta::default())
        .tar();
    s.unpack(&tar).unwrap();

    let wh = s.meta("etc/passwd");
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!s.path("etc/.wh.passwd").exists());
    assert_eq!(
        xattr::get(s.path("var/cache"), OPAQUE_XATTR)
            .unwrap()
            .unwrap(),
        b"y"
    );
    assert_eq!(fs::read_dir(s.path("var/cache")).unwrap().count(), 0);
    assert!(!s.path(".wh..wh.plnk").exists());
    assert!(!s.path("tmp").exists());
    assert!(s.meta("gone").file_type().is_char_device());
    assert!(!s.path(".wh.gone").exists());
}

#[test]
fn whiteout_without_a_name_is_an_error() {
    let s = Scratch::new();
    let tar = Layer::new().file("a/.wh.", b"", Meta::default()).tar();
    assert!(matches!(
        s.unpack(&tar),
        Err(UnpackError::InvalidEntry { .. })
    ));
}

#[test]
fn truncated_and_corrupt_streams_are_errors() {
    let data = vec![0x5au8; 10_000];
    let tar = Layer::new()
        .file("a", b"a", Meta::default())
        .file("big", &data, Meta::default())
        .file("c", b"c", Meta::default())
        .tar();

    // Cut inside the data of "big".
    let err = Scratch::new().unpack(&tar[..3000]).unwrap_err();
    assert!(matches!(err, UnpackError::Truncated { .. }), "{err}");
    // Cut inside a header.
    let err = Scratch::new().unpack(&tar[..512 * 2 + 100]).unwrap_err();
    assert!(err.is_malformed(), "{err}");
    // A corrupted header checksum.
    let mut bad = tar.clone();
    bad[0] ^= 0xff;
    assert!(matches!(
        Scratch::new().unpack(&bad),
        Err(UnpackError::Read { .. })
    ));

    // gzip cut short, or with a flipped byte: an error from the decoder.
    let gz = gzip(&tar);
    for blob in [gz[..gz.len() / 2].to_vec(), gz[..gz.len() - 4].to_vec(), {
        let mut g = gz.clone();
        let mid = g.len() / 2;
        g[mid] ^= 0x55;
        g
    }] {
        let (_, stream) = decompressor(&blob[..], "").unwrap();
        assert!(Scratch::new().unpack_stream(stream).is_err());
    }
    // Garbage is not a tar.
    assert!(Scratch::new().unpack(&[0x42; 2048]).is_err());
}

#[test]
fn unsupported_entry_types_are_an_error() {
    let s = Scratch::new();
    let tar = Layer::new().raw(b'V', "volume-label").tar();
    let err = s.unpack(&tar).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"tar entry "volume-label" has unsupported type 'V'"#
    );
}

#[test]
fn root_entry_sets_root_attributes() {
    let s = Scratch::new();
    let tar = Layer::new()
        .dir("./", meta(0o751, 10, 20, 123_456))
        .file("./f", b"x", Meta::default())
        .tar();
    s.unpack(&tar).unwrap();
    let root = fs::symlink_metadata(s.root()).unwrap();
    assert_eq!(root.mode() & 0o7777, 0o751);
    assert_eq!((root.uid(), root.gid(), root.mtime()), (10, 20, 123_456));

    let tar = Layer::new().file("./", b"", Meta::default()).tar();
    assert!(matches!(
        Scratch::new().unpack(&tar),
        Err(UnpackError::InvalidEntry { .. })
    ));
}

#[test]
fn long_names_and_old_style_directories() {
    let s = Scratch::new();
    let long = format!("{}/file.txt", ["segment"; 30].join("/"));
    let pax_path = format!("pax/{}", "p".repeat(150));
    let tar = Layer::new()
        .long(&long, b"deep")
        .pax(&[("path", pax_path.as_bytes())])
        .file("placeholder", b"pax", Meta::default())
        .raw(b'\0', "old-dir/")
        .tar();
    s.unpack(&tar).unwrap();
    assert_eq!(fs::read(s.path(&long)).unwrap(), b"deep");
    assert_eq!(fs::read(s.path(&pax_path)).unwrap(), b"pax");
    assert!(!s.path("placeholder").exists());
    assert!(s.meta("old-dir").is_dir());
}

#[test]
fn pax_global_headers_are_skipped() {
    let s = Scratch::new();
    let tar = Layer::new()
        .raw(b'g', "pax_global_header")
        .file("f", b"x", Meta::default())
        .tar();
    s.unpack(&tar).unwrap();
    assert!(!s.path("pax_global_header").exists());
    assert!(s.path("f").exists());
}
