//! Tests of path resolution, tar writing and extraction.
use super::extract::{extract, ExtractError};
use super::*;
use crate::storage::scoped::{clean_abs, resolve as resolve_in_root};
use std::os::unix::fs::symlink;

#[test]
fn go_file_modes() {
    assert_eq!(go_file_mode(libc::S_IFREG | 0o644), 0o644);
    assert_eq!(go_file_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
    assert_eq!(go_file_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
    assert_eq!(
        go_file_mode(libc::S_IFCHR | 0o666),
        (1 << 26) | (1 << 21) | 0o666
    );
    assert_eq!(go_file_mode(libc::S_IFIFO | 0o600), (1 << 25) | 0o600);
    assert_eq!(
        go_file_mode(libc::S_IFDIR | libc::S_ISVTX | 0o777),
        (1 << 31) | (1 << 20) | 0o777
    );
    assert_eq!(
        go_file_mode(libc::S_IFREG | libc::S_ISUID | 0o755),
        (1 << 23) | 0o755
    );
}

#[test]
fn paths_are_cleaned_from_root() {
    assert_eq!(clean_abs("etc/hosts"), PathBuf::from("/etc/hosts"));
    assert_eq!(clean_abs("/../../etc/./x/.."), PathBuf::from("/etc"));
    assert_eq!(clean_abs(""), PathBuf::from("/"));
}

/// A root with `etc/passwd`, and links that point out of it.
fn root_with_links() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::write(r.join("etc/passwd"), "inside").unwrap();
    std::fs::create_dir_all(r.join("data/sub")).unwrap();
    symlink("/etc", r.join("abs")).unwrap();
    symlink("../../../../../../etc", r.join("data/rel")).unwrap();
    symlink("sub", r.join("data/link")).unwrap();
    symlink("loop2", r.join("loop1")).unwrap();
    symlink("loop1", r.join("loop2")).unwrap();
    t
}

#[test]
fn symlinks_resolve_inside_the_root() {
    let t = root_with_links();
    let r = t.path();
    let res = |p: &str| resolve_in_root(r, &clean_abs(p), true).unwrap();
    assert_eq!(res("/abs/passwd"), PathBuf::from("/etc/passwd"));
    assert_eq!(res("/data/rel/passwd"), PathBuf::from("/etc/passwd"));
    assert_eq!(res("/data/link"), PathBuf::from("/data/sub"));
    assert_eq!(
        resolve_in_root(r, Path::new("/data/link"), false).unwrap(),
        PathBuf::from("/data/link")
    );
    assert!(resolve_in_root(r, Path::new("/loop1"), true).is_err());
    let loc = locate(r, "/abs/passwd").unwrap();
    assert_eq!(loc.host, r.join("etc/passwd"));
    assert_eq!(std::fs::read_to_string(&loc.host).unwrap(), "inside");
    let loc = locate(r, "abs").unwrap();
    assert_eq!(loc.stat.link_target, "/etc");
    assert_eq!(loc.stat.mode & (1 << 27), 1 << 27, "a symlink");
    assert_eq!(
        locate(r, "/nope").unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
}

fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o640);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        // Raw names: the builder would refuse `..` itself.
        let field = &mut h.as_old_mut().name;
        field[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            h.set_link_name_literal(l.as_bytes()).unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn escaping_entries_are_refused() {
    let t = root_with_links();
    let outside = tempfile::tempdir().unwrap();
    for bad in [
        tar_of(&[("../escape", tar::EntryType::Regular, b"x", None)]),
        tar_of(&[("sub/../../escape", tar::EntryType::Regular, b"x", None)]),
        tar_of(&[("/escape", tar::EntryType::Regular, b"x", None)]),
        tar_of(&[(
            "evil",
            tar::EntryType::Symlink,
            b"",
            Some("../../../../tmp"),
        )]),
        tar_of(&[("hl", tar::EntryType::Link, b"", Some("../etc/passwd"))]),
    ] {
        let e = extract(t.path(), "/data", &bad[..], false).unwrap_err();
        assert!(matches!(e, ExtractError::Refused(_)), "{e:?}");
    }
    assert!(!t.path().join("escape").exists());
    // A link inside the root that points at `/` sends writes to the
    // container's `/`, never the host's.
    let through = tar_of(&[("abs/planted", tar::EntryType::Regular, b"x", None)]);
    extract(t.path(), "/", &through[..], false).unwrap();
    assert!(t.path().join("etc/planted").exists());
    assert!(!Path::new("/etc/planted").exists());
    drop(outside);
}

#[test]
fn extract_then_archive_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    std::fs::create_dir(r.join("dst")).unwrap();
    let input = tar_of(&[
        ("d/", tar::EntryType::Directory, b"", None),
        ("d/f", tar::EntryType::Regular, b"hello", None),
        ("d/l", tar::EntryType::Symlink, b"", Some("f")),
    ]);
    extract(r, "/dst", &input[..], false).unwrap();
    let f = r.join("dst/d/f");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "hello");
    assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o7777, 0o640);
    assert_eq!(std::fs::metadata(&f).unwrap().mtime(), 1_600_000_000);
    assert_eq!(
        std::fs::read_link(r.join("dst/d/l")).unwrap(),
        Path::new("f")
    );

    let loc = locate(r, "/dst/d").unwrap();
    let mut out = Vec::new();
    write_tar(&loc, &mut out).unwrap();
    let mut a = tar::Archive::new(&out[..]);
    let names: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["d/", "d/f", "d/l"]);
    let loc = locate(r, "/dst/d/.").unwrap();
    assert_eq!(loc.base, Path::new("."));

    // Not a directory to extract into; an existing directory kept from a file.
    let e = extract(r, "/dst/d/f", &input[..], false).unwrap_err();
    assert!(matches!(e, ExtractError::Refused(_)));
    let file_over_dir = tar_of(&[("d", tar::EntryType::Regular, b"x", None)]);
    let e = extract(r, "/dst", &file_over_dir[..], true).unwrap_err();
    assert!(matches!(e, ExtractError::Refused(_)), "{e:?}");
    assert!(r.join("dst/d").is_dir());
}
