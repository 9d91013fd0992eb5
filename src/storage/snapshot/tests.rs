use std::os::unix::fs::MetadataExt;

use tempfile::TempDir;

use super::*;
use crate::storage::testutil::{gzip, zstd, Layer, Meta};
use crate::storage::ErrorKind;

const KEY_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const KEY_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const KEY_C: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const GZIP_MT: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

struct Fixture {
    dir: TempDir,
    store: SnapshotStore,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(&dir.path().join("snapshots")).unwrap();
        Fixture { dir, store }
    }

    /// Writes `data` as a blob file and returns its path.
    fn blob(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, data).unwrap();
        path
    }

    /// Names in the store root, sorted.
    fn root_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.store.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

fn sample_layer() -> Vec<u8> {
    Layer::new()
        .dir("./", Meta::default())
        .file("etc/os-release", b"ID=berth\n", Meta::default())
        .hardlink("etc/os-release.link", "etc/os-release")
        .symlink("bin", "usr/bin")
        .file("usr/bin/sh", &[0x7f; 5000], Meta::default())
        .tar()
}

#[test]
fn open_creates_a_private_root_and_sweeps_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("snapshots");
    fs::create_dir_all(root.join(".tmp-crashed-1-0/fs/usr")).unwrap();
    fs::create_dir_all(root.join(".tmp-rm-x-1-1")).unwrap();
    fs::create_dir_all(root.join(KEY_A)).unwrap(); // no fs/: incomplete
    fs::create_dir_all(root.join(KEY_B).join("fs")).unwrap();
    fs::create_dir_all(root.join("unrelated")).unwrap();

    let store = SnapshotStore::open(&root).unwrap();
    let mut names: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [KEY_B, "unrelated"]);
    assert_eq!(fs::metadata(&root).unwrap().mode() & 0o777, 0o700);
    assert_eq!(store.list().unwrap(), [KEY_B]);
}

#[test]
fn unpacks_every_compression() {
    let f = Fixture::new();
    let tar = sample_layer();
    let blobs = [
        (KEY_A, f.blob("gz", &gzip(&tar)), GZIP_MT),
        // The media type is a hint only: this "gzip" layer is zstd.
        (KEY_B, f.blob("zst", &zstd(&tar)), GZIP_MT),
        (
            KEY_C,
            f.blob("tar", &tar),
            "application/vnd.oci.image.layer.v1.tar",
        ),
    ];
    for (key, blob, media_type) in &blobs {
        let info = f.store.unpack(key, blob, media_type, None).unwrap();
        assert!(f.store.exists(key));
        let fs_path = f.store.fs_path(key);
        assert_eq!(fs_path, f.store.root().join(key).join("fs"));
        assert_eq!(
            fs::read(fs_path.join("etc/os-release")).unwrap(),
            b"ID=berth\n"
        );
        assert_eq!(fs::read(fs_path.join("bin/sh")).unwrap(), [0x7f; 5000]);
        // root, etc, os-release (= link), bin, usr, usr/bin, sh
        assert_eq!(
            info,
            SnapshotInfo {
                bytes: 5009,
                inodes: 6 + 1
            }
        );
        assert_eq!(f.store.info(key).unwrap(), info);
    }
    assert_eq!(f.store.list().unwrap(), [KEY_C, KEY_A, KEY_B]);
    assert_eq!(f.root_names(), [KEY_C, KEY_A, KEY_B]);
}

#[test]
fn unpacking_an_existing_key_does_nothing() {
    let f = Fixture::new();
    let blob = f.blob("layer", &gzip(&sample_layer()));
    let first = f.store.unpack(KEY_A, &blob, GZIP_MT, None).unwrap();
    fs::write(f.store.fs_path(KEY_A).join("marker"), b"").unwrap();
    fs::remove_file(&blob).unwrap();
    assert_eq!(f.store.unpack(KEY_A, &blob, GZIP_MT, None).unwrap(), first);
    assert!(f.store.fs_path(KEY_A).join("marker").exists());
}

