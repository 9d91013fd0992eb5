//! What lands on disk: whiteouts, compression variants, platform choice,
//! and content verification.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::{any_snapshot_has, Env};
use crate::support::catalog;
use crate::support::cri;
use crate::support::images::{host_arch, other_arch, Format};
use crate::support::layers::Compression;
use crate::support::sha256_hex;

#[tokio::test]
async fn whiteouts_become_overlay_whiteouts() {
    let mut e = Env::new().await;
    let img = catalog::whiteout_image().build();
    let name = img.push_tag(&e.reg, "test/whiteout", "v1").await;
    cri::pull_ok(&mut e.c, &name).await;

    let chains = img.chain_ids();
    assert_eq!(chains.len(), 3);
    let fs: Vec<_> = chains
        .iter()
        .map(|c| e.d.snapshot_dir(c).join("fs"))
        .collect();

    // Layer 1: busybox as the host has it, applets as links, owners kept.
    let busybox = std::fs::read(fs[0].join("bin/busybox")).expect("bin/busybox unpacked");
    assert_eq!(busybox, std::fs::read("/bin/busybox").unwrap());
    let mode = std::fs::metadata(fs[0].join("bin/busybox")).unwrap().mode();
    assert_eq!(mode & 0o777, 0o755, "bin/busybox mode");
    assert_eq!(
        std::fs::read_link(fs[0].join("bin/sh")).expect("bin/sh is a symlink"),
        std::path::Path::new("busybox")
    );
    let home = std::fs::metadata(fs[0].join("home/berthuser")).unwrap();
    assert_eq!((home.uid(), home.gid()), (1234, 1234), "ownership kept");
    let tmp = std::fs::metadata(fs[0].join("tmp")).unwrap();
    assert_eq!(tmp.mode() & 0o7777, 0o1777, "sticky bit kept");

    // Layer 2: plain files.
    assert_eq!(
        std::fs::read(fs[1].join("data/a.txt")).unwrap(),
        b"layer two\n"
    );
    assert!(fs[1].join("data/keep/old.txt").is_file());

    // Layer 3: `.wh.a.txt` is a 0:0 character device named a.txt ...
    let a = std::fs::symlink_metadata(fs[2].join("data/a.txt")).expect("whiteout for a.txt");
    assert!(a.file_type().is_char_device(), "a.txt whiteout: {a:?}");
    assert_eq!(a.rdev(), 0, "whiteout device is 0:0");
    assert!(
        !fs[2].join("data/.wh.a.txt").exists(),
        "marker not unpacked"
    );
    // ... and `.wh..wh..opq` makes data/keep opaque.
    let opaque = xattr::get(fs[2].join("data/keep"), "trusted.overlay.opaque")
        .expect("read xattr of data/keep");
    assert_eq!(opaque.as_deref(), Some(&b"y"[..]), "data/keep is opaque");
    assert!(
        !fs[2].join("data/keep/.wh..wh..opq").exists(),
        "marker not unpacked"
    );
    assert!(!fs[2].join("data/keep/old.txt").exists());
    assert_eq!(
        std::fs::read(fs[2].join("data/keep/new.txt")).unwrap(),
        b"new\n"
    );
    // Layer 2 itself is untouched by layer 3.
    assert!(fs[1].join("data/a.txt").is_file());
}

#[tokio::test]
async fn zstd_and_uncompressed_layers_pull() {
    let mut e = Env::new().await;
    let host = std::fs::read("/bin/busybox").unwrap();
    for (compression, tag) in [(Compression::Zstd, "zstd"), (Compression::None, "none")] {
        let img = catalog::busybox_oci(compression).label("c", tag).build();
        let name = img.push_tag(&e.reg, "test/compression", tag).await;
        cri::pull(&mut e.c, &name)
            .await
            .unwrap_or_else(|err| panic!("pull {compression:?} layer: {err:?}"));
        let st = cri::status(&mut e.c, &name).await.expect("status");
        assert_eq!(st.id, img.id());
        let unpacked = e.d.snapshot_dir(&img.chain_ids()[0]).join("fs/bin/busybox");
        let data = std::fs::read(&unpacked)
            .unwrap_or_else(|err| panic!("{compression:?}: {}: {err}", unpacked.display()));
        assert_eq!(
            sha256_hex(&data),
            sha256_hex(&host),
            "{compression:?} content"
        );
    }
}

async fn index_selects_host_platform(format: Format) {
    let mut e = Env::new().await;
    let index = catalog::platform_index(format);
    index.push(&e.reg, "test/multi", "latest").await;
    let name = e.reg.image("test/multi:latest");
    cri::pull_ok(&mut e.c, &name).await;

    let host = index.image_for(host_arch());
    let st = cri::status(&mut e.c, &name).await.expect("status");
    assert_eq!(st.id, host.id(), "image id is the host-arch config digest");
    assert_eq!(
        st.repo_digests,
        vec![e.reg.image(&format!("test/multi@{}", index.digest))],
        "the repo digest is the index digest the tag points at"
    );
    let top = e.d.snapshot_dir(host.chain_ids().last().unwrap());
    let marker = catalog::platform_marker(host_arch());
    assert_eq!(
        std::fs::read(top.join("fs").join(&marker)).unwrap(),
        host_arch().as_bytes()
    );
    assert!(
        !any_snapshot_has(&e.d, &catalog::platform_marker(other_arch())),
        "the {} layer must not be unpacked",
        other_arch()
    );
    let other = index.image_for(other_arch());
    let fetched = e
        .reg
        .count_requests("GET", &format!("/blobs/{}", other.layer_digests()[1]))
        .await;
    assert_eq!(fetched, 0, "the {} layer must not be fetched", other_arch());
}

