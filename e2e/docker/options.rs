//! Smaller options, each as Docker has it: `stop --signal`, `update
//! --restart`, `--init` (tini as PID 1, forwarding signals and reaping),
//! and `--add-host …:host-gateway` without a bridge.

use std::time::{Duration, Instant};

use crate::support::docker::DockerEnv;

/// Polls `check` until true; false after `limit`.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[tokio::test]
async fn stop_signal_and_update_restart() {
    let e = DockerEnv::new("").await;
    let b = e.busybox.clone();
    // The script says which signal reached it.
    let script = "trap 'echo got-int; exit 7' INT; trap 'echo got-term; exit 8' TERM; \
                  echo ready; while true; do sleep 0.1; done";
    e.docker(&["run", "-d", "--name", "sig", &b, "sh", "-c", script])
        .ok();
    assert!(eventually(Duration::from_secs(30), || e
        .docker(&["logs", "sig"])
        .stdout
        .contains("ready")));
    e.docker(&["stop", "--signal", "INT", "-t", "20", "sig"])
        .ok();
    let r = e
        .docker(&["inspect", "-f", "{{.State.ExitCode}}", "sig"])
        .ok();
    assert_eq!(r.out(), "7", "INT, not the default TERM");
    assert!(e.docker(&["logs", "sig"]).stdout.contains("got-int"));
    // A restart with a signal number; a bad signal is the caller's fault.
    e.docker(&["start", "sig"]).ok();
    assert!(eventually(Duration::from_secs(30), || e
        .docker(&["logs", "sig"])
        .stdout
        .matches("ready")
        .count()
        == 2));
    e.docker(&["restart", "--signal", "15", "-t", "20", "sig"])
        .ok();
    assert!(e.docker(&["logs", "sig"]).stdout.contains("got-term"));
    let r = e.docker(&["stop", "--signal", "NOPE", "sig"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("Invalid signal"), "{r:?}");
    e.docker(&["rm", "-f", "sig"]).ok();

    // update --restart: a policy set after create is what the exit uses.
    e.docker(&[
        "create",
        "--name",
        "flaky",
        &b,
        "sh",
        "-c",
        "echo run; exit 3",
    ])
    .ok();
    e.docker(&["update", "--restart", "on-failure:2", "flaky"])
        .ok();
    let r = e
        .docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}",
            "flaky",
        ])
        .ok();
    assert_eq!(r.out(), "on-failure:2");
    e.docker(&["start", "flaky"]).ok();
    // One run and two retries, then it stays exited.
    assert!(
        eventually(Duration::from_secs(60), || {
            let runs = e.docker(&["logs", "flaky"]).stdout.matches("run").count();
            let st = e.docker(&["inspect", "-f", "{{.State.Status}}", "flaky"]);
            runs == 3 && st.out() == "exited"
        }),
        "logs: {:?}",
        e.docker(&["logs", "flaky"])
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        e.docker(&["logs", "flaky"]).stdout.matches("run").count(),
        3
    );
    // Bad policies are refused; so is a policy on an --rm container.
    let r = e.docker(&["update", "--restart", "sometimes", "flaky"]);
    assert_ne!(r.code, 0, "{r:?}");
    e.docker(&["create", "--rm", "--name", "tmp", &b, "true"])
        .ok();
    let r = e.docker(&["update", "--restart", "always", "tmp"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("AutoRemove"), "{r:?}");
    e.docker(&["rm", "-f", "flaky", "tmp"]).ok();
    let log = e.d.log();
    assert!(!log.contains("panicked"), "berthd panicked:\n{log}");
}

#[tokio::test]
async fn init_runs_as_pid_1_forwards_signals_and_reaps() {
    let e = DockerEnv::new("").await;
    let b = e.busybox.clone();
    let r = e.docker(&[
        "run",
        "--rm",
        "--init",
        &b,
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("/sbin/docker-init -- sh -c"), "{r:?}");
    assert_ne!(lines[1], "1", "the command is not PID 1 under --init");
    // The exit code passes through.
    let r = e.docker(&["run", "--rm", "--init", &b, "sh", "-c", "exit 9"]);
    assert_eq!(r.code, 9, "{r:?}");
    // A plain `sleep` ignores SIGTERM as PID 1; under the init it gets it.
    e.docker(&[
        "run", "-d", "--init", "--name", "sleepy", &b, "sleep", "300",
    ])
    .ok();
    e.docker(&["stop", "-t", "30", "sleepy"]).ok();
    let r = e
        .docker(&[
            "inspect",
            "-f",
            "{{.State.ExitCode}} {{.HostConfig.Init}}",
            "sleepy",
        ])
        .ok();
    assert_eq!(r.out(), "143 true", "SIGTERM reached sleep (128+15)");
    // Orphans are reaped: a zombie left by a dead parent does not stay.
    e.docker(&[
        "run",
        "-d",
        "--init",
        "--name",
        "reaper",
        &b,
        "sh",
        "-c",
        "sh -c 'sleep 1 &' ; sleep 300",
    ])
    .ok();
    assert!(
        eventually(Duration::from_secs(30), || {
            let ps = e.docker(&["exec", "reaper", "ps", "-o", "stat,comm"]);
            ps.code == 0
                && !ps.stdout.lines().any(|l| l.trim_start().starts_with('Z'))
                && !ps.stdout.contains("sleep 1")
        }),
        "{:?}",
        e.docker(&["exec", "reaper", "ps", "-o", "pid,stat,comm"])
    );
    e.docker(&["rm", "-f", "sleepy", "reaper"]).ok();
}

#[tokio::test]
async fn host_gateway_needs_a_network_with_a_gateway() {
    // The test daemon's default network is loopback only: no gateway.
    let e = DockerEnv::new("").await;
    let b = e.busybox.clone();
    let r = e.docker(&["run", "--rm", "--add-host", "hd:host-gateway", &b, "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("host-gateway"), "{r:?}");
    // With the host's network the host is 127.0.0.1.
    let r = e
        .docker(&[
            "run",
            "--rm",
            "--network",
            "host",
            "--add-host",
            "hd:host-gateway",
            &b,
            "grep",
            "hd",
            "/etc/hosts",
        ])
        .ok();
    assert_eq!(r.out(), "127.0.0.1\thd");
    assert_eq!(
        e.docker(&["ps", "-aq"]).ok().out(),
        "",
        "the failed create left nothing"
    );
}
