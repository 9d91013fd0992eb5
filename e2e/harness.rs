//! Checks of the harness itself, independent of berthd: what the image
//! builder pushes must be readable by another client (skopeo).

use std::process::Command;

use crate::support::catalog;
use crate::support::images::{host_arch, Format};
use crate::support::registry::TestRegistry;

fn skopeo_inspect(args: &[&str], image: &str) -> serde_json::Value {
    let out = Command::new("skopeo")
        .arg("inspect")
        .args(args)
        .arg("--tls-verify=false")
        .arg(format!("docker://{image}"))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo prints JSON")
}

#[tokio::test]
async fn pushed_image_is_readable_by_skopeo() {
    let reg = TestRegistry::start().await;
    let img = catalog::whiteout_image().user("berthuser").build();
    let name = img.push_tag(&reg, "test/whiteout", "v1").await;

    let info = skopeo_inspect(&[], &name);
    assert_eq!(info["Digest"], img.manifest_digest);
    assert_eq!(info["Architecture"], host_arch());
    assert_eq!(info["Layers"], serde_json::json!(img.layer_digests()));

    let config = skopeo_inspect(&["--config"], &name);
    assert_eq!(config["config"]["User"], "berthuser");
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!(img.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>())
    );
    assert_eq!(reg.count_ok("PUT", "/manifests/v1").await, 1);
}

#[tokio::test]
async fn pushed_index_resolves_to_host_image() {
    let reg = TestRegistry::start().await;
    for format in [Format::Oci, Format::Docker] {
        let index = catalog::platform_index(format);
        let repo = format!("test/multi-{format:?}").to_lowercase();
        index.push(&reg, &repo, "latest").await;
        let info = skopeo_inspect(&[], &reg.image(&format!("{repo}:latest")));
        let host = index.image_for(host_arch());
        assert_eq!(info["Layers"], serde_json::json!(host.layer_digests()));
    }
}

#[tokio::test]
async fn htpasswd_registry_demands_credentials() {
    let reg = TestRegistry::start_with_htpasswd("berth", "s3cret").await;
    let img = catalog::busybox().build();
    // The pusher authenticates; a client without credentials is refused.
    let name = img.push_tag(&reg, "test/private", "v1").await;
    let resp = reqwest::get(format!("{}/v2/test/private/manifests/v1", reg.url()))
        .await
        .expect("GET manifest");
    assert_eq!(resp.status(), 401);
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--creds", "berth:s3cret"])
        .arg(format!("docker://{name}"))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