#[tokio::test]
async fn oci_index_selects_host_platform() {
    index_selects_host_platform(Format::Oci).await;
}

#[tokio::test]
async fn docker_manifest_list_selects_host_platform() {
    index_selects_host_platform(Format::Docker).await;
}

/// A runtime handler configured with another platform: PullImage naming it
/// (kubelet's RuntimeClassInImageCriApi) fetches that platform's image from
/// the index; the default handler gets the host's; an unknown handler is
/// refused before anything is fetched.
#[tokio::test]
async fn pull_image_honours_the_runtime_handlers_platform() {
    use k8s_cri::v1::{ImageSpec, PullImageRequest};
    let reg = crate::support::registry::TestRegistry::start().await;
    let d = crate::support::daemon::Berthd::start(&format!(
        "{}runtime:\n  handlers:\n    crun: {{ path: /usr/bin/crun }}\n    foreign: {{ path: /usr/bin/crun, platform: linux/{} }}\n",
        reg.insecure_yaml(),
        other_arch()
    ))
    .await;
    let mut c = d.image_client().await;
    let index = catalog::platform_index(Format::Oci);
    index.push(&reg, "test/multi", "latest").await;
    let name = reg.image("test/multi:latest");
    let pull = |handler: &str| PullImageRequest {
        image: Some(ImageSpec {
            image: name.clone(),
            runtime_handler: handler.to_string(),
            ..Default::default()
        }),
        auth: None,
        sandbox_config: None,
    };
    let err = c.pull_image(pull("kata")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("unknown runtime handler"), "{err:?}");

    let other = index.image_for(other_arch());
    let got = c.pull_image(pull("foreign")).await.unwrap().into_inner();
    assert_eq!(got.image_ref, other.id(), "the handler's platform image");
    let top = d.snapshot_dir(other.chain_ids().last().unwrap());
    assert_eq!(
        std::fs::read(top.join("fs").join(catalog::platform_marker(other_arch()))).unwrap(),
        other_arch().as_bytes()
    );

    let host = index.image_for(host_arch());
    let got = c.pull_image(pull("")).await.unwrap().into_inner();
    assert_eq!(got.image_ref, host.id(), "the default handler: the host's");
    let got = c.pull_image(pull("crun")).await.unwrap().into_inner();
    assert_eq!(got.image_ref, host.id());
}

#[tokio::test]
async fn wrong_layer_size_in_manifest_is_rejected() {
    let mut e = Env::new().await;
    for (tag, delta) in [("smaller", -7i64), ("larger", 7)] {
        let img = catalog::busybox().label("size", tag).build_with(
            |_| {},
            |m| {
                let size = m["layers"][0]["size"].as_i64().unwrap();
                m["layers"][0]["size"] = serde_json::json!(size + delta);
            },
        );
        let name = img.push_tag(&e.reg, "test/badsize", tag).await;
        let err = cri::pull(&mut e.c, &name)
            .await
            .expect_err("a layer whose size differs from the manifest must not pull");
        let msg = err.message().to_lowercase();
        assert!(
            msg.contains("size") || msg.contains("digest"),
            "{tag}: the error names the size or digest mismatch: {err:?}"
        );
        assert!(
            cri::list(&mut e.c).await.is_empty(),
            "{tag}: nothing listed"
        );
        assert!(e.d.snapshot_entries().is_empty(), "{tag}: nothing unpacked");
    }
}

#[tokio::test]
async fn wrong_diff_id_in_config_is_rejected() {
    let mut e = Env::new().await;
    let bogus = format!("sha256:{}", sha256_hex(b"not the layer"));
    let img = catalog::busybox().build_with(
        |c| c["rootfs"]["diff_ids"][0] = serde_json::json!(bogus),
        |_| {},
    );
    let name = img.push_tag(&e.reg, "test/baddiffid", "v1").await;
    let err = cri::pull(&mut e.c, &name)
        .await
        .expect_err("a layer whose tar digest differs from the diff_id must not pull");
    let msg = err.message().to_lowercase();
    assert!(
        msg.contains("diff") || msg.contains(crate::support::hex_of(&bogus)),
        "the error names the diff_id mismatch: {err:?}"
    );
    assert!(cri::list(&mut e.c).await.is_empty(), "nothing listed");
    assert!(
        e.d.snapshot_entries().is_empty(),
        "the unverified layer leaves no snapshot: {:?}",
        e.d.snapshot_entries()
    );
}
