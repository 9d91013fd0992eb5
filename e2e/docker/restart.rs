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
