//! A daemon killed with SIGKILL in the middle of a pull must come back
//! without the half-pulled image, and pull it cleanly afterwards.

use std::time::Duration;

use super::Env;
use crate::support::catalog::{self, BIG_LAYER_SIZES};
use crate::support::cri;
use crate::support::layers::big_file;
use crate::support::{sha256_hex, wait_until};

#[tokio::test]
async fn kill9_mid_pull_leaves_no_image_and_repull_works() {
    let mut e = Env::new().await;
    // Stored deflate blocks: a real gzip stream that is cheap to build here.
    let img = catalog::big_image(0).build();
    let name = img.push_tag(&e.reg, "test/big", "v1").await;

    let mut c = e.d.image_client().await;
    let pull_name = name.clone();
    let pull = tokio::spawn(async move { cri::pull(&mut c, &pull_name).await });

    // Kill as soon as the first blob has been served: the pull has begun
    // and tens of megabytes are still to come.
    let reg = &e.reg;
    wait_until(
        "the pull to fetch its first blob",
        Duration::from_secs(120),
        move || async move {
            let started = reg
                .requests_now()
                .iter()
                .any(|r| r.method == "GET" && r.path.contains("/blobs/sha256:"));
            started.then_some(())
        },
    )
    .await;
    e.d.kill9();
    let outcome = pull.await.expect("pull task");
    assert!(
        outcome.is_err(),
        "the pull finished before the kill; the test did not interrupt it: {outcome:?}"
    );

    e.d.restart().await;
    let mut c = e.d.image_client().await;
    assert!(
        cri::list(&mut c).await.is_empty(),
        "a half-pulled image must not be listed"
    );
    assert!(cri::status(&mut c, &name).await.is_none());

    cri::pull(&mut c, &name)
        .await
        .unwrap_or_else(|err| panic!("pull after the crash: {err:?}\n{}", e.d.log()));
    let st = cri::status(&mut c, &name)
        .await
        .expect("status after re-pull");
    assert_eq!(st.id, img.id());

    // Every layer is unpacked whole, with the exact bytes that were pushed.
    let chains = img.chain_ids();
    assert_eq!(chains.len(), BIG_LAYER_SIZES.len() + 1);
    let base = e.d.snapshot_dir(&chains[0]).join("fs/bin/busybox");
    assert!(base.is_file(), "{} unpacked", base.display());
    for (i, size) in BIG_LAYER_SIZES.iter().enumerate() {
        let (path, data) = big_file(i, *size);
        let unpacked = e.d.snapshot_dir(&chains[i + 1]).join("fs").join(&path);
        let got =
            std::fs::read(&unpacked).unwrap_or_else(|err| panic!("{}: {err}", unpacked.display()));
        assert_eq!(got.len(), *size, "{path} size");
        assert_eq!(sha256_hex(&got), sha256_hex(&data), "{path} content");
    }
}
