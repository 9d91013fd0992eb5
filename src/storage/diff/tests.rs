//! Layer diffs of real upper dirs (root needed for devices, owners and
//! trusted xattrs), checked entry by entry and round-tripped through berth's
//! own unpacker against the snapshot copy.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use super::*;

/// `security.capability` (v2) granting cap_net_bind_service, effective.
const CAP_NET_BIND: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fn whiteout(p: &Path) {
    mknod(p, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).unwrap();
}

/// An upper dir with one of everything a container's writes leave.
fn upper(dir: &Path) {
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::write(dir.join("etc/app.conf"), "conf").unwrap();
    fs::write(dir.join("etc/hosts"), "").unwrap(); // a runtime mount point
    whiteout(&dir.join("etc/gone"));
    fs::create_dir(dir.join("opq")).unwrap();
    xattr::set(dir.join("opq"), "trusted.overlay.opaque", b"y").unwrap();
    fs::write(dir.join("opq/new"), "n").unwrap();
    fs::create_dir(dir.join("uopq")).unwrap();
    xattr::set(dir.join("uopq"), "user.overlay.opaque", b"y").unwrap();
    fs::create_dir(dir.join("bin")).unwrap();
    fs::write(dir.join("bin/tool"), vec![7u8; 100_000]).unwrap();
    fs::set_permissions(dir.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(dir.join("bin/tool"), dir.join("bin/tool2")).unwrap();
    xattr::set(dir.join("bin/tool"), "security.capability", &CAP_NET_BIND).unwrap();
    xattr::set(dir.join("bin/tool"), "user.note", b"hi").unwrap();
    symlink("tool", dir.join("bin/link")).unwrap();
    fs::create_dir(dir.join("dev")).unwrap();
    mknod(
        &dir.join("dev/null2"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .unwrap();
    nix::unistd::mkfifo(&dir.join("dev/fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(dir.join("dev/sock")).unwrap();
    fs::write(dir.join("owned"), "o").unwrap();
    std::os::unix::fs::lchown(dir.join("owned"), Some(1234), Some(5678)).unwrap();
    fs::create_dir(dir.join("proc")).unwrap();
    fs::create_dir(dir.join("proc/self")).unwrap();
}

fn skip() -> HashSet<PathBuf> {
    ["etc/hosts", "proc"]
        .into_iter()
        .map(PathBuf::from)
        .collect()
}

/// One tar entry: path, type, mode, xattrs, link target.
type Listed = (String, tar::EntryType, u32, Vec<(String, Vec<u8>)>, String);

fn entries(gz: &[u8]) -> Vec<Listed> {
    let mut out = Vec::new();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let kind = e.header().entry_type();
        let mode = e.header().mode().unwrap();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        let mut x = Vec::new();
        if let Some(p) = e.pax_extensions().unwrap() {
            for r in p {
                let r = r.unwrap();
                if let Some(k) = r.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    x.push((k.to_string(), r.value_bytes().to_vec()));
                }
            }
        }
        out.push((path, kind, mode, x, link));
    }
    out
}

#[test]
fn layer_tar_of_an_upper_dir() {
    let t = tempfile::tempdir().unwrap();
    let u = t.path().join("upper");
    fs::create_dir(&u).unwrap();
    upper(&u);
    let mut blob = Vec::new();
    let d = write_layer(&u, &skip(), &mut blob).unwrap();
    assert_eq!(d.size, blob.len() as u64);
    assert_eq!(
        d.digest,
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&blob)))
    );
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&blob[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(
        d.diff_id,
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&plain)))
    );
    let e = entries(&blob);
    let names: Vec<&str> = e.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "bin/",
            "bin/link",
            "bin/tool",
            "bin/tool2",
            "dev/",
            "dev/fifo",
            "dev/null2",
            "etc/",
            "etc/app.conf",
            "etc/.wh.gone",
            "opq/",
            "opq/.wh..wh..opq",
            "opq/new",
            "owned",
            "uopq/",
            "uopq/.wh..wh..opq",
        ],
        "sorted, parents first, mount points and the socket left out"
    );
    let by = |n: &str| e.iter().find(|x| x.0 == n).unwrap();
    assert_eq!(by("bin/link").1, tar::EntryType::Symlink);
    assert_eq!(by("bin/link").4, "tool");
    assert_eq!(by("bin/tool").2, 0o4755);
    assert_eq!(
        by("bin/tool").3,
        vec![
            ("security.capability".to_string(), CAP_NET_BIND.to_vec()),
            ("user.note".to_string(), b"hi".to_vec())
        ]
    );
    assert_eq!(by("bin/tool2").1, tar::EntryType::Link);
    assert_eq!(by("bin/tool2").4, "bin/tool");
    assert_eq!(by("dev/null2").1, tar::EntryType::Char);
    assert_eq!(by("dev/fifo").1, tar::EntryType::Fifo);
    assert_eq!(by("etc/.wh.gone").1, tar::EntryType::Regular);
    assert!(by("opq/").3.is_empty(), "overlay xattrs are not carried");
    // Reproducible: the same dir gives the same bytes.
    let mut again = Vec::new();
    assert_eq!(write_layer(&u, &skip(), &mut again).unwrap(), d);
}

