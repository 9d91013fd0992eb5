//! Runtime handlers: a pod's `runtime_handler` picks the OCI runtime from
//! `runtime.handlers` (crun by default, runc by name); an unknown one is refused.

use k8s_cri::v1::RunPodSandboxRequest;

use super::Env;
use crate::support::pods;

#[tokio::test]
async fn runc_handler_runs_containers_and_unknown_handlers_are_refused() {
    if !std::path::Path::new("/usr/sbin/runc").exists() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have runc (e2e/test.sh installs it)"
        );
        eprintln!("runc not installed; skipping");
        return;
    }
    let mut e = Env::new().await;
    let pod_cfg = e.pod_config("with-runc");
    let pod =
        e.rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_cfg.clone()),
            runtime_handler: "runc".into(),
        })
        .await
        .unwrap_or_else(|s| panic!("RunPodSandbox(runc): {s:?}\n{}", e.log_tail()))
        .into_inner()
        .pod_sandbox_id;
    let st = pods::pod_status(&mut e.rt, &pod).await.unwrap();
    assert_eq!(st.runtime_handler, "runc");
    let (cfg, _) = e.container("under-runc", "echo hello-from-runc; sleep 1000");
    let id = e.run(&pod, &cfg, &pod_cfg).await;
    assert_eq!(pods::sh(&mut e.rt, &id, "echo exec-ok").await, "exec-ok\n");
    // runc, not crun, holds the container: its state lives under runc's root.
    let runc_state = e.d.state().join("runtime").join("runc").join(&id);
    assert!(runc_state.exists(), "{} missing", runc_state.display());
    assert!(!e.d.state().join("runtime").join("crun").join(&id).exists());
    pods::stop(&mut e.rt, &id, 0).await.unwrap();
    let st = pods::status_ok(&mut e.rt, &id).await;
    assert_eq!(st.exit_code, 137, "{st:?}");

    let err =
        e.rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(e.pod_config("bad-handler")),
            runtime_handler: "kata".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("kata"), "{}", err.message());
    e.remove_all_pods().await;
}
