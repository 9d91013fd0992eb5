//! Error codes of container calls that cannot be done.

use k8s_cri::v1::ContainerState;
use tonic::Code;

use super::Env;
use crate::support::cri;
use crate::support::pods;

#[tokio::test]
async fn container_errors_have_the_right_codes() {
    let mut e = Env::new().await;
    let pod_cfg = e.pod_config("errors");
    let pod = e.pod(&pod_cfg).await;
    let (cfg, _) = e.container("app", "exec sleep 1000");

    // An unknown pod.
    let unknown = "0123456789abcdef".repeat(4);
    let err = pods::create(&mut e.rt, &unknown, &cfg, &pod_cfg)
        .await
        .expect_err("create in an unknown pod");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // An image that was never pulled (it is in the registry, though).
    let absent = crate::support::catalog::busybox()
        .label("berth.e2e", "never-pulled")
        .build()
        .push_tag(&e.reg, "test/never-pulled", "v1")
        .await;
    let (mut other, _) = e.container("other", "true");
    other.image = cri::spec(&absent);
    let err = pods::create(&mut e.rt, &pod, &other, &pod_cfg)
        .await
        .expect_err("create with an image not pulled");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(
        err.message().contains(&absent),
        "the message names the image {absent}: {err:?}"
    );
    assert!(
        cri::status(&mut e.images, &absent).await.is_none(),
        "CreateContainer does not pull"
    );

    // The same name and attempt twice in one pod; another attempt is fine.
    let first = pods::create(&mut e.rt, &pod, &cfg, &pod_cfg)
        .await
        .expect("first create");
    let err = pods::create(&mut e.rt, &pod, &cfg, &pod_cfg)
        .await
        .expect_err("same name and attempt again");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let mut retry = cfg.clone();
    retry.metadata.as_mut().expect("metadata").attempt = 1;
    let second = pods::create(&mut e.rt, &pod, &retry, &pod_cfg)
        .await
        .expect("attempt 1");
    assert_ne!(first, second);
    // The same name and attempt in another pod is fine.
    let other_pod_cfg = e.pod_config("errors-other");
    let other_pod = e.pod(&other_pod_cfg).await;
    pods::create(&mut e.rt, &other_pod, &cfg, &other_pod_cfg)
        .await
        .expect("same name in another pod");

    // StartContainer twice.
    pods::start(&mut e.rt, &first).await.expect("first start");
    pods::wait_state(&mut e.rt, &first, ContainerState::ContainerRunning).await;
    let err = pods::start(&mut e.rt, &first)
        .await
        .expect_err("second start");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let st = pods::status_ok(&mut e.rt, &first).await;
    assert_eq!(
        st.state,
        ContainerState::ContainerRunning as i32,
        "a refused start leaves the container running: {st:?}"
    );

    // Calls on a container that does not exist.
    let err = pods::start(&mut e.rt, &unknown)
        .await
        .expect_err("start unknown");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = pods::status(&mut e.rt, &unknown)
        .await
        .expect_err("status unknown");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    pods::remove(&mut e.rt, &unknown)
        .await
        .expect("removing a missing container succeeds");
    // The kubelet relies on StopContainer being idempotent: a container that
    // is gone (never existed, or removed) stops without an error.
    pods::stop(&mut e.rt, &unknown, 0)
        .await
        .expect("stopping a missing container succeeds");
    pods::remove(&mut e.rt, &second)
        .await
        .expect("remove attempt 1");
    pods::stop(&mut e.rt, &second, 0)
        .await
        .expect("stopping a removed container succeeds");
    let err = pods::status(&mut e.rt, &second)
        .await
        .expect_err("status of the removed container");
    assert_eq!(
        err.code(),
        Code::NotFound,
        "stop did not bring it back: {err:?}"
    );
    let err = pods::stop(&mut e.rt, "", 0)
        .await
        .expect_err("stop without an id");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    e.remove_all_pods().await;
}
