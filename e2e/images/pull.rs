//! Pulling by tag and by digest, what ImageStatus and ListImages report,
//! retagging, concurrent pulls and restarts.

use super::Env;
use crate::support::catalog;
use crate::support::cri::{self, by_id};

#[tokio::test]
async fn pull_untagged_name_lists_latest_tag_and_digest() {
    let mut e = Env::new().await;
    let img = catalog::busybox().build();
    img.push(&e.reg, "test/busybox", "latest").await;
    let name = e.reg.image("test/busybox");

    let image_ref = cri::pull_ok(&mut e.c, &name).await;
    let repo_digest = format!("{name}@{}", img.manifest_digest);
    assert!(
        image_ref == img.id() || image_ref == repo_digest,
        "PullImage image_ref {image_ref:?} is neither the image id {} nor {repo_digest}",
        img.id()
    );

    let images = cri::list(&mut e.c).await;
    assert_eq!(images.len(), 1, "{images:#?}");
    let listed = &images[0];
    assert_eq!(listed.id, img.id(), "image id is the config digest");
    assert_eq!(listed.repo_tags, vec![format!("{name}:latest")]);
    assert_eq!(listed.repo_digests, vec![repo_digest.clone()]);
    assert!(listed.size > 0, "size must be > 0");

    // The same image under every name it is known by, with the same size.
    for reference in [
        name.clone(),
        format!("{name}:latest"),
        repo_digest.clone(),
        img.id().to_string(),
    ] {
        let st = cri::status(&mut e.c, &reference)
            .await
            .unwrap_or_else(|| panic!("ImageStatus {reference} finds the image"));
        assert_eq!(st.id, listed.id, "{reference}");
        assert_eq!(st.size, listed.size, "{reference}");
        assert_eq!(st.repo_tags, listed.repo_tags, "{reference}");
        assert_eq!(st.repo_digests, listed.repo_digests, "{reference}");
    }
    let missing = cri::status(&mut e.c, &e.reg.image("test/busybox:nope")).await;
    assert!(missing.is_none(), "unknown tag has no status: {missing:?}");
}

#[tokio::test]
async fn pull_by_digest_records_repo_digest_only() {
    let mut e = Env::new().await;
    let img = catalog::busybox().label("case", "digest").build();
    img.push(&e.reg, "test/bydigest", "v1").await;
    let by_digest = e
        .reg
        .image(&format!("test/bydigest@{}", img.manifest_digest));

    cri::pull_ok(&mut e.c, &by_digest).await;
    let st = cri::status(&mut e.c, &by_digest)
        .await
        .expect("status by digest");
    assert_eq!(st.id, img.id());
    assert_eq!(st.repo_digests, vec![by_digest.clone()]);
    assert!(
        st.repo_tags.is_empty(),
        "no tag was pulled: {:?}",
        st.repo_tags
    );
    let tagged = cri::status(&mut e.c, &e.reg.image("test/bydigest:v1")).await;
    assert!(tagged.is_none(), "the tag was never pulled: {tagged:?}");
}

#[tokio::test]
async fn image_status_reports_user_from_config() {
    let mut e = Env::new().await;
    let numeric = catalog::busybox().user("1234:1234").build();
    let named = catalog::busybox().user("berthuser").build();
    let numeric_name = numeric.push_tag(&e.reg, "test/numeric", "v1").await;
    let named_name = named.push_tag(&e.reg, "test/named", "v1").await;
    cri::pull_ok(&mut e.c, &numeric_name).await;
    cri::pull_ok(&mut e.c, &named_name).await;

    let st = cri::status(&mut e.c, &numeric_name).await.expect("status");
    assert_eq!(st.uid.map(|u| u.value), Some(1234), "{st:?}");
    assert_eq!(st.username, "", "uid and username are exclusive");

    let st = cri::status(&mut e.c, &named_name).await.expect("status");
    assert_eq!(st.uid, None, "a user name is not resolved to a uid: {st:?}");
    assert_eq!(st.username, "berthuser");

    // The listing carries the same user fields.
    let images = cri::list(&mut e.c).await;
    let l = by_id(&images, numeric.id()).expect("numeric listed");
    assert_eq!(l.uid.as_ref().map(|u| u.value), Some(1234));
    let l = by_id(&images, named.id()).expect("named listed");
    assert_eq!(l.username, "berthuser");
}

#[tokio::test]
async fn image_status_verbose_carries_json_info() {
    let mut e = Env::new().await;
    let img = catalog::busybox().label("berth.e2e.verbose", "yes").build();
    let name = img.push_tag(&e.reg, "test/verbose", "v1").await;
    cri::pull_ok(&mut e.c, &name).await;

    let quiet = cri::status_full(&mut e.c, &name, false).await;
    assert!(
        quiet.info.is_empty(),
        "info only when verbose: {:?}",
        quiet.info
    );
    let verbose = cri::status_full(&mut e.c, &name, true).await;
    assert_eq!(
        verbose.image.as_ref().map(|i| i.id.as_str()),
        Some(img.id())
    );
    assert!(!verbose.info.is_empty(), "verbose ImageStatus has info");
    for (key, value) in &verbose.info {
        serde_json::from_str::<serde_json::Value>(value)
            .unwrap_or_else(|err| panic!("info[{key}] is not JSON ({err}): {value}"));
    }
    let all: String = verbose.info.values().cloned().collect();
    assert!(
        all.contains("berth.e2e.verbose"),
        "verbose info carries the image config: {all}"
    );
}

