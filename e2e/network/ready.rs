//! NetworkReady follows the CNI config directory: empty, the node is not
//! network-ready and pods fail with FAILED_PRECONDITION (leaving nothing
//! behind); a conflist dropped in makes it ready without a restart; taking
//! it away makes it not ready again.

use std::time::Duration;

use k8s_cri::v1::RunPodSandboxRequest;
use tonic::Code;

use super::testnet::{Plugins, TestNet};
use super::{env, network_ready, pod_ip};
use crate::support::host;
use crate::support::pods::{self, RuntimeClient};

/// A safety net, not a timing assertion (the daemon re-reads every 2 s).
const FLIP_LIMIT: Duration = Duration::from_secs(30);

async fn wait_ready(rt: &RuntimeClient, want: bool) -> (bool, String, String) {
    let start = std::time::Instant::now();
    loop {
        let cond = network_ready(&mut rt.clone()).await;
        if cond.0 == want {
            return cond;
        }
        assert!(
            start.elapsed() < FLIP_LIMIT,
            "NetworkReady stayed {cond:?}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn network_ready_follows_the_config_directory() {
    let net = TestNet::new(Plugins::default()).await;
    let mut e = env(&net).await;
    let conf_dir = net.conf_dir.display().to_string();

    let (ready, reason, message) = network_ready(&mut e.rt).await;
    assert!(!ready, "an empty config dir: not network-ready");
    assert!(!reason.is_empty(), "a reason is given");
    assert!(
        message.contains(&conf_dir),
        "the message names the config dir {conf_dir}: {message:?}"
    );

    let cfg = e.pod_config("too-early");
    let err =
        e.rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("RunPodSandbox without a network");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("network") && err.message().contains(&conf_dir),
        "the error says the pod network is missing and where it was looked for: {:?}",
        err.message()
    );
    assert!(pods::list_pods(&mut e.rt).await.is_empty());
    let pod_dirs: Vec<_> = std::fs::read_dir(e.d.state().join("pods"))
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(pod_dirs.is_empty(), "the failed pod left {pod_dirs:?}");
    let mounts = host::mounts_under(&e.d.state());
    assert!(mounts.is_empty(), "the failed pod left mounts: {mounts:?}");

    net.install();
    let (_, reason, message) = wait_ready(&e.rt, true).await;
    assert!(
        reason.is_empty() && message.is_empty(),
        "{reason:?} {message:?}"
    );
    let pod = e.pod(&cfg).await;
    let ip = pod_ip(&mut e.rt, &pod).await;
    assert!(
        net.contains(&ip),
        "the new network gave {ip}, not in {}",
        net.subnet()
    );
    e.remove_all_pods().await;
    assert!(net.reserved_ips().is_empty(), "{:?}", net.ipam_files());

    std::fs::remove_file(net.conf_dir.join("10-e2e.conflist")).expect("remove conflist");
    let (_, reason, message) = wait_ready(&e.rt, false).await;
    assert!(
        !reason.is_empty() && message.contains(&conf_dir),
        "{reason:?} {message:?}"
    );
    drop(e);
    net.finish();
}
