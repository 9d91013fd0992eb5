//! Docker health checks with the real CLI: `--health-*` flags and an image's
//! HEALTHCHECK run as probes in the container; `State.Health` in inspect,
//! `(healthy)` in `docker ps`, `--filter health=`, `health_status` events,
//! a probe killed at its timeout, `--no-healthcheck`, the state kept over a
//! berthd restart with the runner resuming, docker-py's `container.health`,
//! and compose's `depends_on: condition: service_healthy`.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::docker::{run, DockerEnv};
use crate::support::wait_until;

/// How long a 1 s-interval check may take to get somewhere on a busy machine.
const LIMIT: Duration = Duration::from_secs(60);

fn inspect(e: &DockerEnv, name: &str, what: &str) -> Value {
    let r = e
        .docker(&["inspect", "--format", &format!("{{{{json {what}}}}}"), name])
        .ok();
    serde_json::from_str(r.out()).unwrap_or_else(|err| panic!("{what} of {name}: {err}: {r:?}"))
}

fn health(e: &DockerEnv, name: &str) -> Value {
    inspect(e, name, ".State.Health")
}

/// Waits until the container's health status is `want`; its State.Health then.
async fn wait_status(e: &DockerEnv, name: &str, want: &str) -> Value {
    wait_until(&format!("{name} to be {want}"), LIMIT, || {
        let h = health(e, name);
        async move { (h["Status"] == want).then_some(h) }
    })
    .await
}

fn ps_names(e: &DockerEnv, filter: &str) -> Vec<String> {
    let r = e
        .docker(&["ps", "-a", "--filter", filter, "--format", "{{.Names}}"])
        .ok();
    let mut v: Vec<String> = r.out().lines().map(str::to_string).collect();
    v.sort();
    v
}

fn status_of(e: &DockerEnv, name: &str) -> String {
    let r = e
        .docker(&["ps", "-a", "--format", "{{.Names}}\t{{.Status}}"])
        .ok();
    r.out()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}\t")))
        .unwrap_or_else(|| panic!("{name} not listed: {r:?}"))
        .to_string()
}

/// The actions of past container events matching `filters`.
fn past_events(e: &DockerEnv, filters: &[&str]) -> Vec<String> {
    let until = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1
    );
    let mut args = vec!["events", "--since", "0", "--until", &until];
    for f in filters {
        args.extend(["--filter", f]);
    }
    args.extend(["--format", "{{.Action}}"]);
    let r = e.docker(&args).ok();
    r.out().lines().map(str::to_string).collect()
}

