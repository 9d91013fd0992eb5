//! `Status.runtime_handlers` and `Status.features`: what each handler
//! advertises, and that a container really gets what is advertised.

use k8s_cri::v1::{
    Mount, MountPropagation, RunPodSandboxRequest, StatusRequest, SupplementalGroupsPolicy,
};

use super::Env;
use crate::support::pods;

/// A directory with a tmpfs mounted on its `sub/`, unmounted on drop.
struct NestedMount {
    dir: tempfile::TempDir,
}

impl NestedMount {
    fn new() -> NestedMount {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir sub");
        let sub = dir.path().join("sub");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&sub)
            .status()
            .expect("run mount");
        assert!(ok.success(), "mount tmpfs on {}", sub.display());
        NestedMount { dir }
    }
}

impl Drop for NestedMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path().join("sub"))
            .status();
    }
}

#[tokio::test]
async fn handlers_advertise_what_their_containers_get() {
    let mut e = Env::new().await;
    let resp =
        e.rt.status(StatusRequest { verbose: true })
            .await
            .expect("Status")
            .into_inner();
    assert!(
        resp.features
            .as_ref()
            .is_some_and(|f| f.supplemental_groups_policy),
        "SupplementalGroupsPolicy is advertised: {:?}",
        resp.features
    );
    let handlers: Vec<(String, bool, bool)> = resp
        .runtime_handlers
        .iter()
        .map(|h| {
            let f = h.features.unwrap_or_default();
            (
                h.name.clone(),
                f.recursive_read_only_mounts,
                f.user_namespaces,
            )
        })
        .collect();
    let names: Vec<&str> = handlers.iter().map(|h| h.0.as_str()).collect();
    assert_eq!(
        names,
        ["", "crun", "runc"],
        "the default handler under \"\", then each by name"
    );
    assert_eq!(
        (handlers[0].1, handlers[0].2),
        (handlers[1].1, handlers[1].2),
        "\"\" is crun, the default"
    );
    let info = resp.info.get("config").expect("verbose info has config");
    assert!(
        info.contains("runtimeHandlerFeatures"),
        "how each handler was probed is in the verbose info: {info}"
    );
    // This kernel (≥ 5.12) and both runtimes apply `rro`: crun 1.8.1 by its
    // version, runc 1.1.5 by `runc features`. User-namespaced pods need
    // idmapped volumes: crun 1.8.1 does them, runc 1.1.5 does not.
    for (name, rro, userns) in &handlers {
        assert!(rro, "{name:?} advertises recursive read-only mounts");
        assert_eq!(*userns, name != "runc", "{name:?} user namespaces");
    }

    // What is advertised holds: an `rro` mount is read-only below, too.
    let nested = NestedMount::new();
    std::fs::write(nested.dir.path().join("top"), "t").unwrap();
    for handler in ["crun", "runc"] {
        let pod_cfg = e.pod_config(&format!("rro-{handler}"));
        let pod =
            e.rt.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_cfg.clone()),
                runtime_handler: handler.into(),
            })
            .await
            .unwrap_or_else(|s| panic!("RunPodSandbox({handler}): {s:?}\n{}", e.log_tail()))
            .into_inner()
            .pod_sandbox_id;
        let (mut cfg, _) = e.container("rro", "sleep 1000");
        cfg.mounts.push(Mount {
            container_path: "/ro".into(),
            host_path: nested.dir.path().display().to_string(),
            readonly: true,
            recursive_read_only: true,
            propagation: MountPropagation::PropagationPrivate as i32,
            ..Default::default()
        });
        let (mut plain, _) = e.container("plain-ro", "sleep 1000");
        plain.mounts.push(Mount {
            container_path: "/ro".into(),
            host_path: nested.dir.path().display().to_string(),
            readonly: true,
            ..Default::default()
        });
        let id = e.run(&pod, &cfg, &pod_cfg).await;
        let plain_id = e.run(&pod, &plain, &pod_cfg).await;
        let probe = "cat /ro/top; touch /ro/x 2>&1; touch /ro/sub/x 2>&1; echo done";
        let out = pods::sh(&mut e.rt, &id, probe).await;
        assert_eq!(
            out,
            "ttouch: /ro/x: Read-only file system\ntouch: /ro/sub/x: Read-only file system\ndone\n",
            "{handler}: the submount is read-only too"
        );
        // Without recursive_read_only the submount stays writable: the check
        // above can fail.
        let out = pods::sh(&mut e.rt, &plain_id, probe).await;
        assert_eq!(
            out, "ttouch: /ro/x: Read-only file system\ndone\n",
            "{handler}: plain ro"
        );
        pods::remove_pod(&mut e.rt, &pod).await.unwrap();
    }
    e.remove_all_pods().await;
}

#[tokio::test]
async fn supplemental_groups_policy_and_container_user() {
    let mut e = Env::new().await;
    let pod_cfg = e.pod_config("groups");
    let pod = e.pod(&pod_cfg).await;
    // berthuser (1234) is a member of berthextra (5555) in the image's /etc/group.
    let mut merge = e.container("merge", "sleep 1000").0;
    pods::run_as_user(&mut merge, 1234);
    pods::security(&mut merge).supplemental_groups = vec![4321];
    let mut strict = e.container("strict", "sleep 1000").0;
    pods::run_as_user(&mut strict, 1234);
    pods::security(&mut strict).supplemental_groups = vec![4321];
    pods::security(&mut strict).supplemental_groups_policy =
        SupplementalGroupsPolicy::Strict as i32;
    let merge_id = e.run(&pod, &merge, &pod_cfg).await;
    let strict_id = e.run(&pod, &strict, &pod_cfg).await;

    let groups = |s: &str| -> Vec<i64> {
        let mut g: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
        g.sort();
        g
    };
    let merged = groups(&pods::sh(&mut e.rt, &merge_id, "id -G").await);
    let strict_groups = groups(&pods::sh(&mut e.rt, &strict_id, "id -G").await);
    assert_eq!(merged, [1234, 4321, 5555], "Merge adds the image's groups");
    assert_eq!(
        strict_groups,
        [1234, 4321],
        "Strict: no groups from the image"
    );

    // ContainerStatus.user is PID 1's identity.
    for (id, want) in [(&merge_id, &merged), (&strict_id, &strict_groups)] {
        let st = pods::status_ok(&mut e.rt, id).await;
        let user = st
            .user
            .and_then(|u| u.linux)
            .unwrap_or_else(|| panic!("ContainerStatus.user of {id}"));
        let mut got = user.supplemental_groups.clone();
        got.sort();
        assert_eq!((user.uid, user.gid), (1234, 1234));
        assert_eq!(&got, want, "status groups = what `id -G` shows");
    }
    let mut other = e.container("uid", "sleep 1000").0;
    pods::run_as_user(&mut other, 1001);
    pods::security(&mut other).run_as_group = Some(k8s_cri::v1::Int64Value { value: 1002 });
    let other_id = e.run(&pod, &other, &pod_cfg).await;
    let user = pods::status_ok(&mut e.rt, &other_id)
        .await
        .user
        .and_then(|u| u.linux)
        .expect("user");
    assert_eq!((user.uid, user.gid), (1001, 1002), "{user:?}");
    // After the exit the spec's identity is reported.
    pods::stop(&mut e.rt, &other_id, 0).await.unwrap();
    let user = pods::status_ok(&mut e.rt, &other_id)
        .await
        .user
        .and_then(|u| u.linux)
        .expect("user after exit");
    assert_eq!((user.uid, user.gid), (1001, 1002), "{user:?}");
    e.remove_all_pods().await;
}
