//! `docker start -a` / `-ai` of created and exited containers (the attach
//! waits for the monitor of the next start), and StdinOnce: a `docker run
//! -i` client killed with SIGKILL closes its container's stdin, so `cat`
//! ends, as Docker does.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::docker::DockerEnv;

/// The container's `State.Status` ("" while it does not exist).
fn status(e: &DockerEnv, name: &str) -> String {
    let r = e.docker(&["inspect", "-f", "{{.State.Status}}", name]);
    r.out().to_string()
}

/// Polls until `name` has `want` status; false if it never did within `limit`.
fn reaches(e: &DockerEnv, name: &str, want: &str, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if status(e, name) == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[tokio::test]
async fn start_attached_prints_every_run() {
    let e = DockerEnv::new("").await;
    let b = e.busybox.clone();
    e.docker(&[
        "create",
        "--name",
        "twice",
        &b,
        "sh",
        "-c",
        "echo run-out; echo run-err >&2; exit 3",
    ])
    .ok();
    for round in 0..3 {
        // Created the first time, exited after: both print what the run printed.
        let r = e.docker(&["start", "-a", "twice"]);
        assert_eq!(r.code, 3, "round {round}: {r:?}");
        assert_eq!(
            (r.stdout.as_str(), r.stderr.as_str()),
            ("run-out\n", "run-err\n"),
            "round {round}"
        );
    }
    let logs = e.docker(&["logs", "twice"]).ok();
    assert_eq!(logs.stdout, "run-out\n".repeat(3), "{logs:?}");

    // -ai: stdin reaches the container on its first and on a later start.
    e.docker(&["create", "-i", "--name", "cat", &b, "cat"]).ok();
    for round in 0..2 {
        let input = format!("line {round}\n");
        let r = e.docker_stdin(&["start", "-ai", "cat"], input.as_bytes());
        assert_eq!((r.code, r.stdout.as_str()), (0, input.as_str()), "{r:?}");
    }
    assert_eq!(status(&e, "cat"), "exited");
    let log = e.d.log();
    assert!(!log.contains("panicked"), "berthd panicked:\n{log}");
}

#[tokio::test]
async fn a_killed_run_i_client_closes_the_containers_stdin() {
    let e = DockerEnv::new("").await;
    let mut c = e.command(&["run", "-i", "--name", "once", &e.busybox, "cat"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut client = c.spawn().expect("spawn docker run -i");
    // stdin stays open: only the client's death can end `cat`.
    let _stdin = client.stdin.take().expect("stdin");
    assert!(
        reaches(&e, "once", "running", Duration::from_secs(60)),
        "the container never ran"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(client.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the client");
    client.wait().expect("reap the client");
    assert!(
        reaches(&e, "once", "exited", Duration::from_secs(30)),
        "cat still runs after its StdinOnce client died: {}",
        status(&e, "once")
    );
    let code = e
        .docker(&["inspect", "-f", "{{.State.ExitCode}}", "once"])
        .ok();
    assert_eq!(code.out(), "0", "cat saw EOF and ended normally");

    e.docker(&["rm", "-f", "once"]).ok();
}
