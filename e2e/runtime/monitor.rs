//! A container whose monitor dies: SIGKILL of the monitor leaves nothing
//! holding the container's stdio or waiting for its exit, so berthd kills
//! the container and reports it exited with the monitor's fate as reason,
//! counts it in `berth_monitor_events_total`, and removes it cleanly.

use k8s_cri::v1::ContainerState;

use super::metrics::{metrics_addr, sample, scrape};
use super::Env;
use crate::support::host;
use crate::support::{pods, wait_until};

#[tokio::test]
async fn a_monitor_killed_with_sigkill_is_reported_and_cleaned_up() {
    let mut e = Env::new().await;
    let addr = metrics_addr(&super::strip_ansi(&e.d.log()));
    let pod_cfg = e.pod_config("orphan");
    let pod = e.pod(&pod_cfg).await;
    let (cfg, tag) = e.container("sleeper", "exec sleep 1000");
    let id = e.run(&pod, &cfg, &pod_cfg).await;
    pods::wait_state(&mut e.rt, &id, ContainerState::ContainerRunning).await;
    let init = host::container_init(&tag);
    let monitors: Vec<i32> = host::processes_mentioning(&format!("{id}/monitor.pb"))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(monitors.len(), 1, "one monitor for {id}: {monitors:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitors[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the monitor");

    let st = pods::wait_exited(&mut e.rt, &id).await;
    assert_eq!(st.reason, "MonitorDied", "{st:?}");
    assert!(st.message.contains("SIGKILL"), "{st:?}");
    assert_eq!(st.exit_code, 137, "{st:?}");
    wait_until(
        "the orphaned container to be gone",
        pods::STATE_LIMIT,
        || {
            let alive = init.alive();
            async move { (!alive).then_some(()) }
        },
    )
    .await;
    let text = scrape(&addr).await;
    assert_eq!(
        sample(&text, "berth_monitor_events_total{event=\"killed\"}"),
        Some(1.0),
        "{text}"
    );
    e.remove_all_pods().await;
    assert!(host::processes_mentioning(&id).is_empty());
}
