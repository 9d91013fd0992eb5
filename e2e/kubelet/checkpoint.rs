//! CheckpointContainer: through runc + CRIU where the host can, a clear
//! FailedPrecondition where the handler (Debian's crun has no CRIU) or the
//! host (`criu check` fails: Debian's criu 3.17.1 on kernel 6.18) cannot.

use k8s_cri::v1::{CheckpointContainerRequest, RunPodSandboxRequest};
use tonic::Code;

use super::Env;
use crate::support::pods;

/// Whether CRIU works on this host, as berth decides it.
fn criu_works() -> bool {
    std::process::Command::new("criu")
        .arg("check")
        .output()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            o.status.success() && !text.contains("Error")
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn checkpoint_writes_an_archive_or_says_why_not() {
    let mut e = Env::new().await;
    let out = tempfile::tempdir().unwrap();
    let checkpoint = |id: &str, file: &str| CheckpointContainerRequest {
        container_id: id.into(),
        location: out.path().join(file).display().to_string(),
        timeout: 0,
    };
    // crun (the default handler): no CRIU in Debian's build.
    let pod_cfg = e.pod_config("ckpt-crun");
    let pod = e.pod(&pod_cfg).await;
    let (cfg, _) = e.container(
        "counter",
        "i=0; while :; do i=$((i+1)); echo $i; sleep 1; done",
    );
    let id = e.run(&pod, &cfg, &pod_cfg).await;
    let err =
        e.rt.checkpoint_container(checkpoint(&id, "crun.tar"))
            .await
            .expect_err("crun cannot checkpoint");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("CRIU"), "{}", err.message());
    assert!(!out.path().join("crun.tar").exists());
    let err =
        e.rt.checkpoint_container(CheckpointContainerRequest {
            location: "relative.tar".into(),
            ..checkpoint(&id, "x")
        })
        .await
        .expect_err("a relative location");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // runc: a checkpoint if CRIU works here, else the host's reason.
    let runc_cfg = e.pod_config("ckpt-runc");
    let runc_pod =
        e.rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(runc_cfg.clone()),
            runtime_handler: "runc".into(),
        })
        .await
        .expect("RunPodSandbox(runc)")
        .into_inner()
        .pod_sandbox_id;
    let runc_id = e.run(&runc_pod, &cfg, &runc_cfg).await;
    let res =
        e.rt.checkpoint_container(checkpoint(&runc_id, "runc.tar"))
            .await;
    if criu_works() {
        res.unwrap_or_else(|s| panic!("checkpoint under runc: {s:?}\n{}", e.log_tail()));
        let list = std::process::Command::new("tar")
            .arg("-tf")
            .arg(out.path().join("runc.tar"))
            .output()
            .unwrap();
        let names = String::from_utf8_lossy(&list.stdout);
        assert!(names.contains("checkpoint/inventory.img"), "{names}");
        assert_eq!(
            pods::status_ok(&mut e.rt, &runc_id).await.state,
            k8s_cri::v1::ContainerState::ContainerRunning as i32,
            "--leave-running"
        );
    } else {
        let err = res.expect_err("criu cannot work on this host");
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("criu"), "{}", err.message());
        assert!(!out.path().join("runc.tar").exists());
    }
    e.remove_all_pods().await;
}
