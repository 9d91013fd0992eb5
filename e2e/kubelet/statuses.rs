//! Status fields current kubelets read: ContainerStatus.resources (in-place
//! resize), PodSandboxStatus.containers_statuses and timestamp (evented
//! PLEG), ImageFsInfo.container_filesystems, Image.pinned from
//! `cri.pinned_images`, UpdateRuntimeConfig.

use k8s_cri::v1::{
    ImageFsInfoRequest, LinuxContainerResources, NetworkConfig, PodSandboxStatusRequest,
    RuntimeConfig, UpdateContainerResourcesRequest, UpdateRuntimeConfigRequest,
};
use tonic::Code;

use super::Env;
use crate::support::catalog;
use crate::support::cri;
use crate::support::pods;

fn resources(cpu_shares: i64, memory: i64) -> LinuxContainerResources {
    LinuxContainerResources {
        cpu_shares,
        cpu_period: 100_000,
        cpu_quota: 50_000,
        memory_limit_in_bytes: memory,
        ..Default::default()
    }
}

#[tokio::test]
async fn container_and_pod_status_carry_what_kubelets_read() {
    let mut e = Env::new().await;
    let pod_cfg = e.pod_config("statuses");
    let pod = e.pod(&pod_cfg).await;
    let (mut cfg, _) = e.container("sized", "sleep 1000");
    cfg.linux.get_or_insert_with(Default::default).resources = Some(resources(512, 64 << 20));
    let id = e.run(&pod, &cfg, &pod_cfg).await;
    let (done, _) = e.container("done", "true");
    let done_id = e.run(&pod, &done, &pod_cfg).await;
    pods::wait_exited(&mut e.rt, &done_id).await;

    let got = pods::status_ok(&mut e.rt, &id)
        .await
        .resources
        .and_then(|r| r.linux)
        .expect("ContainerStatus.resources");
    assert_eq!(
        (
            got.cpu_shares,
            got.cpu_period,
            got.cpu_quota,
            got.memory_limit_in_bytes
        ),
        (512, 100_000, 50_000, 64 << 20),
        "{got:?}"
    );
    // An update is applied and read back from the cgroup.
    e.rt.update_container_resources(UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(resources(1024, 128 << 20)),
        ..Default::default()
    })
    .await
    .expect("UpdateContainerResources");
    let got = pods::status_ok(&mut e.rt, &id)
        .await
        .resources
        .and_then(|r| r.linux)
        .expect("resources after update");
    assert_eq!(
        (got.cpu_shares, got.memory_limit_in_bytes),
        (1024, 128 << 20),
        "{got:?}"
    );
    let limit = pods::sh(
        &mut e.rt,
        &id,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
    )
    .await;
    assert_eq!(
        limit.trim(),
        (128u64 << 20).to_string(),
        "the cgroup agrees"
    );

    // The pod's status lists its containers with their states, stamped now.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let resp =
        e.rt.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner();
    assert!(
        resp.timestamp >= before,
        "timestamp {} >= {before}",
        resp.timestamp
    );
    let mut states: Vec<(String, i32)> = resp
        .containers_statuses
        .iter()
        .map(|c| (c.id.clone(), c.state))
        .collect();
    states.sort();
    let mut want = vec![
        (
            id.clone(),
            k8s_cri::v1::ContainerState::ContainerRunning as i32,
        ),
        (
            done_id.clone(),
            k8s_cri::v1::ContainerState::ContainerExited as i32,
        ),
    ];
    want.sort();
    assert_eq!(states, want);

    // ImageFsInfo counts the containers' writable layers.
    let layers = |r: &k8s_cri::v1::ImageFsInfoResponse| {
        let c = r
            .container_filesystems
            .first()
            .expect("container_filesystems");
        (
            c.used_bytes.as_ref().map(|v| v.value).unwrap_or(0),
            c.inodes_used.as_ref().map(|v| v.value).unwrap_or(0),
        )
    };
    let before = e
        .images
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .expect("ImageFsInfo")
        .into_inner();
    pods::sh(
        &mut e.rt,
        &id,
        "dd if=/dev/zero of=/big bs=1M count=3 2>/dev/null; sync",
    )
    .await;
    let after = e
        .images
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .expect("ImageFsInfo")
        .into_inner();
    let (b0, i0) = layers(&before);
    let (b1, i1) = layers(&after);
    assert!(b1 >= b0 + (3 << 20), "a 3 MiB file shows: {b0} -> {b1}");
    assert!(i1 > i0, "its inode too: {i0} -> {i1}");
    assert_eq!(
        after.container_filesystems[0].fs_id, after.image_filesystems[0].fs_id,
        "one filesystem under root"
    );
    e.remove_all_pods().await;
}

#[tokio::test]
async fn pinned_images_and_runtime_config() {
    let reg = crate::support::registry::TestRegistry::start().await;
    let pinned = catalog::busybox()
        .label("berth.e2e", "pinned")
        .build()
        .push_tag(&reg, "test/pinned", "v1")
        .await;
    let loose = catalog::busybox()
        .label("berth.e2e", "loose")
        .build()
        .push_tag(&reg, "test/loose", "v1")
        .await;
    let d = crate::support::daemon::Berthd::start(&format!(
        "{}cri:\n  pinned_images: [\"{pinned}\"]\n",
        reg.insecure_yaml()
    ))
    .await;
    let mut images = d.image_client().await;
    cri::pull_ok(&mut images, &pinned).await;
    cri::pull_ok(&mut images, &loose).await;
    let list = cri::list(&mut images).await;
    let flag = |name: &str| {
        list.iter()
            .find(|i| i.repo_tags.iter().any(|t| t == name))
            .unwrap_or_else(|| panic!("{name} listed: {list:?}"))
            .pinned
    };
    assert!(flag(&pinned), "named in cri.pinned_images");
    assert!(!flag(&loose), "not named");
    assert!(
        cri::status(&mut images, &pinned)
            .await
            .expect("status")
            .pinned
    );

    let mut rt = d.runtime_client().await;
    let update = |cidr: &str| UpdateRuntimeConfigRequest {
        runtime_config: Some(RuntimeConfig {
            network_config: Some(NetworkConfig {
                pod_cidr: cidr.into(),
            }),
        }),
    };
    rt.update_runtime_config(update("10.244.3.0/24"))
        .await
        .expect("UpdateRuntimeConfig");
    assert!(
        d.log().contains("pod CIDR set by the kubelet"),
        "the pod CIDR is recorded"
    );
    let err = rt
        .update_runtime_config(update("10.244.3.0/99"))
        .await
        .expect_err("a bad CIDR");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // A bad pinned name is refused at start-up with its key.
    let dir = crate::support::short_tempdir("pin");
    let config = crate::support::daemon::config_yaml(
        dir.path(),
        "cri:\n  pinned_images: [\"UPPER/Case::bad\"]\n",
    );
    let (status, stderr) =
        crate::support::daemon::run_to_exit(&config, std::time::Duration::from_secs(60));
    assert!(!status.expect("exits").success());
    assert!(stderr.contains("cri.pinned_images[0]"), "{stderr}");
}
