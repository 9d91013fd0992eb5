//! StopContainer: the stop signal (SIGTERM for an image without StopSignal),
//! SIGKILL after the timeout. Checked by outcome: 143 = ended by SIGTERM
//! (or `exit 143` from a TERM trap), 137 = SIGKILL.

use k8s_cri::v1::{ContainerState, NamespaceMode};

use super::Env;
use crate::support::host;
use crate::support::pods;

/// Long enough that a container that honours SIGTERM never reaches it.
const GENEROUS: i64 = 60;

#[tokio::test]
async fn stop_escalates_to_sigkill_only_when_sigterm_is_ignored() {
    let mut e = Env::new().await;
    let pod_cfg = e.pod_config("stop");
    let pod = e.pod(&pod_cfg).await;

    // (name, script, stop timeout, expected exit code)
    let cases = [
        ("ignores-term", "trap '' TERM; sleep 1000", 2, 137),
        (
            "traps-term",
            "trap 'exit 143' TERM; sleep 1000 & wait",
            GENEROUS,
            143,
        ),
        // Not PID 1 (the pod's infra process is), so SIGTERM's default action kills it.
        ("plain-sleep", "exec sleep 1000", GENEROUS, 143),
    ];
    let mut tags = Vec::new();
    for (name, script, timeout, want) in cases {
        let (cfg, tag) = e.container(name, script);
        let id = e.run(&pod, &cfg, &pod_cfg).await;
        pods::wait_state(&mut e.rt, &id, ContainerState::ContainerRunning).await;
        // The trap must be set before the signal comes: wait for the sleep.
        wait_for_sleep(&tag).await;
        pods::stop(&mut e.rt, &id, timeout)
            .await
            .unwrap_or_else(|err| panic!("StopContainer {name}: {err:?}\n{}", e.log_tail()));
        let st = pods::status_ok(&mut e.rt, &id).await;
        assert_eq!(
            st.state,
            ContainerState::ContainerExited as i32,
            "{name}: exited once StopContainer returns: {st:?}"
        );
        assert_eq!(st.exit_code, want, "{name}: {st:?}");
        assert_eq!(st.reason, "Error", "{name}: {st:?}");
        // Stopping again is a no-op that succeeds and changes nothing.
        pods::stop(&mut e.rt, &id, 2).await.expect("second stop");
        assert_eq!(pods::status_ok(&mut e.rt, &id).await.exit_code, want);
        tags.push(tag);
    }

    // In a pod where each container has its own PID namespace, `exec sleep`
    // is PID 1 there: the kernel drops SIGTERM it has no handler for.
    let mut own_cfg = e.pod_config("stop-own-pidns");
    pods::set_pid_mode(&mut own_cfg, NamespaceMode::Container);
    let own = e.pod(&own_cfg).await;
    let (cfg, tag) = e.container("pid-one", "exec sleep 1000");
    let id = e.run(&own, &cfg, &own_cfg).await;
    wait_for_sleep(&tag).await;
    pods::stop(&mut e.rt, &id, 2)
        .await
        .unwrap_or_else(|err| panic!("StopContainer pid-one: {err:?}\n{}", e.log_tail()));
    let st = pods::status_ok(&mut e.rt, &id).await;
    assert_eq!(st.exit_code, 137, "PID 1 ignores SIGTERM: {st:?}");
    tags.push(tag);

    e.remove_all_pods().await;
    for tag in tags {
        let left = host::tagged(&tag);
        assert!(left.is_empty(), "{tag}: processes left: {left:?}");
    }
}

async fn wait_for_sleep(tag: &str) {
    crate::support::wait_until(
        &format!("`sleep 1000` of {tag} on the host"),
        pods::STATE_LIMIT,
        || async move {
            host::tagged(tag)
                .iter()
                .any(|p| host::cmdline(p.pid) == "sleep 1000")
                .then_some(())
        },
    )
    .await;
}
