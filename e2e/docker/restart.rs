//! Docker containers outlive the daemon: after `kill -9` and a restart the
//! same processes run, `docker ps`/`logs`/`wait` see them, and an
//! `AutoRemove` container that exits afterwards is still removed.

use std::time::Duration;

use crate::support::docker::DockerEnv;
use crate::support::wait_until;

#[tokio::test]
async fn containers_survive_a_daemon_kill_and_restart() {
    let mut e = DockerEnv::new("").await;
    e.docker(&[
        "run",
        "-d",
        "--name",
        "keeper",
        &e.busybox,
        "sh",
        "-c",
        "echo before; sleep 300",
    ])
    .ok();
    e.docker(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "shortlived",
        &e.busybox,
        "sh",
        "-c",
        "while [ ! -f /go ]; do sleep 0.1; done; exit 6",
    ])
    .ok();
    let pid = |e: &DockerEnv, n: &str| {
        e.docker(&["inspect", "--format", "{{.State.Pid}}", n])
            .ok()
            .out()
            .to_string()
    };
    let (keeper, short) = (pid(&e, "keeper"), pid(&e, "shortlived"));
    let merged = e
        .docker(&[
            "inspect",
            "--format",
            "{{.GraphDriver.Data.MergedDir}}",
            "shortlived",
        ])
        .ok()
        .out()
        .to_string();
    e.d.kill9();
    assert!(std::path::Path::new(&format!("/proc/{keeper}")).exists());
    e.d.restart().await;
    assert_eq!(pid(&e, "keeper"), keeper, "the same process runs on");
    assert_eq!(pid(&e, "shortlived"), short);
    let ps = e.docker(&["ps", "--format", "{{.Names}} {{.State}}"]).ok();
    let mut lines: Vec<&str> = ps.out().lines().collect();
    lines.sort();
    assert_eq!(lines, ["keeper running", "shortlived running"]);
    assert_eq!(e.docker(&["logs", "keeper"]).ok().stdout, "before\n");
    // The --rm container exits after the restart: it is still removed,
    // and `docker wait` on the other one still answers.
    std::fs::write(std::path::Path::new(&merged).join("go"), "").unwrap();
    wait_until("the auto-removal", Duration::from_secs(30), || {
        let gone = e.docker(&["ps", "-a", "--format", "{{.Names}}"]).out() == "keeper";
        async move { gone.then_some(()) }
    })
    .await;
    e.docker(&["kill", "keeper"]).ok();
    assert_eq!(e.docker(&["wait", "keeper"]).ok().out(), "137");
    e.docker(&["rm", "keeper"]).ok();
}

/// `RestartCount` counts the restarts by the restart policy (kept in the
/// container's record, so a daemon restart keeps it); `on-failure:2` stops
/// after two, and a start by the user sets the count back to 0, as Docker.
#[tokio::test]
async fn restart_count_is_recorded_and_bounds_on_failure() {
    let mut e = DockerEnv::new("").await;
    e.docker(&[
        "run",
        "-d",
        "--name",
        "counted",
        "--restart",
        "on-failure:2",
        &e.busybox,
        "sh",
        "-c",
        "echo attempt; exit 3",
    ])
    .ok();
    assert_eq!(settled(&e, 3).await, 3, "one run and two restarts");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        counted_state(&e),
        ("exited 3 2".to_string(), 3),
        "no third restart"
    );
    // The count is in the record: a daemon restart keeps it.
    e.d.restart().await;
    assert_eq!(counted_state(&e), ("exited 3 2".to_string(), 3));
    // The user's start resets it: two more policy restarts follow.
    e.docker(&["start", "counted"]).ok();
    assert_eq!(settled(&e, 6).await, 6);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(counted_state(&e), ("exited 3 2".to_string(), 6));
    e.docker(&["rm", "counted"]).ok();
}

/// `counted`'s "status exit-code restart-count" and how many runs it logged.
fn counted_state(e: &DockerEnv) -> (String, usize) {
    let st = e.docker(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}",
        "counted",
    ]);
    let runs = e.docker(&["logs", "counted"]).stdout.lines().count();
    (st.out().to_string(), runs)
}

/// Waits until `counted` is exited after two policy restarts with at least
/// `want_runs` runs logged; returns the runs.
async fn settled(e: &DockerEnv, want_runs: usize) -> usize {
    wait_until("the policy restarts", Duration::from_secs(60), || {
        let (st, runs) = counted_state(e);
        let r = (st == "exited 3 2" && runs >= want_runs).then_some(runs);
        async move { r }
    })
    .await
}

/// Restart policies across a daemon restart, as Docker's daemon applies
/// them: a stop by the user keeps an `unless-stopped` container down but
/// not an `always` one (the daemon's start restarts it), and an `always`
/// container whose process died while the daemon was down runs again
/// (both with the count back at 0, as Docker's daemon start does).
#[tokio::test]
async fn restart_policies_apply_to_exits_seen_at_the_daemon_start() {
    let mut e = DockerEnv::new("").await;
    for (name, policy) in [
        ("stopped-always", "always"),
        ("stopped-unless", "unless-stopped"),
        ("crashed-always", "always"),
    ] {
        e.docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            &e.busybox,
            "sleep",
            "300",
        ])
        .ok();
    }
    e.docker(&["stop", "-t", "0", "stopped-always", "stopped-unless"])
        .ok();
    let state = |e: &DockerEnv, n: &str| {
        e.docker(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.RestartCount}}",
            n,
        ])
        .ok()
        .out()
        .to_string()
    };
    // Stopped by the user: no restart while the daemon runs.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(state(&e, "stopped-always"), "exited 0");
    assert_eq!(state(&e, "stopped-unless"), "exited 0");
    let crashed: i32 = e
        .docker(&["inspect", "--format", "{{.State.Pid}}", "crashed-always"])
        .ok()
        .out()
        .parse()
        .expect("a pid");
    e.d.kill9();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(crashed),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the container's process");
    e.d.restart().await;
    wait_until(
        "the restarts at the daemon's start",
        Duration::from_secs(30),
        || {
            let s = (state(&e, "stopped-always"), state(&e, "crashed-always"));
            async move { (s.0 == "running 0" && s.1 == "running 0").then_some(()) }
        },
    )
    .await;
    assert_eq!(state(&e, "stopped-unless"), "exited 0");
    let new_pid: i32 = e
        .docker(&["inspect", "--format", "{{.State.Pid}}", "crashed-always"])
        .ok()
        .out()
        .parse()
        .expect("a pid");
    assert_ne!(new_pid, crashed, "a new process");
    e.docker(&[
        "rm",
        "-f",
        "stopped-always",
        "stopped-unless",
        "crashed-always",
    ])
    .ok();
}