#[tokio::test]
async fn a_passing_check_turns_healthy_and_ps_filters_and_events_show_it() {
    let e = DockerEnv::new("").await;
    // Fails until /ready exists; inside the long start period failures do not count.
    e.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "--health-cmd",
        "test -f /ready",
        "--health-interval",
        "1s",
        "--health-start-period",
        "300s",
        "--health-retries",
        "1",
        &e.busybox,
        "sleep",
        "300",
    ])
    .ok();
    e.docker(&["run", "-d", "--name", "plain", &e.busybox, "sleep", "300"])
        .ok();
    let cfg = inspect(&e, "web", ".Config.Healthcheck");
    assert_eq!(
        cfg["Test"],
        serde_json::json!(["CMD-SHELL", "test -f /ready"])
    );
    assert_eq!(cfg["Interval"], 1_000_000_000i64);
    assert_eq!(cfg["StartPeriod"], 300_000_000_000i64);
    assert_eq!(cfg["Retries"], 1);
    assert_eq!(inspect(&e, "plain", ".State.Health"), Value::Null);

    // Failed probes are logged while the status stays starting.
    let h = wait_until("two failed probes", LIMIT, || {
        let h = health(&e, "web");
        async move { (h["Log"].as_array().is_some_and(|l| l.len() >= 2)).then_some(h) }
    })
    .await;
    assert_eq!(h["Status"], "starting", "{h}");
    assert_eq!(h["FailingStreak"], 0, "{h}");
    assert_eq!(h["Log"][0]["ExitCode"], 1, "{h}");
    let st = status_of(&e, "web");
    assert!(st.ends_with("(health: starting)"), "{st}");
    assert_eq!(ps_names(&e, "health=starting"), ["web"]);

    e.docker(&["exec", "web", "touch", "/ready"]).ok();
    let h = wait_status(&e, "web", "healthy").await;
    assert_eq!(h["FailingStreak"], 0);
    let last = h["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ExitCode"], 0, "{h}");
    assert!(last["Start"].as_str().unwrap() <= last["End"].as_str().unwrap());
    let st = status_of(&e, "web");
    assert!(st.starts_with("Up ") && st.ends_with(" (healthy)"), "{st}");
    assert!(!status_of(&e, "plain").contains('('));
    assert_eq!(ps_names(&e, "health=healthy"), ["web"]);
    assert_eq!(ps_names(&e, "health=none"), ["plain"]);
    assert!(ps_names(&e, "health=unhealthy").is_empty());
    let bad = e.docker(&["ps", "--filter", "health=sick"]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr
            .contains("Unrecognised filter value for health: sick"),
        "{bad:?}"
    );

    let health_events = past_events(&e, &["event=health_status", "container=web"]);
    assert_eq!(health_events, ["health_status: healthy"]);
    // Probes are execs, with Docker's exec events (beside the test's own exec).
    let execs = past_events(&e, &["container=web", "event=exec_create"]);
    let probes = execs
        .iter()
        .filter(|a| *a == "exec_create: /bin/sh -c test -f /ready")
        .count();
    assert!(probes >= 3, "{execs:?}");
    assert_eq!(probes + 1, execs.len(), "{execs:?}");
    assert!(!past_events(&e, &["container=web", "event=exec_die"]).is_empty());

    // The Docker SDK for Python reads it too.
    let out = Command::new(crate::support::python())
        .arg("-c")
        .arg(
            "import sys, docker\n\
             c = docker.DockerClient(base_url=sys.argv[1])\n\
             print(c.containers.get('web').health, c.containers.get('plain').health)\n",
        )
        .arg(e.host())
        .output()
        .expect("run python");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "healthy unknown"
    );
    e.docker(&["rm", "-f", "web", "plain"]).ok();
}

#[tokio::test]
async fn a_failing_check_turns_unhealthy_and_a_slow_one_is_killed_at_its_timeout() {
    let e = DockerEnv::new("").await;
    e.docker(&[
        "run",
        "-d",
        "--name",
        "bad",
        "--health-cmd",
        "echo oops; exit 3",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        &e.busybox,
        "sleep",
        "300",
    ])
    .ok();
    let h = wait_status(&e, "bad", "unhealthy").await;
    assert!(h["FailingStreak"].as_i64().unwrap() >= 2, "{h}");
    for entry in h["Log"].as_array().unwrap() {
        assert_eq!(entry["ExitCode"], 3, "{h}");
        assert_eq!(entry["Output"], "oops\n", "{h}");
    }
    let st = status_of(&e, "bad");
    assert!(st.ends_with("(unhealthy)"), "{st}");
    assert_eq!(ps_names(&e, "health=unhealthy"), ["bad"]);

    // Started once the filter is checked: with a 1 s timeout and one retry it
    // is unhealthy within seconds, and would be listed too.
    e.docker(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "echo started; sleep 123",
        "--health-interval",
        "1s",
        "--health-timeout",
        "1s",
        "--health-retries",
        "1",
        &e.busybox,
        "sleep",
        "300",
    ])
    .ok();

    // Three timed-out probes later at most the current one runs: each was
    // killed at its timeout.
    let h = wait_until("three timed-out probes", LIMIT, || {
        let h = health(&e, "slow");
        async move { (h["Log"].as_array().is_some_and(|l| l.len() >= 3)).then_some(h) }
    })
    .await;
    assert_eq!(h["Status"], "unhealthy", "{h}");
    for entry in h["Log"].as_array().unwrap() {
        assert_eq!(entry["ExitCode"], -1, "{h}");
        assert_eq!(
            entry["Output"], "Health check exceeded timeout (1s): started\n",
            "{h}"
        );
    }
    let ps = e.docker(&["exec", "slow", "ps"]).ok();
    let probes = ps.out().lines().filter(|l| l.contains("sleep 123")).count();
    assert!(probes <= 1, "{}", ps.out());

    // Stopped, the container keeps its last health; the probes end with it.
    e.docker(&["stop", "-t", "1", "bad"]).ok();
    assert_eq!(health(&e, "bad")["Status"], "unhealthy");
    let st = status_of(&e, "bad");
    assert!(st.starts_with("Exited"), "{st}");
    e.docker(&["rm", "-f", "bad", "slow"]).ok();
    // Removed, nothing of its probes is left on the host.
    wait_until("the slow probe to be gone", LIMIT, || {
        let left = processes_running(&["sleep", "123"]);
        async move { (left == 0).then_some(()) }
    })
    .await;
}

