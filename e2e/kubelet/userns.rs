//! User-namespaced pods (`hostUsers: false`): userns_options mode POD with
//! the kubelet's mappings; containers see uid 0 mapped to the pod's range
//! and write their (idmapped) volumes and their (idmapped) image files;
//! unsupported modes, mappings and
//! handlers are refused with InvalidArgument.

use k8s_cri::v1::{
    IdMapping, Mount, NamespaceMode, NamespaceOption, RunPodSandboxRequest, UserNamespace,
};
use tonic::Code;

use super::Env;
use crate::support::pods;

fn userns(cfg: &mut k8s_cri::v1::PodSandboxConfig, mode: NamespaceMode, maps: Vec<IdMapping>) {
    pods::pod_security(cfg).namespace_options = Some(NamespaceOption {
        userns_options: Some(UserNamespace {
            mode: mode as i32,
            uids: maps.clone(),
            gids: maps,
        }),
        ..Default::default()
    });
}

fn map(container_id: u32, host_id: u32, length: u32) -> IdMapping {
    IdMapping {
        container_id,
        host_id,
        length,
    }
}

#[tokio::test]
async fn user_namespaced_pod_maps_root_and_writes_its_volume() {
    use std::os::unix::fs::MetadataExt;
    let mut e = Env::new().await;
    let mut pod_cfg = e.pod_config("userns");
    userns(
        &mut pod_cfg,
        NamespaceMode::Pod,
        vec![map(0, 200_000, 65_536)],
    );
    let pod = e.pod(&pod_cfg).await;
    let vol = tempfile::tempdir().unwrap();
    let (mut cfg, tag) = e.container(
        "in-userns",
        "cat /proc/self/uid_map; id -u; echo hi > /vol/written && echo wrote; sleep 1000",
    );
    cfg.mounts.push(Mount {
        container_path: "/vol".into(),
        host_path: vol.path().display().to_string(),
        ..Default::default()
    });
    let id = e.run(&pod, &cfg, &pod_cfg).await;
    let out = pods::sh(&mut e.rt, &id, "cat /proc/self/uid_map /proc/self/gid_map").await;
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [["0", "200000", "65536"], ["0", "200000", "65536"]],
        "uid 0 is the pod's range: {out:?}"
    );
    assert_eq!(pods::sh(&mut e.rt, &id, "id -u").await, "0\n");
    // The image's root-owned files are the container root's (idmapped
    // layers), not nobody's: root can change them, and what it writes in
    // the rootfs is owned by the pod's range on the host.
    assert_eq!(
        pods::sh(&mut e.rt, &id, "stat -c '%u:%g' /etc /bin/busybox /").await,
        "0:0\n0:0\n0:0\n"
    );
    assert_eq!(
        pods::sh(
            &mut e.rt,
            &id,
            "echo changed > /etc/made && mkdir /root2 && chmod 700 /etc && echo ok"
        )
        .await,
        "ok\n"
    );
    let made = std::fs::metadata(format!(
        "/proc/{}/root/etc/made",
        crate::support::host::container_init(&tag).pid
    ))
    .unwrap();
    assert_eq!(
        (made.uid(), made.gid()),
        (200_000, 200_000),
        "owned by the pod's range"
    );
    // On the host the container's root is uid 200000, not root.
    let init = crate::support::host::container_init(&tag);
    let status = std::fs::read_to_string(format!("/proc/{}/status", init.pid)).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some("200000"),
        "{uid_line}"
    );
    // The root-owned 0755 volume is writable through the idmapped mount,
    // and what root wrote is owned by host root.
    crate::support::wait_until("the container's write", pods::STATE_LIMIT, || async {
        vol.path().join("written").exists().then_some(())
    })
    .await;
    let meta = std::fs::metadata(vol.path().join("written")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert_eq!(
        std::fs::read_to_string(vol.path().join("written")).unwrap(),
        "hi\n"
    );
    assert!(e.log_text(&pod_cfg, &cfg).contains("wrote"));
    // ContainerStatus.user is in the container's terms.
    let user = pods::status_ok(&mut e.rt, &id)
        .await
        .user
        .and_then(|u| u.linux)
        .expect("user");
    assert_eq!(user.uid, 200_000, "PID 1 as the host sees it: {user:?}");

    // Refusals, before anything is made.
    for (mode, maps, what) in [
        (
            NamespaceMode::Pod,
            vec![map(0, 300_000, 10), map(10, 400_000, 10)],
            "two mappings",
        ),
        (
            NamespaceMode::Pod,
            vec![map(1, 300_000, 10)],
            "container id 0 unmapped",
        ),
        (NamespaceMode::Container, vec![], "mode CONTAINER"),
        (NamespaceMode::Target, vec![], "mode TARGET"),
    ] {
        let mut bad = e.pod_config("userns-bad");
        userns(&mut bad, mode, maps);
        let err =
            e.rt.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(bad),
                runtime_handler: String::new(),
            })
            .await
            .expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
    // runc 1.1.5 does not idmap mounts: it does not run user-namespaced pods.
    let mut on_runc = e.pod_config("userns-runc");
    userns(
        &mut on_runc,
        NamespaceMode::Pod,
        vec![map(0, 300_000, 65_536)],
    );
    let err =
        e.rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(on_runc),
            runtime_handler: "runc".into(),
        })
        .await
        .expect_err("runc");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        pods::list_pods(&mut e.rt).await.len(),
        1,
        "nothing was made"
    );
    e.remove_all_pods().await;
}
