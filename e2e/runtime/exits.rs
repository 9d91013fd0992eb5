//! Exit codes, reasons and timestamps in ContainerStatus; ListContainers
//! filtered by state.

use std::collections::BTreeSet;

use k8s_cri::v1::ContainerState;

use super::Env;
use crate::support::pods::{self, state_filter};

fn ids(list: &[k8s_cri::v1::Container]) -> BTreeSet<String> {
    list.iter().map(|c| c.id.clone()).collect()
}

#[tokio::test]
async fn exit_codes_reasons_timestamps_and_state_filter() {
    let mut e = Env::new().await;
    let pod_cfg = e.pod_config("exits");
    let pod = e.pod(&pod_cfg).await;

    // Several quick exits of each kind: a container that ends before
    // StartContainer returns is the case where timestamps go wrong.
    const EACH: usize = 3;
    let mut quick = Vec::new();
    for i in 0..EACH {
        for (kind, code) in [("ok", 0), ("bad", 3)] {
            let (cfg, _) = e.container(&format!("{kind}-{i}"), &format!("exit {code}"));
            quick.push((e.run(&pod, &cfg, &pod_cfg).await, code));
        }
    }
    let (long_cfg, _) = e.container("long", "exec sleep 1000");
    let (idle_cfg, _) = e.container("idle", "exit 0");
    let long = e.run(&pod, &long_cfg, &pod_cfg).await;
    let idle = pods::create(&mut e.rt, &pod, &idle_cfg, &pod_cfg)
        .await
        .expect("CreateContainer idle");

    let created = pods::status_ok(&mut e.rt, &idle).await;
    assert_eq!(created.state, ContainerState::ContainerCreated as i32);
    assert!(created.created_at > 0, "{created:?}");
    assert_eq!(created.started_at, 0, "not started: {created:?}");
    assert_eq!(created.finished_at, 0, "not finished: {created:?}");

    for (id, code) in &quick {
        let st = pods::wait_exited(&mut e.rt, id).await;
        let reason = if *code == 0 { "Completed" } else { "Error" };
        assert_eq!(
            (st.exit_code, st.reason.as_str()),
            (*code, reason),
            "{st:?}"
        );
        assert!(st.created_at > 0, "{st:?}");
        assert!(
            st.started_at > st.created_at,
            "started_at > created_at: {st:?}"
        );
        assert!(
            st.finished_at >= st.started_at,
            "finished_at >= started_at: {st:?}\n{}",
            e.log_tail()
        );
        let name = &st.metadata.as_ref().expect("metadata").name;
        assert!(name.starts_with(if *code == 0 { "ok-" } else { "bad-" }));
        assert!(!st.image_ref.is_empty(), "{st:?}");
    }

    let running = pods::wait_state(&mut e.rt, &long, ContainerState::ContainerRunning).await;
    assert!(running.started_at > running.created_at, "{running:?}");
    assert_eq!(running.finished_at, 0, "still running: {running:?}");
    assert_eq!(running.exit_code, 0, "{running:?}");

    let exited =
        pods::list_containers(&mut e.rt, state_filter(ContainerState::ContainerExited)).await;
    let quick_ids: BTreeSet<String> = quick.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids(&exited), quick_ids);
    assert!(exited
        .iter()
        .all(|c| c.state == ContainerState::ContainerExited as i32));
    let run_list =
        pods::list_containers(&mut e.rt, state_filter(ContainerState::ContainerRunning)).await;
    assert_eq!(ids(&run_list), BTreeSet::from([long.clone()]));
    let created_list =
        pods::list_containers(&mut e.rt, state_filter(ContainerState::ContainerCreated)).await;
    assert_eq!(ids(&created_list), BTreeSet::from([idle.clone()]));
    let all = pods::list_containers(&mut e.rt, None).await;
    let mut want = quick_ids;
    want.extend([long, idle]);
    assert_eq!(ids(&all), want);
    assert!(all.iter().all(|c| c.pod_sandbox_id == pod));

    e.remove_all_pods().await;
}
