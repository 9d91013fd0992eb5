//! PID namespace TARGET: an ephemeral-style container (`kubectl debug -it
//! POD --target=app`) joins the target container's PID namespace and sees
//! its processes; a missing, stopped or foreign target is refused.

use k8s_cri::v1::{ContainerConfig, NamespaceMode, NamespaceOption};
use tonic::Code;

use super::Env;
use crate::support::host;
use crate::support::pods;

fn target(cfg: &mut ContainerConfig, target_id: &str) {
    pods::security(cfg).namespace_options = Some(NamespaceOption {
        network: NamespaceMode::Pod as i32,
        ipc: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Target as i32,
        target_id: target_id.into(),
        ..Default::default()
    });
}

#[tokio::test]
async fn debug_container_joins_the_target_pid_namespace() {
    let mut e = Env::new().await;
    // The kubelet's default: each container its own PID namespace.
    let mut pod_cfg = e.pod_config("debug-target");
    pods::set_pid_mode(&mut pod_cfg, NamespaceMode::Container);
    let pod = e.pod(&pod_cfg).await;
    let (app, app_tag) = e.container("app", "exec sleep 1234");
    let app_id = e.run(&pod, &app, &pod_cfg).await;
    let (other, other_tag) = e.container("other", "exec sleep 4321");
    let other_id = e.run(&pod, &other, &pod_cfg).await;
    let app_init = host::container_init(&app_tag);
    let other_init = host::container_init(&other_tag);

    let (mut debug, debug_tag) = e.container("debugger", "exec sleep 1000");
    target(&mut debug, &app_id);
    let debug_id = e.run(&pod, &debug, &pod_cfg).await;
    let debug_init = host::container_init(&debug_tag);
    assert_eq!(
        host::ns_link(debug_init.pid, "pid"),
        host::ns_link(app_init.pid, "pid"),
        "the debug container is in app's PID namespace"
    );
    assert_ne!(
        host::ns_link(other_init.pid, "pid"),
        host::ns_link(app_init.pid, "pid"),
        "the other container keeps its own"
    );
    // From inside: the target's process is visible (as PID 1), the other
    // container's is not.
    let seen = pods::sh(
        &mut e.rt,
        &debug_id,
        "cat /proc/[0-9]*/cmdline | tr '\\0' ' '",
    )
    .await;
    assert!(
        seen.contains("sleep 1234"),
        "debug sees app's sleep: {seen:?}"
    );
    assert!(!seen.contains("sleep 4321"), "but not other's: {seen:?}");
    assert_eq!(
        pods::sh(&mut e.rt, &debug_id, "tr '\\0' ' ' < /proc/1/cmdline").await,
        "sleep 1234 ",
        "PID 1 is the target's init"
    );

    // Refusals with precise codes.
    let unknown = "0123456789abcdef".repeat(4);
    let (mut bad, _) = e.container("bad-unknown", "true");
    target(&mut bad, &unknown);
    let err = pods::create(&mut e.rt, &pod, &bad, &pod_cfg)
        .await
        .expect_err("unknown target");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let (mut bad, _) = e.container("bad-empty", "true");
    target(&mut bad, "");
    let err = pods::create(&mut e.rt, &pod, &bad, &pod_cfg)
        .await
        .expect_err("empty target");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    pods::stop(&mut e.rt, &other_id, 0).await.unwrap();
    let (mut bad, _) = e.container("bad-stopped", "true");
    target(&mut bad, &other_id);
    let err = pods::create(&mut e.rt, &pod, &bad, &pod_cfg)
        .await
        .expect_err("stopped target");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let elsewhere_cfg = e.pod_config("debug-elsewhere");
    let elsewhere = e.pod(&elsewhere_cfg).await;
    let (mut bad, _) = e.container("bad-foreign", "true");
    target(&mut bad, &app_id);
    let err = pods::create(&mut e.rt, &elsewhere, &bad, &elsewhere_cfg)
        .await
        .expect_err("target in another pod");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    e.remove_all_pods().await;
    for tag in [app_tag, other_tag, debug_tag] {
        assert!(host::tagged(&tag).is_empty(), "{tag} left processes");
    }
}