/// What a tree holds, comparable across two trees.
fn summary(root: &Path) -> Vec<String> {
    let nodes = walk(root, Form::Upper, &HashSet::new()).unwrap();
    let mut first: std::collections::HashMap<u64, String> = Default::default();
    nodes
        .iter()
        .map(|n| {
            let m = &n.meta;
            let mut x = xattrs(n).unwrap();
            for o in OPAQUE_XATTRS {
                if let Ok(Some(v)) = xattr::get(&n.host, o) {
                    x.push((o.to_string(), v));
                }
            }
            let body = if m.is_file() {
                let h = hex::encode(sha2::Sha256::digest(fs::read(&n.host).unwrap()));
                let link = first
                    .entry(m.ino())
                    .or_insert_with(|| n.rel.display().to_string())
                    .clone();
                format!("{h} {link}")
            } else if m.file_type().is_symlink() {
                fs::read_link(&n.host).unwrap().display().to_string()
            } else {
                String::new()
            };
            let mtime = if m.is_dir() { 0 } else { m.mtime() };
            format!(
                "{} {:o} {}:{} rdev={} mtime={} {:?} {}",
                n.rel.display(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.rdev(),
                mtime,
                x,
                body
            )
        })
        .collect()
}

#[test]
fn the_snapshot_copy_equals_the_unpacked_layer() {
    let t = tempfile::tempdir().unwrap();
    let u = t.path().join("upper");
    fs::create_dir(&u).unwrap();
    upper(&u);
    let mut blob = Vec::new();
    write_layer(&u, &skip(), &mut blob).unwrap();
    let unpacked = t.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    crate::storage::unpack_layer(flate2::read::GzDecoder::new(&blob[..]), &unpacked).unwrap();
    let copied = t.path().join("copied");
    fs::create_dir(&copied).unwrap();
    copy_upper(&u, &skip(), &copied).unwrap();
    let (a, b) = (summary(&unpacked), summary(&copied));
    assert_eq!(a, b);
    assert!(
        a.iter().any(|l| l.starts_with("etc/gone 20000 0:0 rdev=0")),
        "{a:#?}"
    );
    assert!(
        a.iter()
            .any(|l| l.starts_with("uopq ") && l.contains("trusted.overlay.opaque")),
        "a user.overlay.opaque dir is opaque in trusted form: {a:#?}"
    );
    assert!(a.iter().any(|l| l.starts_with("owned 100644 1234:5678")));
    assert!(
        a.iter()
            .any(|l| l.starts_with("bin/tool2 ") && l.ends_with(" bin/tool")),
        "hard links share an inode: {a:#?}"
    );
    assert!(!copied.join("etc/hosts").exists() && !copied.join("proc").exists());
}

#[test]
fn snapshots_from_an_upper_dir() {
    let t = tempfile::tempdir().unwrap();
    let u = t.path().join("upper");
    fs::create_dir(&u).unwrap();
    upper(&u);
    let store = crate::storage::SnapshotStore::open(&t.path().join("snaps")).unwrap();
    let key = "ab".repeat(32);
    let info = store.import_upper(&key, &u, &skip()).unwrap();
    assert!(store.exists(&key));
    assert_eq!(store.info(&key).unwrap(), info);
    assert!(info.bytes >= 100_000);
    assert!(store.import_upper("nothex", &u, &skip()).is_err());
}

#[test]
fn changes_against_the_lower_layers() {
    let t = tempfile::tempdir().unwrap();
    let (lo, u) = (t.path().join("lower"), t.path().join("upper"));
    for d in ["etc", "usr/lib", "var", "hid/den"] {
        fs::create_dir_all(lo.join(d)).unwrap();
    }
    fs::write(lo.join("etc/passwd"), "root").unwrap();
    fs::write(lo.join("etc/old"), "x").unwrap();
    fs::write(lo.join("hid/den/f"), "x").unwrap();
    fs::create_dir_all(u.join("etc")).unwrap();
    fs::write(u.join("etc/passwd"), "root2").unwrap();
    whiteout(&u.join("etc/old"));
    fs::create_dir_all(u.join("new/sub")).unwrap();
    fs::write(u.join("new/sub/f"), "f").unwrap();
    fs::create_dir_all(u.join("usr/lib")).unwrap(); // copied up, nothing changed
    fs::write(u.join("etc/hosts"), "").unwrap(); // mount point
                                                 // A path hidden by a whiteout lower down is new again.
    let top = t.path().join("top");
    fs::create_dir(&top).unwrap();
    whiteout(&top.join("hid"));
    fs::create_dir_all(u.join("hid/den")).unwrap();
    fs::write(u.join("hid/den/f"), "y").unwrap();
    let skip: HashSet<PathBuf> = [PathBuf::from("etc/hosts")].into();
    let c = changes(&u, &[top, lo], &skip).unwrap();
    let got: Vec<(String, u8)> = c.iter().map(|c| (c.path.clone(), c.kind.code())).collect();
    let want: Vec<(String, u8)> = [
        ("/etc", 0),
        ("/etc/old", 2),
        ("/etc/passwd", 0),
        ("/hid", 1),
        ("/hid/den", 1),
        ("/hid/den/f", 1),
        ("/new", 1),
        ("/new/sub", 1),
        ("/new/sub/f", 1),
    ]
    .into_iter()
    .map(|(p, k)| (p.to_string(), k))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn export_of_a_tree_keeps_hard_links() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("root");
    fs::create_dir_all(r.join("a")).unwrap();
    fs::write(r.join("a/f"), "data").unwrap();
    fs::hard_link(r.join("a/f"), r.join("g")).unwrap();
    let mut out = Vec::new();
    export_tree(&r, &mut out).unwrap();
    let mut a = tar::Archive::new(&out[..]);
    let e: Vec<(String, tar::EntryType)> = a
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().display().to_string(),
                e.header().entry_type(),
            )
        })
        .collect();
    assert_eq!(
        e,
        vec![
            ("a/".to_string(), tar::EntryType::Directory),
            ("a/f".to_string(), tar::EntryType::Regular),
            ("g".to_string(), tar::EntryType::Link),
        ]
    );
}
