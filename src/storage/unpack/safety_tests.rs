//! Path safety: a layer must not write, link or resolve outside its root,
//! and a violation fails the unpack naming the entry.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use tar::EntryType;

use super::*;
use crate::storage::testutil::{meta, Layer, Meta, Scratch};

#[test]
fn never_follows_a_symlink_at_the_final_component() {
    let s = Scratch::new();
    let victim = s.dir.path().join("victim");
    fs::write(&victim, b"untouched").unwrap();
    let tar = Layer::new()
        .symlink("f", victim.to_str().unwrap())
        .file("f", b"replaced", Meta::default())
        .symlink("d", "../../")
        .dir("d", meta(0o700, 0, 0, 1))
        .symlink("n", "target")
        .node(EntryType::Fifo, "n", 0, 0)
        .tar();
    s.unpack(&tar).unwrap();

    assert_eq!(fs::read(&victim).unwrap(), b"untouched");
    assert!(s.meta("f").is_file());
    assert_eq!(fs::read(s.path("f")).unwrap(), b"replaced");
    assert!(s.meta("d").is_dir());
    assert!(s.meta("n").file_type().is_fifo());
    assert!(!s.path("target").exists());
}

#[test]
fn rejects_dotdot_and_absolute_paths() {
    for (path, want) in [
        ("../evil", r#"tar entry "../evil" escapes the layer root"#),
        (
            "a/../../evil",
            r#"tar entry "a/../../evil" escapes the layer root"#,
        ),
        ("./a/../b", r#"tar entry "./a/../b" escapes the layer root"#),
        ("/etc/evil", r#"tar entry "/etc/evil" has an absolute path"#),
    ] {
        let s = Scratch::new();
        let tar = Layer::new().file(path, b"pwned", Meta::default()).tar();
        let err = s.unpack(&tar).unwrap_err();
        assert_eq!(err.to_string(), want);
        assert!(err.is_malformed());
        assert!(s.outside().is_empty(), "{path}: {:?}", s.outside());
    }
}

#[test]
fn rejects_hard_links_that_leave_the_root() {
    // (link target, a symlink to put in the layer first)
    let cases = [
        ("/etc/passwd", None),
        ("../victim", None),
        ("a/../../victim", None),
        ("up/victim", Some(("up", ".."))),
        ("abs/victim", Some(("abs", "/.."))),
    ];
    for (target, symlink) in cases {
        let s = Scratch::new();
        fs::write(s.dir.path().join("victim"), b"secret").unwrap();
        let mut layer = Layer::new();
        if let Some((path, to)) = symlink {
            layer.symlink(path, to);
        }
        let tar = layer.hardlink("stolen", target).tar();
        let err = s.unpack(&tar).unwrap_err();
        assert!(
            matches!(err, UnpackError::LinkEscapes { .. }),
            "{target}: {err}"
        );
        assert!(err.to_string().contains("outside the layer root"), "{err}");
        assert!(!s.path("stolen").exists());
    }
}

#[test]
fn hard_link_targets_must_exist_in_the_layer() {
    let s = Scratch::new();
    let tar = Layer::new().hardlink("b", "missing").tar();
    assert!(matches!(
        s.unpack(&tar),
        Err(UnpackError::LinkTargetMissing { .. })
    ));
    let s = Scratch::new();
    let tar = Layer::new()
        .dir("d", Meta::default())
        .hardlink("b", "d")
        .tar();
    assert!(matches!(
        s.unpack(&tar),
        Err(UnpackError::InvalidEntry { .. })
    ));
}

#[test]
fn hard_links_resolve_parents_inside_the_root() {
    let s = Scratch::new();
    let tar = Layer::new()
        .file("usr/lib/libc.so", b"elf", Meta::default())
        .symlink("lib", "/usr/lib")
        .hardlink("libc-link", "lib/libc.so")
        .hardlink("usr/lib/libc.so", "./usr/lib/libc.so")
        .tar();
    s.unpack(&tar).unwrap();
    assert_eq!(s.meta("libc-link").ino(), s.meta("usr/lib/libc.so").ino());
    assert_eq!(fs::read(s.path("usr/lib/libc.so")).unwrap(), b"elf");
}

#[test]
fn rejects_parents_through_symlinks_that_leave_the_root() {
    for target in ["..", "../..", "a/../..", "/../outside"] {
        let s = Scratch::new();
        let tar = Layer::new()
            .dir("a", Meta::default())
            .symlink("evil", target)
            .file("evil/x", b"pwned", Meta::default())
            .tar();
        let err = s.unpack(&tar).unwrap_err();
        assert!(
            matches!(err, UnpackError::SymlinkEscape { .. }),
            "{target}: {err}"
        );
        assert_eq!(
            err.to_string(),
            r#"tar entry "evil/x" resolves through symlink "evil" to outside the layer root"#
        );
        assert!(s.outside().is_empty(), "{target}: {:?}", s.outside());
    }
}

#[test]
fn absolute_symlinks_resolve_inside_the_root() {
    let s = Scratch::new();
    let tar = Layer::new()
        .symlink("etc", "/usr/etc")
        .file(
            "etc/passwd",
            b"root:x:0:0::/root:/bin/sh\n",
            Meta::default(),
        )
        .dir("usr/lib", Meta::default())
        .symlink("deep", "usr/lib/../../etc")
        .file("deep/group", b"root:x:0:\n", Meta::default())
        .tar();
    s.unpack(&tar).unwrap();
    assert!(s.meta("etc").file_type().is_symlink());
    assert_eq!(
        fs::read(s.path("usr/etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    assert!(s.meta("usr/etc/group").is_file());
    // A symlink to itself through the root is a loop, not an escape.
    let tar = Layer::new()
        .symlink("self", "/self")
        .file("self/x", b"", Meta::default())
        .tar();
    let err = Scratch::new().unpack(&tar).unwrap_err();
    assert!(matches!(err, UnpackError::SymlinkLoop { .. }), "{err}");
}

#[test]
fn symlink_loops_are_an_error() {
    let s = Scratch::new();
    let tar = Layer::new()
        .symlink("a", "b")
        .symlink("b", "a")
        .file("a/x", b"", Meta::default())
        .tar();
    let err = s.unpack(&tar).unwrap_err();
    assert!(matches!(err, UnpackError::SymlinkLoop { .. }), "{err}");
}

#[test]
fn file_as_parent_is_an_error() {
    let s = Scratch::new();
    let tar = Layer::new()
        .file("f", b"", Meta::default())
        .file("f/x", b"", Meta::default())
        .tar();
    assert!(matches!(
        s.unpack(&tar),
        Err(UnpackError::NotADirectory { .. })
    ));
}