#[tokio::test]
async fn list_images_filter_matches_one_image() {
    let mut e = Env::new().await;
    let a = catalog::busybox().label("which", "a").build();
    let b = catalog::busybox().label("which", "b").build();
    let a_name = a.push_tag(&e.reg, "test/filter-a", "v1").await;
    let b_name = b.push_tag(&e.reg, "test/filter-b", "v1").await;
    cri::pull_ok(&mut e.c, &a_name).await;
    cri::pull_ok(&mut e.c, &b_name).await;

    assert_eq!(cri::list(&mut e.c).await.len(), 2);
    let only_a = cri::list_filtered(&mut e.c, &a_name).await;
    assert_eq!(only_a.len(), 1, "{only_a:#?}");
    assert_eq!(only_a[0].id, a.id());
    let only_b = cri::list_filtered(&mut e.c, b.id()).await;
    assert_eq!(only_b.len(), 1, "{only_b:#?}");
    assert_eq!(only_b[0].id, b.id());
    let none = cri::list_filtered(&mut e.c, &e.reg.image("test/filter-c:v1")).await;
    assert!(none.is_empty(), "{none:#?}");
}

#[tokio::test]
async fn pulling_a_moved_tag_retags() {
    let mut e = Env::new().await;
    let old = catalog::busybox().label("version", "1").build();
    let new = catalog::busybox().label("version", "2").build();
    let name = old.push_tag(&e.reg, "test/app", "v1").await;
    cri::pull_ok(&mut e.c, &name).await;
    new.push(&e.reg, "test/app", "v1").await;
    cri::pull_ok(&mut e.c, &name).await;

    let st = cri::status(&mut e.c, &name).await.expect("status");
    assert_eq!(st.id, new.id(), "the tag moved to the new image");
    let images = cri::list(&mut e.c).await;
    assert_eq!(images.len(), 2, "the old image stays: {images:#?}");
    let old_listed = by_id(&images, old.id()).expect("old image listed by id");
    assert!(
        old_listed.repo_tags.is_empty(),
        "the old image lost its tag: {:?}",
        old_listed.repo_tags
    );
    let new_listed = by_id(&images, new.id()).expect("new image listed");
    assert_eq!(new_listed.repo_tags, vec![name.clone()]);
    let old_st = cri::status(&mut e.c, old.id()).await.expect("old by id");
    assert_eq!(old_st.id, old.id());
}

#[tokio::test]
async fn concurrent_pulls_fetch_each_blob_once() {
    let e = Env::new().await;
    let img = catalog::whiteout_image()
        .label("case", "concurrent")
        .build();
    let name = img.push_tag(&e.reg, "test/concurrent", "v1").await;

    let mut c1 = e.d.image_client().await;
    let mut c2 = e.d.image_client().await;
    let (r1, r2) = tokio::join!(cri::pull(&mut c1, &name), cri::pull(&mut c2, &name));
    let r1 = r1.expect("first pull");
    let r2 = r2.expect("second pull");
    assert_eq!(r1, r2, "both pulls resolve to the same image");

    for digest in img.layer_digests() {
        let gets = e
            .reg
            .count_requests("GET", &format!("/blobs/{digest}"))
            .await;
        assert_eq!(
            gets,
            1,
            "layer {digest} fetched {gets} times; access log:\n{}",
            e.reg.access_log()
        );
    }
    let mut c = e.c;
    assert_eq!(cri::list(&mut c).await.len(), 1);
}

#[tokio::test]
async fn images_survive_restart_and_kill9() {
    let mut e = Env::new().await;
    let img = catalog::busybox().label("case", "restart").build();
    let name = img.push_tag(&e.reg, "test/restart", "v1").await;
    cri::pull_ok(&mut e.c, &name).await;
    let before = cri::list(&mut e.c).await;
    assert_eq!(before.len(), 1);

    e.d.restart().await;
    let mut c = e.d.image_client().await;
    assert_eq!(cri::list(&mut c).await, before, "after SIGTERM + start");

    e.d.kill9();
    e.d.restart().await;
    let mut c = e.d.image_client().await;
    assert_eq!(cri::list(&mut c).await, before, "after kill -9 + start");
    let st = cri::status(&mut c, &name)
        .await
        .expect("status after restart");
    assert_eq!(st.id, img.id());
    let base = e.d.snapshot_dir(&img.chain_ids()[0]).join("fs/bin/busybox");
    assert!(base.is_file(), "{} survives", base.display());
}
