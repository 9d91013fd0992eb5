//! The OCI runtime failing half-way: a handler whose binary is a wrapper
//! around the real crun that does the work of one subcommand and then
//! reports failure (as a runtime killed or out of memory after acting
//! would). berthd must answer with the runtime's error and leave the truth
//! behind: no container listed that is not there, no process running that
//! is recorded exited, nothing left once it is removed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1::{ContainerState, RunPodSandboxRequest};

use super::Env;
use crate::support::{host, pods, short_tempdir};

/// A wrapper around crun: for the subcommand named in `<dir>/mode`, crun
/// runs it for real, then the wrapper says it failed.
fn wrapper(dir: &Path) -> PathBuf {
    let path = dir.join("halfway-crun");
    let script = format!(
        "#!/bin/sh\n\
         mode=$(cat {dir}/mode 2>/dev/null)\n\
         sub=\n\
         for a in \"$@\"; do case \"$a\" in create|start|kill|delete) sub=$a; break;; esac; done\n\
         if [ -n \"$sub\" ] && [ \"$sub\" = \"$mode\" ]; then\n\
         \x20 /usr/bin/crun \"$@\"\n\
         \x20 echo \"halfway: crun $sub ran, then the runtime failed\" >&2\n\
         \x20 exit 1\n\
         fi\n\
         exec /usr/bin/crun \"$@\"\n",
        dir = dir.display()
    );
    std::fs::write(&path, script).expect("write wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn set_mode(dir: &Path, mode: &str) {
    std::fs::write(dir.join("mode"), mode).expect("write mode");
}

/// `<handler>/<container>` entries under the daemon's runtime state dir.
fn runtime_entries(root: &Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for h in std::fs::read_dir(root).into_iter().flatten().flatten() {
        for c in std::fs::read_dir(h.path()).into_iter().flatten().flatten() {
            out.insert(format!(
                "{}/{}",
                h.file_name().to_string_lossy(),
                c.file_name().to_string_lossy()
            ));
        }
    }
    out
}

/// Processes of the container tagged `tag` still alive, after up to `wait`.
async fn alive_after(tag: &str, wait: Duration) -> usize {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let n = host::tagged(tag).len();
        if n == 0 || std::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn runtime_failing_half_way_leaves_a_true_state() {
    let wdir = short_tempdir("hw");
    let bin = wrapper(wdir.path());
    set_mode(wdir.path(), "");
    let yaml = format!(
        "runtime:\n  handlers:\n    crun:\n      path: /usr/bin/crun\n    halfway:\n      path: {}\n",
        bin.display()
    );
    let mut e = Env::with(&yaml, "halfway").await;
    let pod_cfg = e.pod_config("halfway");
    let pod =
        e.rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_cfg.clone()),
            runtime_handler: "halfway".into(),
        })
        .await
        .unwrap_or_else(|s| panic!("RunPodSandbox(halfway): {s:?}\n{}", e.log_tail()))
        .into_inner()
        .pod_sandbox_id;

    // create: crun made the container, then "failed". CreateContainer fails
    // with the runtime's words, and nothing of the container stays.
    let runtime_root = e.d.state().join("runtime");
    let before = runtime_entries(&runtime_root);
    set_mode(wdir.path(), "create");
    let (cfg, tag) = e.container("made-then-failed", "sleep 1000");
    let err = pods::create(&mut e.rt, &pod, &cfg, &pod_cfg)
        .await
        .expect_err("a failing create");
    assert!(
        err.message().contains("halfway"),
        "the runtime's error is passed on: {err:?}"
    );
    let listed = pods::list_containers(&mut e.rt, pods::pod_filter(&pod)).await;
    assert!(listed.is_empty(), "nothing half-made is listed: {listed:?}");
    assert_eq!(
        alive_after(&tag, Duration::from_secs(10)).await,
        0,
        "the container crun created is not left running"
    );
    assert_eq!(
        runtime_entries(&runtime_root),
        before,
        "no runtime state is left of the failed create"
    );

    // start: the process really started, then the runtime "failed". The
    // container is recorded exited with the start error, and no process of
    // it runs behind that record.
    set_mode(wdir.path(), "");
    let (cfg, tag) = e.container("started-then-failed", "sleep 1000");
    let id = pods::create(&mut e.rt, &pod, &cfg, &pod_cfg)
        .await
        .expect("create works again");
    set_mode(wdir.path(), "start");
    let err = pods::start(&mut e.rt, &id)
        .await
        .expect_err("a failing start");
    assert!(err.message().contains("halfway"), "{err:?}");
    let st = pods::status_ok(&mut e.rt, &id).await;
    assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:?}");
    assert_eq!(st.reason, "StartError", "{st:?}");
    assert_eq!(
        alive_after(&tag, Duration::from_secs(10)).await,
        0,
        "a container recorded exited must not run"
    );
    set_mode(wdir.path(), "");
    pods::remove(&mut e.rt, &id).await.expect("remove");

    // kill: the signal was delivered, then the runtime "failed". The stop
    // still ends with the container exited.
    let (cfg, tag) = e.container("killed-then-failed", "sleep 1000");
    let id = e.run(&pod, &cfg, &pod_cfg).await;
    set_mode(wdir.path(), "kill");
    let _ = pods::stop(&mut e.rt, &id, 1).await;
    let st = pods::wait_exited(&mut e.rt, &id).await;
    assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:?}");
    assert_eq!(alive_after(&tag, Duration::from_secs(10)).await, 0);

    // delete: the runtime removed its state, then "failed". The removal
    // either succeeds or can be repeated until it does; afterwards nothing
    // is listed and no runtime state is left.
    set_mode(wdir.path(), "delete");
    let first = pods::remove(&mut e.rt, &id).await;
    if first.is_err() {
        set_mode(wdir.path(), "");
        pods::remove(&mut e.rt, &id)
            .await
            .unwrap_or_else(|s| panic!("a repeated RemoveContainer: {s:?}"));
    }
    let st = pods::status(&mut e.rt, &id).await;
    assert_eq!(
        st.map_err(|s| s.code()).err(),
        Some(tonic::Code::NotFound),
        "removed"
    );
    // The runtime's part of a removal finishes in the background.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let states = loop {
        let states = host::paths_containing(&runtime_root, &id);
        if states.is_empty() || std::time::Instant::now() >= deadline {
            break states;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    set_mode(wdir.path(), "");
    assert!(
        states.is_empty(),
        "runtime state left: {states:?}; first removal: {first:?}\n{}",
        e.log_tail()
    );

    // The handler still works for an ordinary container.
    let (cfg, _) = e.container("after-all", "echo fine");
    let id = e.run(&pod, &cfg, &pod_cfg).await;
    let st = pods::wait_exited(&mut e.rt, &id).await;
    assert_eq!(st.exit_code, 0, "{st:?}");
    e.remove_all_pods().await;
}
