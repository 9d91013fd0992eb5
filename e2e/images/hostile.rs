//! Layers that try to write outside their snapshot must fail the pull,
//! name the offending entry, and leave nothing behind.

use std::os::unix::fs::MetadataExt;

use super::{find_named, Env};
use crate::support::catalog::{self, Hostile};
use crate::support::cri;

async fn hostile_pull_fails(kind: Hostile) {
    let mut e = Env::new().await;
    let (image, info) = catalog::hostile(kind);
    let img = image.label("hostile", &format!("{kind:?}")).build();
    let name = img.push_tag(&e.reg, "test/hostile", "v1").await;
    let passwd_before = std::fs::read("/etc/passwd").unwrap();
    let passwd_links = std::fs::metadata("/etc/passwd").unwrap().nlink();
    let snapshots_before = e.d.snapshot_entries();

    let err = cri::pull(&mut e.c, &name)
        .await
        .expect_err("a layer escaping its snapshot must not pull");
    assert!(
        err.message().contains(&info.needle),
        "{kind:?}: the error should name {:?} (entry {:?}): {err:?}",
        info.needle,
        info.entry
    );

    assert!(
        cri::list(&mut e.c).await.is_empty(),
        "{kind:?}: no image listed"
    );
    assert!(cri::status(&mut e.c, &name).await.is_none());
    assert_eq!(
        e.d.snapshot_entries(),
        snapshots_before,
        "{kind:?}: no snapshot dir left behind"
    );
    // Nothing was planted: not in the daemon's dirs, not in /tmp or /.
    let planted = find_named(e.d.dir(), &info.evil);
    assert!(planted.is_empty(), "{kind:?}: planted {planted:?}");
    for dir in ["/", "/tmp", "/etc"] {
        let p = std::path::Path::new(dir).join(&info.evil);
        assert!(!p.exists(), "{kind:?}: planted {}", p.display());
    }
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd_before);
    assert_eq!(
        std::fs::metadata("/etc/passwd").unwrap().nlink(),
        passwd_links,
        "{kind:?}: no hard link to the host's /etc/passwd"
    );
}

#[tokio::test]
async fn layer_entry_with_parent_dir_is_refused() {
    hostile_pull_fails(Hostile::ParentDir).await;
}

#[tokio::test]
async fn layer_entry_with_absolute_path_is_refused() {
    hostile_pull_fails(Hostile::Absolute).await;
}

#[tokio::test]
async fn layer_hardlink_out_of_root_is_refused() {
    hostile_pull_fails(Hostile::HardlinkOut).await;
}

#[tokio::test]
async fn layer_write_through_escaping_symlink_is_refused() {
    hostile_pull_fails(Hostile::SymlinkEscape).await;
}
