//! ExecSync: output, exit code, and a timeout that kills the command.

use std::time::Duration;

use tonic::Code;

use super::Env;
use crate::support::pods;
use crate::support::{host, wait_until};

#[tokio::test]
async fn exec_sync_output_exit_code_and_timeout() {
    let mut e = Env::new().await;
    let pod_cfg = e.pod_config("exec");
    let pod = e.pod(&pod_cfg).await;
    let (cfg, tag) = e.container("target", "exec sleep 1000");
    let id = e.run(&pod, &cfg, &pod_cfg).await;
    pods::wait_state(
        &mut e.rt,
        &id,
        k8s_cri::v1::ContainerState::ContainerRunning,
    )
    .await;

    let r = pods::exec(
        &mut e.rt,
        &id,
        &["sh", "-c", "echo to-out; echo to-err >&2; exit 5"],
        0,
    )
    .await
    .expect("ExecSync");
    assert_eq!(String::from_utf8_lossy(&r.stdout), "to-out\n");
    assert_eq!(String::from_utf8_lossy(&r.stderr), "to-err\n");
    assert_eq!(r.exit_code, 5);

    let r = pods::exec(&mut e.rt, &id, &["cat", "/etc/hostname"], 10)
        .await
        .expect("ExecSync with a timeout that is not reached");
    assert_eq!(r.exit_code, 0, "{r:?}");
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "exec");

    // A command that outlives its timeout: DEADLINE_EXCEEDED, and it is gone.
    let err = pods::exec(&mut e.rt, &id, &["sleep", "17"], 1)
        .await
        .expect_err("sleep 17 with timeout 1 must fail");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    let sleeping = |ps: &str| ps.lines().any(|l| l.contains("sleep 17"));
    let rt = e.rt.clone();
    wait_until(
        "the timed-out exec to be gone from the container",
        Duration::from_secs(10),
        || {
            let (mut rt, id) = (rt.clone(), id.clone());
            async move {
                let ps = pods::sh(&mut rt, &id, "ps").await;
                // A zombie has no args; any live `sleep 17` shows them.
                (!sleeping(&ps)).then_some(())
            }
        },
    )
    .await;
    // On the host too: the only live tagged processes are the container's own.
    wait_until(
        "no tagged `sleep 17` on the host",
        Duration::from_secs(10),
        || {
            let tag = tag.clone();
            async move {
                let left: Vec<_> = host::tagged(&tag)
                    .into_iter()
                    .filter(|p| host::cmdline(p.pid) == "sleep 17")
                    .collect();
                left.is_empty().then_some(())
            }
        },
    )
    .await;
    // The container itself is untouched.
    let st = pods::status_ok(&mut e.rt, &id).await;
    assert_eq!(
        st.state,
        k8s_cri::v1::ContainerState::ContainerRunning as i32,
        "{st:?}"
    );
    assert_eq!(
        pods::sh(&mut e.rt, &id, "echo still-here").await,
        "still-here\n"
    );

    // ExecSync into a container that is not running.
    let (done_cfg, _) = e.container("done", "exit 0");
    let done = e.run(&pod, &done_cfg, &pod_cfg).await;
    pods::wait_exited(&mut e.rt, &done).await;
    let err = pods::exec(&mut e.rt, &done, &["true"], 0)
        .await
        .expect_err("exec in an exited container");
    assert_ne!(err.code(), Code::Ok);

    e.remove_all_pods().await;
}
