//! Registry configuration: mirrors and credentials.

use base64::Engine;
use k8s_cri::v1::AuthConfig;

use crate::support::catalog;
use crate::support::cri;
use crate::support::daemon::Berthd;
use crate::support::registry::TestRegistry;

#[tokio::test]
async fn mirror_serves_pull_under_original_name() {
    let reg = TestRegistry::start().await;
    let img = catalog::busybox().label("case", "mirror").build();
    img.push(&reg, "test/busybox", "1").await;
    // `.invalid` never resolves: only the mirror can serve this pull.
    let d = Berthd::start(&format!(
        "registries:\n  example.invalid:\n    mirrors: [\"{}\"]\n",
        reg.url()
    ))
    .await;
    let mut c = d.image_client().await;

    let name = "example.invalid/test/busybox:1";
    cri::pull(&mut c, name)
        .await
        .unwrap_or_else(|err| panic!("pull through mirror: {err:?}\n{}", d.log()));
    let images = cri::list(&mut c).await;
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id, img.id());
    assert_eq!(images[0].repo_tags, vec![name.to_string()]);
    assert_eq!(
        images[0].repo_digests,
        vec![format!(
            "example.invalid/test/busybox@{}",
            img.manifest_digest
        )]
    );
    let st = cri::status(&mut c, name)
        .await
        .expect("status by original name");
    assert_eq!(st.id, img.id());

    // The mirror answered, under the same repository path.
    let requests = reg.requests().await;
    let served = |needle: &str| {
        requests.iter().any(|r| {
            r.path.starts_with("/v2/test/busybox/") && r.path.contains(needle) && r.status == 200
        })
    };
    assert!(
        served("/manifests/"),
        "mirror served the manifest: {requests:#?}"
    );
    assert!(
        served(&img.layers[0].digest),
        "mirror served the layer: {requests:#?}"
    );
}

/// `mirrors_only`: a mirror that lacks the image fails the pull, and the
/// host itself (which has it) sees no request at all; once the mirror has
/// the image the same pull works. Without `mirrors_only` the same miss
/// falls through to the host.
#[tokio::test]
async fn mirrors_only_never_falls_back_to_the_host() {
    let upstream = TestRegistry::start().await;
    let mirror = TestRegistry::start().await;
    let img = catalog::busybox().label("case", "mirrors-only").build();
    img.push(&upstream, "test/busybox", "1").await;
    let name = upstream.image("test/busybox:1");
    let yaml = |mirror: &TestRegistry, only: bool| {
        format!(
            "registries:\n  \"{}\":\n    insecure: true\n    mirrors: [\"{}\"]\n    mirrors_only: {only}\n",
            upstream.addr(),
            mirror.url()
        )
    };
    let d = Berthd::start(&yaml(&mirror, true)).await;
    let mut c = d.image_client().await;
    let err = cri::pull(&mut c, &name)
        .await
        .expect_err("a mirror miss must fail the pull");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(err.message().contains(mirror.addr()), "{err:?}");
    assert!(cri::list(&mut c).await.is_empty());
    let asked = mirror.requests().await;
    assert!(
        asked
            .iter()
            .any(|r| r.path.contains("/v2/test/busybox/manifests/")),
        "the mirror was asked: {asked:#?}"
    );
    let up = upstream.requests().await;
    assert!(
        !up.iter().any(|r| r.method != "POST"
            && r.method != "PUT"
            && r.path.contains("/manifests/")
            || r.method == "GET" && r.path.contains("/blobs/")),
        "the host itself was asked: {up:#?}"
    );

    // The mirror gets the image: the same pull now works through it alone.
    img.push(&mirror, "test/busybox", "1").await;
    cri::pull(&mut c, &name)
        .await
        .unwrap_or_else(|err| panic!("pull through the mirror: {err:?}\n{}", d.log()));
    let images = cri::list(&mut c).await;
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id, img.id());
    let up = upstream.requests().await;
    assert!(
        !up.iter().any(|r| r.method != "POST"
            && r.method != "PUT"
            && r.path.contains("/manifests/")
            || r.method == "GET" && r.path.contains("/blobs/")),
        "the host itself was asked: {up:#?}"
    );
    drop(d);

    // Without mirrors_only a miss goes on to the host.
    let mirror2 = TestRegistry::start().await;
    let d = Berthd::start(&yaml(&mirror2, false)).await;
    let mut c = d.image_client().await;
    cri::pull(&mut c, &name)
        .await
        .unwrap_or_else(|err| panic!("pull with fallback: {err:?}\n{}", d.log()));
    assert!(
        upstream
            .count_ok("GET", "/v2/test/busybox/manifests/")
            .await
            >= 1,
        "the host served the fallback"
    );
}

#[tokio::test]
async fn credentials_from_pull_request_reach_the_registry() {
    let reg = TestRegistry::start_with_htpasswd("berth", "s3cret").await;
    let img = catalog::busybox().label("case", "auth").build();
    let name = img.push_tag(&reg, "test/private", "v1").await;
    let d = Berthd::start(&reg.insecure_yaml()).await;
    let mut c = d.image_client().await;

    let err = cri::pull(&mut c, &name)
        .await
        .expect_err("anonymous pull from a private registry");
    assert_ne!(err.code(), tonic::Code::Ok);
    let wrong = AuthConfig {
        username: "berth".into(),
        password: "wrong".into(),
        ..Default::default()
    };
    cri::pull_with_auth(&mut c, &name, Some(wrong))
        .await
        .expect_err("pull with a wrong password");
    assert!(cri::list(&mut c).await.is_empty());

    let right = AuthConfig {
        username: "berth".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    cri::pull_with_auth(&mut c, &name, Some(right))
        .await
        .unwrap_or_else(|err| panic!("pull with username/password: {err:?}"));
    assert_eq!(
        cri::status(&mut c, &name).await.map(|i| i.id),
        Some(img.id().into())
    );
    cri::remove(&mut c, &name).await.expect("remove");

    // The `auth` field: base64 of "user:password", as in a docker config.
    let encoded = base64::engine::general_purpose::STANDARD.encode("berth:s3cret");
    let auth = AuthConfig {
        auth: encoded,
        ..Default::default()
    };
    cri::pull_with_auth(&mut c, &name, Some(auth))
        .await
        .unwrap_or_else(|err| panic!("pull with auth field: {err:?}"));
    assert_eq!(
        cri::status(&mut c, &name).await.map(|i| i.id),
        Some(img.id().into())
    );
}
