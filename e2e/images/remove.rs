//! RemoveImage by each kind of reference, what it frees on disk, and what
//! ImageFsInfo reports around it.

use super::Env;
use crate::support::catalog;
use crate::support::cri;
use crate::support::images::BuiltImage;

#[derive(Debug, Clone, Copy)]
enum By {
    Id,
    Tag,
    Digest,
}

fn reference(e: &Env, img: &BuiltImage, repo: &str, by: By) -> String {
    match by {
        By::Id => img.id().to_string(),
        By::Tag => e.reg.image(&format!("{repo}:v1")),
        By::Digest => e.reg.image(&format!("{repo}@{}", img.manifest_digest)),
    }
}

#[tokio::test]
async fn remove_by_id_tag_and_digest_frees_blobs_and_snapshots() {
    let mut e = Env::new().await;
    let img = catalog::whiteout_image().label("case", "remove").build();
    let name = img.push_tag(&e.reg, "test/remove", "v1").await;

    for by in [By::Id, By::Tag, By::Digest] {
        let (bytes0, inodes0) = cri::fs_usage(&mut e.c).await;
        cri::pull_ok(&mut e.c, &name).await;
        let (bytes1, inodes1) = cri::fs_usage(&mut e.c).await;
        assert!(
            bytes1 > bytes0,
            "{by:?}: ImageFsInfo bytes grow: {bytes0} -> {bytes1}"
        );
        assert!(
            inodes1 > inodes0,
            "{by:?}: inodes grow: {inodes0} -> {inodes1}"
        );
        assert!(
            e.d.blob_path(img.id()).is_file(),
            "{by:?}: config blob stored at {}",
            e.d.blob_path(img.id()).display()
        );
        for chain in img.chain_ids() {
            assert!(
                e.d.snapshot_dir(&chain).join("fs").is_dir(),
                "{by:?}: {chain}"
            );
        }

        let reference = reference(&e, &img, "test/remove", by);
        cri::remove(&mut e.c, &reference)
            .await
            .unwrap_or_else(|err| panic!("remove by {by:?}: {err:?}"));

        assert!(cri::list(&mut e.c).await.is_empty(), "{by:?}: still listed");
        assert!(cri::status(&mut e.c, img.id()).await.is_none(), "{by:?}");
        assert!(cri::status(&mut e.c, &name).await.is_none(), "{by:?}");
        for digest in img.all_digests() {
            let path = e.d.blob_path(&digest);
            assert!(!path.exists(), "{by:?}: blob {} left", path.display());
        }
        for chain in img.chain_ids() {
            let dir = e.d.snapshot_dir(&chain);
            assert!(!dir.exists(), "{by:?}: snapshot {} left", dir.display());
        }
        let (bytes2, inodes2) = cri::fs_usage(&mut e.c).await;
        assert!(
            bytes2 < bytes1,
            "{by:?}: bytes shrink: {bytes1} -> {bytes2}"
        );
        assert!(
            inodes2 < inodes1,
            "{by:?}: inodes shrink: {inodes1} -> {inodes2}"
        );
    }
}

#[tokio::test]
async fn remove_is_idempotent() {
    let mut e = Env::new().await;
    let img = catalog::busybox().label("case", "idempotent").build();
    let name = img.push_tag(&e.reg, "test/idem", "v1").await;
    cri::pull_ok(&mut e.c, &name).await;
    cri::remove(&mut e.c, &name).await.expect("first remove");
    cri::remove(&mut e.c, &name)
        .await
        .expect("removing a removed image is not an error");
    cri::remove(&mut e.c, img.id())
        .await
        .expect("removing an unknown id is not an error");
}

#[tokio::test]
async fn remove_keeps_layers_other_images_use() {
    let mut e = Env::new().await;
    let a = catalog::whiteout_image().label("which", "a").build();
    let b = catalog::busybox().label("which", "b").build();
    let a_name = a.push_tag(&e.reg, "test/shared-a", "v1").await;
    let b_name = b.push_tag(&e.reg, "test/shared-b", "v1").await;
    cri::pull_ok(&mut e.c, &a_name).await;
    cri::pull_ok(&mut e.c, &b_name).await;
    let shared = &b.chain_ids()[0];
    assert_eq!(
        shared,
        &a.chain_ids()[0],
        "both start with the busybox layer"
    );

    cri::remove(&mut e.c, &a_name).await.expect("remove a");
    assert!(
        e.d.snapshot_dir(shared).join("fs/bin/busybox").is_file(),
        "the shared busybox snapshot stays for b"
    );
    assert!(e.d.blob_path(b.id()).is_file(), "b's config blob stays");
    for digest in std::iter::once(a.id().to_string()).chain(a.layer_digests()[1..].to_vec()) {
        assert!(
            !e.d.blob_path(&digest).exists(),
            "a's own blob {digest} is gone"
        );
    }
    for chain in &a.chain_ids()[1..] {
        assert!(
            !e.d.snapshot_dir(chain).exists(),
            "a's own snapshot {chain} is gone"
        );
    }
    let st = cri::status(&mut e.c, &b_name)
        .await
        .expect("b is still there");
    assert_eq!(st.id, b.id());

    cri::remove(&mut e.c, b.id()).await.expect("remove b");
    assert!(
        !e.d.snapshot_dir(shared).exists(),
        "last user gone, snapshot gone"
    );
    assert!(cri::list(&mut e.c).await.is_empty());
}
