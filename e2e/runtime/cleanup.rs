//! After every pod is removed nothing of them is left on the host: no
//! mounts, no monitor or infra processes, no cgroups, no pinned namespaces,
//! no files named after them.

use std::path::PathBuf;

use k8s_cri::v1::{ContainerState, NamespaceMode};

use super::Env;
use crate::support::host::{self, Proc};
use crate::support::pods;

/// What the host showed of a running container.
struct Seen {
    id: String,
    init: Proc,
    cgroups: Vec<PathBuf>,
}

#[tokio::test]
async fn removing_pods_leaves_nothing_behind() {
    let mut e = Env::new().await;
    let state = e.d.state().display().to_string();

    // A pod sharing its PID namespace (with an infra process) and one that does not.
    let shared_cfg = e.pod_config("clean-shared");
    let shared = e.pod(&shared_cfg).await;
    let mut own_cfg = e.pod_config("clean-own");
    pods::set_pid_mode(&mut own_cfg, NamespaceMode::Container);
    let own = e.pod(&own_cfg).await;

    let mut seen = Vec::new();
    let mut ids = vec![shared.clone(), own.clone()];
    let mut tags = Vec::new();
    for (pod, pod_cfg) in [(&shared, &shared_cfg), (&own, &own_cfg)] {
        for name in ["a", "b"] {
            let (cfg, tag) = e.container(name, "exec sleep 1000");
            let id = e.run(pod, &cfg, pod_cfg).await;
            pods::wait_state(&mut e.rt, &id, ContainerState::ContainerRunning).await;
            let init = host::container_init(&tag);
            let cgroups = host::own_cgroup_dirs(init.pid);
            assert!(
                !cgroups.is_empty(),
                "{id}: the container has cgroups of its own"
            );
            for d in &cgroups {
                assert!(d.is_dir(), "{}", d.display());
            }
            ids.push(id.clone());
            tags.push(tag);
            seen.push(Seen { id, init, cgroups });
        }
        // One that exited and one never started, too.
        let (cfg, tag) = e.container("exited", "exit 1");
        let id = e.run(pod, &cfg, pod_cfg).await;
        pods::wait_exited(&mut e.rt, &id).await;
        ids.push(id);
        tags.push(tag);
        let (cfg, tag) = e.container("created", "exit 0");
        ids.push(
            pods::create(&mut e.rt, pod, &cfg, pod_cfg)
                .await
                .expect("create"),
        );
        tags.push(tag);
    }

    // The shared pod's infra process: PID 1 of the containers' PID namespace.
    let pidns = host::ns_link(seen[0].init.pid, "pid").expect("pid ns");
    assert_eq!(
        host::ns_link(seen[1].init.pid, "pid").as_deref(),
        Some(pidns.as_str()),
        "containers of the shared pod share a PID namespace"
    );
    let infra: Vec<Proc> = host::pid_ns_members(&pidns)
        .into_iter()
        .filter(|p| host::pid_in_ns(p.pid) == Some(1))
        .collect();
    assert_eq!(infra.len(), 1, "one PID 1 in the pod's PID namespace");
    assert!(
        !seen.iter().any(|s| s.init == infra[0]),
        "PID 1 of a shared PID namespace is the infra process, not a container"
    );
    assert!(
        host::cmdline(infra[0].pid).ends_with("pause"),
        "{}",
        host::cmdline(infra[0].pid)
    );
    let infra_cgroups = host::own_cgroup_dirs(infra[0].pid);
    assert_ne!(
        host::ns_link(seen[2].init.pid, "pid").as_deref(),
        Some(pidns.as_str()),
        "the other pod's containers have their own PID namespaces"
    );

    let monitors = host::processes_mentioning(&state);
    assert!(
        monitors.len() >= seen.len(),
        "one monitor per running container at least: {monitors:?}"
    );
    let nsfs_before: Vec<_> = host::mounts_under(e.d.dir())
        .into_iter()
        .filter(|m| m.fstype == "nsfs")
        .collect();
    assert!(
        !nsfs_before.is_empty(),
        "pods pin their namespaces with nsfs mounts"
    );

    e.remove_all_pods().await;

    let mounts = host::mounts_under(e.d.dir());
    assert!(mounts.is_empty(), "mounts left: {mounts:#?}");
    let nsfs: Vec<_> = host::mounts()
        .into_iter()
        .filter(|m| m.fstype == "nsfs" && m.mount_point.starts_with(e.d.dir()))
        .collect();
    assert!(nsfs.is_empty(), "nsfs mounts left: {nsfs:?}");
    let procs = host::processes_mentioning(&state);
    assert!(procs.is_empty(), "processes left: {procs:?}");
    assert!(!infra[0].alive(), "the infra process is gone");
    for tag in &tags {
        let left = host::tagged(tag);
        assert!(left.is_empty(), "{tag}: processes left: {left:?}");
    }
    for s in &seen {
        assert!(!s.init.alive(), "{}: init left", s.id);
        for d in &s.cgroups {
            assert!(!d.exists(), "{}: cgroup left: {}", s.id, d.display());
        }
    }
    for d in &infra_cgroups {
        assert!(!d.exists(), "infra cgroup left: {}", d.display());
    }
    for id in &ids {
        let left = host::paths_containing(e.d.dir(), id);
        assert!(left.is_empty(), "{id}: files left: {left:?}");
        for base in host::mounts()
            .iter()
            .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
            .map(|m| m.mount_point.clone())
        {
            let left = host::paths_containing(&base.join("berth"), id);
            assert!(left.is_empty(), "{id}: cgroup left: {left:?}");
        }
    }
}

