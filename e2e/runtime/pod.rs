//! Pod sandboxes: hostname, shared network and PID namespaces, status, and
//! the idempotence of stop and remove.

use k8s_cri::v1::{ContainerState, PodSandboxState};
use tonic::Code;

use super::Env;
use crate::support::host;
use crate::support::pods::{self, pod_filter};

#[tokio::test]
async fn pod_hostname_namespaces_status_and_idempotent_stop_and_remove() {
    let mut e = Env::new().await;
    let mut pod_cfg = e.pod_config("pod-a");
    pod_cfg.hostname = "berth-host-a".into();
    let pod = e.pod(&pod_cfg).await;

    let st = pods::pod_status(&mut e.rt, &pod).await.expect("status");
    assert_eq!(st.id, pod);
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32, "{st:?}");
    assert_eq!(st.metadata, pod_cfg.metadata, "{st:?}");
    assert_eq!(st.labels, pod_cfg.labels);
    assert!(st.created_at > 0);

    let (one_cfg, one_tag) = e.container("one", "exec sleep 4242");
    let (two_cfg, _) = e.container("two", "exec sleep 1000");
    let one = e.run(&pod, &one_cfg, &pod_cfg).await;
    let two = e.run(&pod, &two_cfg, &pod_cfg).await;
    for id in [&one, &two] {
        pods::wait_state(&mut e.rt, id, ContainerState::ContainerRunning).await;
    }

    // The hostname the pod asked for.
    assert_eq!(
        pods::sh(&mut e.rt, &one, "hostname").await,
        "berth-host-a\n"
    );
    assert_eq!(
        pods::sh(&mut e.rt, &two, "cat /etc/hostname").await.trim(),
        "berth-host-a"
    );

    // One network namespace for the pod, not the host's.
    let net_one = pods::sh(&mut e.rt, &one, "readlink /proc/self/ns/net").await;
    let net_two = pods::sh(&mut e.rt, &two, "readlink /proc/self/ns/net").await;
    assert!(net_one.starts_with("net:["), "{net_one:?}");
    assert_eq!(net_one, net_two, "containers of a pod share the netns");
    let host_net = host::ns_link(std::process::id() as i32, "net").expect("own netns");
    assert_ne!(net_one.trim(), host_net, "the pod has its own netns");
    let init = host::container_init(&one_tag);
    assert_eq!(
        host::ns_link(init.pid, "net").as_deref(),
        Some(net_one.trim()),
        "the host sees the same netns for the container's init"
    );
    // Loopback only, and up.
    let links = pods::sh(&mut e.rt, &one, "ls /sys/class/net").await;
    assert_eq!(links.split_whitespace().collect::<Vec<_>>(), vec!["lo"]);

    // Default PID mode POD: each sees the other's processes.
    let ps_two = pods::sh(&mut e.rt, &two, "ps").await;
    assert!(ps_two.contains("sleep 4242"), "two sees one: {ps_two}");
    let ps_one = pods::sh(&mut e.rt, &one, "ps").await;
    assert!(ps_one.contains("sleep 1000"), "one sees two: {ps_one}");

    // Stop: NOTREADY, containers exited; twice is fine.
    pods::stop_pod(&mut e.rt, &pod).await.expect("stop pod");
    let st = pods::pod_status(&mut e.rt, &pod).await.expect("status");
    assert_eq!(st.state, PodSandboxState::SandboxNotready as i32, "{st:?}");
    for id in [&one, &two] {
        let c = pods::status_ok(&mut e.rt, id).await;
        assert_eq!(c.state, ContainerState::ContainerExited as i32, "{c:?}");
    }
    pods::stop_pod(&mut e.rt, &pod)
        .await
        .expect("stop pod again");
    let st = pods::pod_status(&mut e.rt, &pod).await.expect("status");
    assert_eq!(st.state, PodSandboxState::SandboxNotready as i32, "{st:?}");
    let (late, _) = e.container("late", "true");
    let err = pods::create(&mut e.rt, &pod, &late, &pod_cfg)
        .await
        .expect_err("no new container in a stopped pod");
    assert_ne!(err.code(), Code::Ok);

    // Remove: gone with its containers; twice is fine.
    pods::remove_pod(&mut e.rt, &pod).await.expect("remove pod");
    let err = pods::pod_status(&mut e.rt, &pod)
        .await
        .expect_err("status of a removed pod");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(pods::list_containers(&mut e.rt, pod_filter(&pod))
        .await
        .is_empty());
    if let Err(err) = pods::remove_pod(&mut e.rt, &pod).await {
        panic!(
            "RemovePodSandbox of a removed pod must succeed (CRI: idempotent): {err:?}\n{}",
            e.log_tail()
        );
    }
    // Stopping a removed pod: fine, or NOT_FOUND as containerd answers.
    if let Err(err) = pods::stop_pod(&mut e.rt, &pod).await {
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }

    assert!(pods::list_pods(&mut e.rt).await.is_empty());
    e.remove_all_pods().await;
}

#[tokio::test]
async fn remove_pod_with_a_running_container_removes_the_container() {
    let mut e = Env::new().await;
    let b_cfg = e.pod_config("pod-b");
    let b = e.pod(&b_cfg).await;
    let (run_cfg, run_tag) = e.container("runner", "exec sleep 1000");
    let runner = e.run(&b, &run_cfg, &b_cfg).await;
    pods::wait_state(&mut e.rt, &runner, ContainerState::ContainerRunning).await;
    let runner_init = host::container_init(&run_tag);
    pods::remove_pod(&mut e.rt, &b)
        .await
        .unwrap_or_else(|err| panic!("remove pod b: {err:?}\n{}", e.log_tail()));
    let err = pods::status(&mut e.rt, &runner)
        .await
        .expect_err("the container went with its pod");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(pods::list_containers(&mut e.rt, None).await.is_empty());
    assert!(pods::list_pods(&mut e.rt).await.is_empty());
    assert!(!runner_init.alive(), "the container's process is gone");
    assert!(host::tagged(&run_tag).is_empty());
}
