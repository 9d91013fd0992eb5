//! Containers outlive the daemon: after kill -9 and a restart every pod and
//! container is listed with its true state.

use std::collections::BTreeMap;

use k8s_cri::v1::{ContainerState, Mount, PodSandboxState};

use super::Env;
use crate::support::host::{self, Proc};
use crate::support::pods;
use crate::support::{short_tempdir, wait_until};

const PODS: usize = 5;

#[tokio::test]
async fn containers_survive_kill_9_and_restart_with_true_states() {
    let mut e = Env::new().await;
    // The short container waits for this file, which appears only once the
    // daemon is dead: it exits while no daemon runs, deterministically.
    let go = short_tempdir("bg");

    let mut pod_ids = Vec::new();
    let mut running: BTreeMap<String, (String, Proc, String)> = BTreeMap::new();
    for i in 0..PODS {
        let pod_cfg = e.pod_config(&format!("survivor-{i}"));
        let pod = e.pod(&pod_cfg).await;
        let (cfg, tag) = e.container("sleeper", "exec sleep 1000");
        let id = e.run(&pod, &cfg, &pod_cfg).await;
        pods::wait_state(&mut e.rt, &id, ContainerState::ContainerRunning).await;
        let marker = format!("marker-of-pod-{i}");
        pods::sh(&mut e.rt, &id, &format!("echo {marker} > /marker")).await;
        let init = host::container_init(&tag);
        running.insert(id, (tag, init, marker));
        pod_ids.push((pod, pod_cfg));
    }

    let (pod0, pod0_cfg) = pod_ids[0].clone();
    let (mut short_cfg, short_tag) =
        e.container("short", "while [ ! -e /go/now ]; do sleep 1; done; exit 7");
    short_cfg.mounts.push(Mount {
        container_path: "/go".into(),
        host_path: go.path().display().to_string(),
        readonly: true,
        ..Default::default()
    });
    let short = e.run(&pod0, &short_cfg, &pod0_cfg).await;
    pods::wait_state(&mut e.rt, &short, ContainerState::ContainerRunning).await;
    let short_init = host::container_init(&short_tag);

    e.d.kill9();
    std::fs::write(go.path().join("now"), b"go").expect("write the go file");
    wait_until(
        "the short container to exit while berthd is down",
        pods::STATE_LIMIT,
        || async move { (!short_init.alive()).then_some(()) },
    )
    .await;
    for (id, (_, init, _)) in &running {
        assert!(init.alive(), "{id} kept running without the daemon");
    }

    e.d.restart().await;
    e.rt = e.d.runtime_client().await;

    let listed = pods::list_pods(&mut e.rt).await;
    assert_eq!(listed.len(), PODS, "{listed:?}");
    for (pod, _) in &pod_ids {
        let st = pods::pod_status(&mut e.rt, pod)
            .await
            .unwrap_or_else(|err| panic!("status of pod {pod}: {err:?}"));
        assert_eq!(st.state, PodSandboxState::SandboxReady as i32, "{st:?}");
    }
    let all = pods::list_containers(&mut e.rt, None).await;
    assert_eq!(all.len(), PODS + 1, "{all:?}");

    for (id, (tag, init, marker)) in &running {
        let st = pods::status_ok(&mut e.rt, id).await;
        assert_eq!(
            st.state,
            ContainerState::ContainerRunning as i32,
            "{id} is still running: {st:?}\n{}",
            e.log_tail()
        );
        assert_eq!(
            host::container_init(tag),
            *init,
            "{id}: the very same process"
        );
        assert_eq!(
            pods::sh(&mut e.rt, id, "cat /marker").await.trim(),
            marker,
            "{id}: written before the restart"
        );
    }
    let st = pods::status_ok(&mut e.rt, &short).await;
    assert_eq!(
        st.state,
        ContainerState::ContainerExited as i32,
        "short: {st:?}"
    );
    assert_eq!(st.exit_code, 7, "short: {st:?}");
    assert_eq!(st.reason, "Error", "short: {st:?}");
    assert!(st.finished_at >= st.started_at, "{st:?}");
    let exited = pods::list_containers(
        &mut e.rt,
        pods::state_filter(ContainerState::ContainerExited),
    )
    .await;
    assert_eq!(
        exited.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        vec![short.as_str()]
    );

    // A recovered container still stops by its monitor's account.
    let (first, (tag, _, _)) = running.iter().next().expect("a running container");
    pods::stop(&mut e.rt, first, 30)
        .await
        .expect("stop after restart");
    let st = pods::status_ok(&mut e.rt, first).await;
    assert_eq!(st.exit_code, 143, "SIGTERM ended it: {st:?}");
    assert!(host::tagged(tag).is_empty());

    e.remove_all_pods().await;
    for (id, (tag, init, _)) in &running {
        assert!(!init.alive(), "{id}: process left");
        assert!(host::tagged(tag).is_empty(), "{id}: processes left");
    }
    let left = host::mounts_under(e.d.dir());
    assert!(left.is_empty(), "mounts left: {left:?}");
}