/// RemoveContainer returns once the record is gone; the runtime's state and
/// the writable layer go in the background. A daemon killed right after the
/// answer leaves that work to the start-up sweep: after the restart nothing
/// of the container is mounted, on disk or in the runtime's state.
#[tokio::test]
async fn a_removed_container_leaves_nothing_even_if_berthd_dies_at_once() {
    let mut e = Env::new().await;
    let mut pod_cfg = e.pod_config("clean-kill");
    pods::set_pid_mode(&mut pod_cfg, NamespaceMode::Container);
    let pod = e.pod(&pod_cfg).await;
    let mut ids = Vec::new();
    for name in ["x", "y", "z"] {
        let (cfg, _tag) = e.container(name, "exec sleep 1000");
        let id = e.run(&pod, &cfg, &pod_cfg).await;
        pods::wait_state(&mut e.rt, &id, ContainerState::ContainerRunning).await;
        ids.push(id);
    }
    let state = e.d.state();
    let rootfs = |id: &str| state.join("containers").join(id).join("rootfs");
    for id in &ids {
        assert!(
            host::mounts().iter().any(|m| m.mount_point == rootfs(id)),
            "{id}: the rootfs is mounted while the container exists"
        );
    }
    for id in &ids {
        pods::remove(&mut e.rt, id).await.expect("RemoveContainer");
    }
    e.d.kill9();
    e.d.restart().await;
    e.rt = e.d.runtime_client().await;

    let listed = pods::list_containers(&mut e.rt, None).await;
    assert!(
        listed.is_empty(),
        "removed containers listed: {listed:?}\n{}",
        e.log_tail()
    );
    for id in &ids {
        assert!(
            !host::mounts().iter().any(|m| m.mount_point == rootfs(id)),
            "{id}: rootfs still mounted"
        );
        for dir in [
            e.d.state().join("containers").join(id),
            e.d.root().join("containers").join(id),
            e.d.state().join("runtime/crun").join(id),
        ] {
            assert!(!dir.exists(), "{id}: {} left", dir.display());
        }
    }
    e.remove_all_pods().await;
    let left = host::mounts_under(e.d.dir());
    assert!(left.is_empty(), "mounts left: {left:?}");
}
