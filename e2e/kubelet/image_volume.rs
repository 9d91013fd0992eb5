//! Image volumes (`Mount.image`, Kubernetes' `image` volume source): an
//! image the kubelet pulled is mounted read-only with its layers applied
//! (whiteouts included), kept while mounted even if the image is removed,
//! and gone with the container.

use k8s_cri::v1::{ImageSpec, Mount};
use tonic::Code;

use super::Env;
use crate::support::{catalog, cri, host, pods};

fn image_mount(path: &str, image: &str) -> Mount {
    Mount {
        container_path: path.into(),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn image_volume_is_mounted_read_only_and_kept_while_mounted() {
    let mut e = Env::new().await;
    let built = catalog::whiteout_image()
        .label("berth.e2e", "image-volume")
        .build();
    let layered = built.push_tag(&e.reg, "test/layered", "v1").await;
    cri::pull_ok(&mut e.images, &layered).await;
    let pod_cfg = e.pod_config("image-volume");
    let pod = e.pod(&pod_cfg).await;

    let (mut missing, _) = e.container("missing", "true");
    missing
        .mounts
        .push(image_mount("/iv", "127.0.0.1:1/never/pulled:v1"));
    let err = pods::create(&mut e.rt, &pod, &missing, &pod_cfg)
        .await
        .expect_err("an image volume that was not pulled");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let (mut cfg, _) = e.container("reader", "sleep 1000");
    cfg.mounts.push(image_mount("/iv", &layered));
    let busybox = e.busybox.clone();
    cfg.mounts.push(image_mount("/bb", &busybox));
    let id = e.run(&pod, &cfg, &pod_cfg).await;
    let probe = "ls /iv/data/keep; cat /iv/data/keep/new.txt; \
                 test -e /iv/data/a.txt && echo a-present; \
                 touch /iv/x 2>&1; test -x /bb/bin/busybox && echo busybox-there";
    let want = "new.txt\nnew\ntouch: /iv/x: Read-only file system\nbusybox-there\n";
    assert_eq!(pods::sh(&mut e.rt, &id, probe).await, want);

    // Removing the image does not pull the layers from under the container.
    cri::remove(&mut e.images, &layered)
        .await
        .expect("RemoveImage");
    assert!(cri::status(&mut e.images, &layered).await.is_none());
    let snapshots = e.d.root().join("snapshots");
    for chain in built.chain_ids().iter().skip(1) {
        let hex = chain.trim_start_matches("sha256:");
        assert!(snapshots.join(hex).join("fs").is_dir(), "layer {hex} kept");
    }
    assert_eq!(
        pods::sh(&mut e.rt, &id, probe).await,
        want,
        "still readable"
    );

    e.remove_all_pods().await;
    assert!(
        host::mounts_under(&e.d.state()).is_empty(),
        "no mount left: {:?}",
        host::mounts_under(&e.d.state())
            .iter()
            .map(|m| m.mount_point.clone())
            .collect::<Vec<_>>()
    );
    for chain in built.chain_ids().iter().skip(1) {
        let hex = chain.trim_start_matches("sha256:");
        assert!(
            !snapshots.join(hex).exists(),
            "layer {hex} collected once unmounted"
        );
    }
}