/// How many processes on the host run exactly `argv`.
fn processes_running(argv: &[&str]) -> usize {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
        .count()
}

#[tokio::test]
async fn an_image_healthcheck_is_honoured_and_no_healthcheck_disables_it() {
    let e = DockerEnv::new("").await;
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}\nSHELL [\"/bin/sh\", \"-ec\"]\nHEALTHCHECK --interval=1s --retries=1 CMD [\"test\", \"-e\", \"/etc/passwd\"]\n",
            e.busybox
        ),
    )
    .unwrap();
    let mut c = e.command(&["build", "-t", "checked:v1", ctx.path().to_str().unwrap()]);
    c.env("DOCKER_BUILDKIT", "0");
    let r = run(c);
    assert_eq!(r.code, 0, "{r:?}");

    e.docker(&["run", "-d", "--name", "img", "checked:v1", "sleep", "300"])
        .ok();
    e.docker(&[
        "run",
        "-d",
        "--name",
        "off",
        "--no-healthcheck",
        "checked:v1",
        "sleep",
        "300",
    ])
    .ok();
    // The request's command over the image's; the image's interval and retries stay.
    e.docker(&[
        "run",
        "-d",
        "--name",
        "over",
        "--health-cmd",
        "exit 1",
        "checked:v1",
        "sleep",
        "300",
    ])
    .ok();
    let cfg = inspect(&e, "img", ".Config.Healthcheck");
    assert_eq!(
        cfg["Test"],
        serde_json::json!(["CMD", "test", "-e", "/etc/passwd"])
    );
    wait_status(&e, "img", "healthy").await;
    let cfg = inspect(&e, "over", ".Config.Healthcheck");
    assert_eq!(cfg["Test"], serde_json::json!(["CMD-SHELL", "exit 1"]));
    assert_eq!(cfg["Interval"], 1_000_000_000i64);
    wait_status(&e, "over", "unhealthy").await;
    // CMD-SHELL runs with the image's SHELL.
    let execs = past_events(&e, &["container=over", "event=exec_create"]);
    assert!(!execs.is_empty());
    assert!(
        execs.iter().all(|a| a == "exec_create: /bin/sh -ec exit 1"),
        "{execs:?}"
    );
    assert_eq!(
        inspect(&e, "off", ".Config.Healthcheck")["Test"],
        serde_json::json!(["NONE"])
    );
    assert_eq!(health(&e, "off"), Value::Null);
    assert_eq!(ps_names(&e, "health=none"), ["off"]);
    assert!(past_events(&e, &["container=off", "event=exec_create"]).is_empty());
    e.docker(&["rm", "-f", "img", "off", "over"]).ok();
}