#[test]
fn failed_unpacks_leave_nothing_behind() {
    let f = Fixture::new();
    let evil = Layer::new()
        .file("ok", b"fine", Meta::default())
        .file("../evil", b"pwned", Meta::default())
        .tar();
    let blob = f.blob("evil", &gzip(&evil));
    let err = f.store.unpack(KEY_A, &blob, GZIP_MT, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        chain.contains(r#"tar entry "../evil" escapes the layer root"#),
        "{chain}"
    );
    assert!(!f.store.exists(KEY_A));
    assert!(f.root_names().is_empty(), "{:?}", f.root_names());
    assert!(!f.dir.path().join("evil-file").exists());

    // A truncated blob fails the same way.
    let gz = gzip(&sample_layer());
    let blob = f.blob("short", &gz[..gz.len() / 2]);
    assert!(f.store.unpack(KEY_A, &blob, GZIP_MT, None).is_err());
    assert!(f.root_names().is_empty(), "{:?}", f.root_names());
}

#[test]
fn bad_keys_and_missing_blobs() {
    let f = Fixture::new();
    let blob = f.blob("layer", &sample_layer());
    for key in ["", "../x", &KEY_A.to_uppercase(), &KEY_A[1..], "sha256:abc"] {
        let err = f.store.unpack(key, &blob, "", None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{key}");
        assert!(!f.store.exists(key));
        assert!(f.store.remove(key).is_err());
    }
    let err = f
        .store
        .unpack(KEY_A, &f.dir.path().join("nope"), "", None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(f.store.info(KEY_A).unwrap_err().kind(), ErrorKind::NotFound);
    assert!(f.root_names().is_empty());
}

#[test]
fn remove_is_idempotent_and_handles_read_only_trees() {
    let f = Fixture::new();
    let tar = Layer::new()
        .dir(
            "ro",
            Meta {
                mode: 0o555,
                ..Meta::default()
            },
        )
        .file(
            "ro/f",
            b"x",
            Meta {
                mode: 0o444,
                ..Meta::default()
            },
        )
        .dir(
            "locked",
            Meta {
                mode: 0o000,
                ..Meta::default()
            },
        )
        .file("locked/g", b"y", Meta::default())
        .tar();
    let blob = f.blob("layer", &tar);
    f.store.unpack(KEY_A, &blob, "", None).unwrap();
    f.store.unpack(KEY_B, &blob, "", None).unwrap();
    f.store.remove(KEY_A).unwrap();
    assert!(!f.store.exists(KEY_A));
    f.store.remove(KEY_A).unwrap();
    assert_eq!(f.store.list().unwrap(), [KEY_B]);
    assert_eq!(f.root_names(), [KEY_B]);
}

#[test]
fn usage_counts_all_snapshots_and_hard_links_once() {
    let f = Fixture::new();
    assert_eq!(f.store.usage().unwrap(), Usage::default());
    let blob = f.blob("layer", &sample_layer());
    f.store.unpack(KEY_A, &blob, "", None).unwrap();
    let one = f.store.usage().unwrap();
    // key dir + info.json + the 7 inodes of the layer
    assert_eq!(one.inodes, 9);
    assert!(one.bytes >= 5009, "{one:?}");

    f.store.unpack(KEY_B, &blob, "", None).unwrap();
    let two = f.store.usage().unwrap();
    assert_eq!(two.inodes, 18);
    assert_eq!(two.bytes, 2 * one.bytes);

    // A hard link across snapshots is one inode.
    fs::hard_link(
        f.store.fs_path(KEY_A).join("usr/bin/sh"),
        f.store.fs_path(KEY_B).join("sh-again"),
    )
    .unwrap();
    assert_eq!(f.store.usage().unwrap(), two);
}

#[test]
fn info_is_remeasured_when_its_file_is_lost() {
    let f = Fixture::new();
    let blob = f.blob("layer", &sample_layer());
    let info = f.store.unpack(KEY_A, &blob, "", None).unwrap();
    fs::remove_file(f.store.root().join(KEY_A).join(INFO_FILE)).unwrap();
    assert_eq!(f.store.info(KEY_A).unwrap(), info);
}

#[test]
fn concurrent_unpacks_of_one_key_agree() {
    let f = Fixture::new();
    let blob = f.blob("layer", &gzip(&sample_layer()));
    let infos: Vec<SnapshotInfo> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| f.store.unpack(KEY_A, &blob, GZIP_MT, None).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(infos.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(f.root_names(), [KEY_A]);
}

#[test]
fn the_diff_id_of_the_uncompressed_stream_is_verified() {
    use sha2::Digest as _;
    let f = Fixture::new();
    let raw = sample_layer();
    let right = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&raw)));
    let wrong = format!("sha256:{}", "0".repeat(64));
    let blob = f.blob("layer", &gzip(&raw));
    let err = f
        .store
        .unpack(KEY_A, &blob, GZIP_MT, Some(&wrong))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.to_string().contains("does not match the diff ID"),
        "{err}"
    );
    assert!(f.root_names().is_empty(), "{:?}", f.root_names());
    f.store.unpack(KEY_A, &blob, GZIP_MT, Some(&right)).unwrap();
    assert!(f.store.exists(KEY_A));
}
