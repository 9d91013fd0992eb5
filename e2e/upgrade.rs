//! An upgrade over running containers: berthd of the previous release (the
//! commit named in `e2e/prev-release`, built by `e2e/prev-release.sh`, which
//! `e2e/test.sh` runs) starts containers through both doors, then this
//! build's berthd replaces it on the same root and state. Everything the old
//! one started is still listed and running, and is stoppable and attachable
//! through the monitors the old binary started (their config, attach socket
//! and exit file in the old release's formats).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::Stdio;

use k8s_cri::v1::ContainerState;

use crate::support::docker::DockerEnv;
use crate::support::pods;

/// The previous release's daemon, as `e2e/prev-release.sh` leaves it.
fn previous_release() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/prev-release/debug/berthd");
    assert!(
        bin.exists(),
        "{} is missing: run e2e/prev-release.sh (e2e/test.sh does) to build the previous release",
        bin.display()
    );
    bin
}

#[tokio::test]
async fn a_new_berthd_takes_over_the_containers_an_old_one_started() {
    let mut e = DockerEnv::with_binary(&previous_release(), "").await;
    let mut images = e.d.image_client().await;
    crate::support::cri::pull_ok(&mut images, &e.busybox).await;

    // Docker: one that ticks until told to stop, one that echoes its
    // stdin, one with a terminal that reports its size when told.
    let ticker = e
        .docker(&[
            "run",
            "-d",
            "--name",
            "ticker",
            &e.busybox,
            "sh",
            "-c",
            "while [ ! -e /tmp/stop ]; do echo tick; sleep 0.1; done; echo bye; exit 5",
        ])
        .ok()
        .out()
        .to_string();
    e.docker(&["run", "-d", "-i", "--name", "echo", &e.busybox, "cat"])
        .ok();
    e.docker(&[
        "run",
        "-d",
        "-t",
        "--name",
        "tty",
        &e.busybox,
        "sh",
        "-c",
        "while [ ! -e /tmp/go ]; do sleep 0.1; done; stty size",
    ])
    .ok();
    // One whose stop signal and grace period are its own (kept in the
    // old format, migrated by the new daemon).
    e.docker(&[
        "run",
        "-d",
        "--name",
        "trapper",
        "--stop-signal",
        "USR1",
        "--stop-timeout",
        "30",
        &e.busybox,
        "sh",
        "-c",
        "trap 'exit 7' USR1; while true; do sleep 0.1; done",
    ])
    .ok();
    // CRI: a pod with a container that logs a line a tick.
    let mut rt = e.d.runtime_client().await;
    let logs = tempfile::tempdir().expect("log dir");
    let pod_cfg = pods::pod_config("upgrade", logs.path());
    let pod = pods::run_pod(&mut rt, &pod_cfg).await;
    let cfg = pods::container_config(
        "looper",
        &e.busybox,
        "trap 'echo term; exit 0' TERM; while true; do echo line; sleep 0.2; done",
        "upgrade",
    );
    let cri = pods::run(&mut rt, &pod, &cfg, &pod_cfg).await;
    pods::wait_state(&mut rt, &cri, ContainerState::ContainerRunning).await;
    let pid_of = |e: &DockerEnv, n: &str| {
        e.docker(&["inspect", "--format", "{{.State.Pid}}", n])
            .ok()
            .out()
            .to_string()
    };
    let pids_before: Vec<String> = ["ticker", "echo", "tty", "trapper"]
        .iter()
        .map(|n| pid_of(&e, n))
        .collect();
    let cri_started = pods::status_ok(&mut rt, &cri).await.started_at;

    // The old monitors speak the protocol from before proto/ (v0): their
    // config and exit files are JSON, their socket attach.sock.
    let dir_of = |e: &DockerEnv, n: &str| {
        let id = e
            .docker(&["inspect", "--format", "{{.Id}}", n])
            .ok()
            .out()
            .to_string();
        e.d.state().join("containers").join(id)
    };
    for n in ["ticker", "echo", "tty", "trapper"] {
        assert!(
            dir_of(&e, n).join("monitor.json").exists(),
            "{n}: a v0 monitor"
        );
    }

    // The upgrade.
    e.d.replace_binary(std::path::Path::new(crate::support::daemon::BERTHD))
        .await;
    // The previous release writes records of format 2; this one migrated them.
    assert!(
        e.d.log().contains("migrated the records"),
        "the new daemon migrated the old one's records"
    );

    // Still listed and running, the same processes: by Docker ...
    let ps = e.docker(&["ps", "--format", "{{.Names}} {{.State}}"]).ok();
    let mut names: Vec<&str> = ps.out().lines().collect();
    names.sort();
    // (Docker lists the CRI container too, by its kubelet-style name.)
    let uid = &pod_cfg.metadata.as_ref().expect("metadata").uid;
    let cri_name = format!("k8s_looper_upgrade_berth-e2e_{uid}_0 running");
    assert_eq!(
        names,
        [
            "echo running",
            cri_name.as_str(),
            "ticker running",
            "trapper running",
            "tty running"
        ]
    );
    let pids_after: Vec<String> = ["ticker", "echo", "tty", "trapper"]
        .iter()
        .map(|n| pid_of(&e, n))
        .collect();
    assert_eq!(pids_after, pids_before, "the same processes run on");
    // ... and by CRI, which sees the Docker containers as well.
    let mut rt = e.d.runtime_client().await;
    let listed = pods::list_containers(&mut rt, None).await;
    assert_eq!(listed.len(), 5, "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|c| c.state == ContainerState::ContainerRunning as i32),
        "{listed:?}"
    );
    let st = pods::status_ok(&mut rt, &cri).await;
    assert_eq!(st.started_at, cri_started, "the same CRI container runs on");

    // Attachable through the old monitors: output ...
    let mut attach = e.command(&["attach", &ticker]);
    attach.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = attach.spawn().expect("docker attach");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().expect("a line").expect("read"), "tick");
    e.docker(&["exec", "ticker", "touch", "/tmp/stop"]).ok();
    let rest: Vec<String> = lines.map(|l| l.expect("read")).collect();
    assert_eq!(rest.last().map(String::as_str), Some("bye"), "{rest:?}");
    assert_eq!(child.wait().expect("wait attach").code(), Some(5));
    // ... the exit the old monitor recorded ...
    assert_eq!(e.docker(&["wait", "ticker"]).ok().out(), "5");
    assert_eq!(
        e.docker(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            "ticker"
        ])
        .ok()
        .out(),
        "exited 5"
    );
    // ... stdin ...
    let mut attach = e.command(&["attach", "echo"]);
    attach
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = attach.spawn().expect("docker attach");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // The attach is registered once the CLI's connection is up; a line sent
    // before that is lost, so send until one comes back.
    let echoed = std::thread::spawn(move || out.next().map(|l| l.expect("read")));
    for _ in 0..50 {
        if echoed.is_finished() {
            break;
        }
        stdin.write_all(b"hello\n").expect("write stdin");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(echoed.join().expect("reader").as_deref(), Some("hello"));
    drop(stdin);
    e.docker(&["stop", "-t", "1", "echo"]).ok();
    let _ = child.wait();
    assert_eq!(
        e.docker(&["inspect", "--format", "{{.State.Status}}", "echo"])
            .ok()
            .out(),
        "exited"
    );
    // ... and a terminal's resize.
    let api = e.bollard();
    api.resize_container_tty(
        "tty",
        bollard::query_parameters::ResizeContainerTTYOptionsBuilder::new()
            .w(101)
            .h(33)
            .build(),
    )
    .await
    .expect("resize");
    e.docker(&["exec", "tty", "touch", "/tmp/go"]).ok();
    assert_eq!(e.docker(&["wait", "tty"]).ok().out(), "0");
    assert_eq!(e.docker(&["logs", "tty"]).ok().stdout.trim_end(), "33 101");

    // The stop signal survived the migration: USR1 ends it with 7 (TERM
    // would have killed the shell: 143).
    e.docker(&["stop", "trapper"]).ok();
    assert_eq!(
        e.docker(&["inspect", "--format", "{{.State.ExitCode}}", "trapper"])
            .ok()
            .out(),
        "7"
    );
    // Started again, a container gets a monitor of this build (v1); the v0
    // files go.
    e.docker(&["start", "tty"]).ok();
    assert_eq!(e.docker(&["wait", "tty"]).ok().out(), "0");
    let tty_dir = dir_of(&e, "tty");
    assert!(tty_dir.join("monitor.pb").exists());
    for v0 in ["monitor.json", "exit.json", "attach.sock"] {
        assert!(!tty_dir.join(v0).exists(), "{v0} left behind");
    }
    // The CRI container stops through its old monitor, its log complete.
    pods::stop(&mut rt, &cri, 10).await.expect("StopContainer");
    let st = pods::wait_exited(&mut rt, &cri).await;
    assert_eq!(st.exit_code, 0, "{st:?}");
    let log = std::fs::read_to_string(logs.path().join("looper/0.log")).expect("CRI log");
    assert!(log.contains(" stdout F line"), "{log}");
    assert!(
        log.contains(" stdout F term"),
        "written after the upgrade: {log}"
    );
    pods::remove(&mut rt, &cri).await.expect("RemoveContainer");
    pods::stop_pod(&mut rt, &pod).await.expect("StopPodSandbox");
    pods::remove_pod(&mut rt, &pod)
        .await
        .expect("RemovePodSandbox");
    e.docker(&["rm", "ticker", "echo", "tty", "trapper"]).ok();
    assert_eq!(e.docker(&["ps", "-aq"]).ok().out(), "");
}