#[tokio::test]
async fn health_survives_a_daemon_restart_and_the_runner_resumes() {
    let mut e = DockerEnv::new("").await;
    e.docker(&[
        "run",
        "-d",
        "--name",
        "h",
        "--health-cmd",
        "cat /flag",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        &e.busybox,
        "sh",
        "-c",
        "echo up > /flag; exec sleep 300",
    ])
    .ok();
    let before = wait_status(&e, "h", "healthy").await;
    assert_eq!(
        before["Log"].as_array().unwrap().last().unwrap()["Output"],
        "up\n"
    );
    e.d.kill9();
    e.d.restart().await;
    let after = health(&e, "h");
    assert_eq!(after["Status"], "healthy", "{after}");
    let first = &before["Log"][0];
    assert_eq!(&after["Log"][0], first, "the log is kept: {after}");
    // The runner resumed: a change after the restart is seen.
    e.docker(&["exec", "h", "rm", "/flag"]).ok();
    let h = wait_status(&e, "h", "unhealthy").await;
    assert_eq!(h["Log"].as_array().unwrap().last().unwrap()["ExitCode"], 1);
    assert_eq!(
        past_events(&e, &["container=h", "event=health_status"]),
        ["health_status: unhealthy"],
        "events after the restart (the history is the new daemon's)"
    );
    // Stopped and started again, the check starts over and runs again.
    e.docker(&["stop", "-t", "1", "h"]).ok();
    e.docker(&["start", "h"]).ok();
    wait_status(&e, "h", "healthy").await;
    e.docker(&["rm", "-f", "h"]).ok();
}

/// Debian's docker-compose (file version 2.1): `app` is created only once
/// `db` is healthy; `extra` goes into each service (e.g. a network mode).
async fn compose_depends_on_healthy(extra: &str) {
    let e = DockerEnv::new("").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        format!(
            "version: \"2.1\"\nservices:\n  db:\n    image: {bb}\n{extra}    command: sh -c 'sleep 2; touch /ready; exec sleep 300'\n    healthcheck:\n      test: [\"CMD\", \"test\", \"-f\", \"/ready\"]\n      interval: 1s\n      retries: 30\n  app:\n    image: {bb}\n{extra}    command: sleep 300\n    depends_on:\n      db:\n        condition: service_healthy\n",
            bb = e.busybox
        ),
    )
    .unwrap();
    let compose = |args: &[&str]| {
        let mut c = Command::new("docker-compose");
        c.args(["-p", "berthhealth"])
            .args(args)
            .current_dir(dir.path())
            .env("DOCKER_HOST", e.host())
            .env("DOCKER_CONFIG", e.cli_config.path());
        run(c)
    };
    let up = compose(&["up", "-d"]);
    assert_eq!(up.code, 0, "{up:?}");
    // up -d returned after db was healthy, and app runs.
    let ps = e
        .docker(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"])
        .ok();
    assert!(ps.out().contains("berthhealth_app_1"), "{ps:?} {up:?}");
    assert_eq!(health(&e, "berthhealth_db_1")["Status"], "healthy");
    assert_eq!(
        inspect(&e, "berthhealth_app_1", ".State.Status"),
        Value::String("running".into())
    );
    let db_healthy = inspect(&e, "berthhealth_db_1", ".State.Health.Log");
    let app_created = inspect(&e, "berthhealth_app_1", ".Created");
    let first_ok = db_healthy
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ExitCode"] == 0)
        .map(|r| r["End"].as_str().unwrap().to_string())
        .unwrap();
    assert!(
        app_created.as_str().unwrap() >= first_ok.as_str(),
        "app created ({app_created}) before db was healthy ({first_ok})"
    );
    let down = compose(&["down", "-t", "1"]);
    assert_eq!(down.code, 0, "{down:?}");
}

/// On the project's own network, as compose makes it by default.
#[tokio::test]
async fn compose_waits_for_a_healthy_dependency() {
    compose_depends_on_healthy("").await;
}

/// With `network_mode: bridge` compose makes no network (and connects nothing).
#[tokio::test]
async fn compose_waits_for_a_healthy_dependency_on_the_bridge() {
    compose_depends_on_healthy("    network_mode: bridge\n").await;
}
