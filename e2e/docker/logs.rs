//! `docker logs`: streams kept apart, --tail, --timestamps, --since/--until,
//! -f ending with the container, the API's refusal of no stream, and
//! rotation (`--log-opt max-size/max-file`) read across its files.

use crate::support::docker::DockerEnv;

/// `<RFC3339 with 9 fraction digits>Z <text>`: the timestamp and the text.
fn split_stamp(line: &str) -> (&str, &str) {
    let (ts, text) = line.split_once(' ').expect("a timestamp and a space");
    assert_eq!(ts.len(), 30, "fixed-width RFC3339Nano: {ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    (ts, text)
}

#[tokio::test]
async fn logs_keep_streams_apart_and_filter() {
    let e = DockerEnv::new("").await;
    e.docker(&[
        "run",
        "-d",
        "--name",
        "talk",
        &e.busybox,
        "sh",
        "-c",
        "echo out1; echo err1 >&2; sleep 1; echo out2; echo out3",
    ])
    .ok();
    e.docker(&["wait", "talk"]).ok();

    let all = e.docker(&["logs", "talk"]).ok();
    assert_eq!(all.stdout, "out1\nout2\nout3\n");
    assert_eq!(all.stderr, "err1\n");

    let tail = e.docker(&["logs", "--tail", "2", "talk"]).ok();
    assert_eq!(tail.stdout, "out2\nout3\n");
    assert_eq!(tail.stderr, "");
    let none = e.docker(&["logs", "--tail", "0", "talk"]).ok();
    assert_eq!((none.stdout.as_str(), none.stderr.as_str()), ("", ""));

    let stamped = e.docker(&["logs", "--timestamps", "talk"]).ok();
    let lines: Vec<(&str, &str)> = stamped.stdout.lines().map(split_stamp).collect();
    assert_eq!(
        lines.iter().map(|l| l.1).collect::<Vec<_>>(),
        ["out1", "out2", "out3"]
    );
    let (_, err_text) = split_stamp(stamped.stderr.trim_end());
    assert_eq!(err_text, "err1");

    // The window, from the log's own timestamps: out2 came a second after out1.
    let out2_ts = lines[1].0;
    let since = e.docker(&["logs", "--since", out2_ts, "talk"]).ok();
    assert_eq!(since.stdout, "out2\nout3\n");
    assert_eq!(since.stderr, "", "err1 came before out2");
    let until = e.docker(&["logs", "--until", lines[0].0, "talk"]).ok();
    assert_eq!(until.stdout, "out1\n");

    let missing = e.docker(&["logs", "nosuch"]);
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains("No such container"), "{missing:?}");
    e.docker(&["rm", "-f", "talk"]).ok();
}

#[tokio::test]
async fn follow_returns_every_line_and_ends_with_the_container() {
    let e = DockerEnv::new("").await;
    e.docker(&[
        "run",
        "-d",
        "--name",
        "slow",
        &e.busybox,
        "sh",
        "-c",
        "echo one; sleep 1; echo two; sleep 1; echo three",
    ])
    .ok();
    // Started while the container still runs; returns by itself once it exits.
    let f = e.docker(&["logs", "-f", "slow"]).ok();
    assert_eq!(f.stdout, "one\ntwo\nthree\n");
    let state = e
        .docker(&["inspect", "--format", "{{.State.Status}}", "slow"])
        .ok();
    assert_eq!(state.out(), "exited");
    e.docker(&["rm", "-f", "slow"]).ok();
}

#[tokio::test]
async fn tty_logs_are_raw_and_no_stream_is_refused() {
    let e = DockerEnv::new("").await;
    e.docker(&[
        "run", "-d", "-t", "--name", "tty", &e.busybox, "echo", "on a tty",
    ])
    .ok();
    e.docker(&["wait", "tty"]).ok();
    let r = e.docker(&["logs", "tty"]).ok();
    assert_eq!(r.stdout.trim_end(), "on a tty", "{r:?}");

    let d = e.bollard();
    let opts = bollard::query_parameters::LogsOptions {
        stdout: false,
        stderr: false,
        ..Default::default()
    };
    let mut s = d.logs("tty", Some(opts));
    use futures::StreamExt;
    match s.next().await {
        Some(Err(bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        })) => {
            assert_eq!(status_code, 400);
            assert!(message.contains("at least one stream"), "{message}");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    e.docker(&["rm", "-f", "tty"]).ok();
}

/// The numbers of `line-N` lines, in the order given.
fn numbers(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| l.strip_prefix("line-"))
        .map(|n| n.parse().expect("a line number"))
        .collect()
}

#[tokio::test]
async fn rotated_logs_keep_max_file_files_and_read_across_them() {
    const BATCHES: u32 = 20;
    const PER_BATCH: u32 = 100;
    const MAX_SIZE: u64 = 10 * 1024;
    let e = DockerEnv::new("").await;
    // Batches of 100 lines (about 5 KB of log), each let go by the test once
    // the follower below has shown the one before: the follower is never
    // more than one rotation behind, whatever the speed of either side.
    let script = format!(
        "echo ready; b=0; while [ $b -lt {BATCHES} ]; do \
           while [ ! -e /tmp/go-$b ]; do sleep 0.05; done; \
           i=0; while [ $i -lt {PER_BATCH} ]; do echo line-$((b*{PER_BATCH}+i)); i=$((i+1)); done; \
           b=$((b+1)); done"
    );
    let id = e
        .docker(&[
            "run",
            "-d",
            "--name",
            "rot",
            "--log-opt",
            "max-size=10k",
            "--log-opt",
            "max-file=3",
            &e.busybox,
            "sh",
            "-c",
            &script,
        ])
        .ok()
        .out()
        .to_string();
    let r = e
        .docker(&[
            "inspect",
            "-f",
            "{{json .HostConfig.LogConfig.Config}}",
            "rot",
        ])
        .ok();
    assert!(r.out().contains("\"max-size\":\"10k\""), "{r:?}");

    let mut follow = e.command(&["logs", "-f", "rot"]);
    follow.stdout(std::process::Stdio::piped());
    let mut child = follow.spawn().expect("docker logs -f starts");
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    // A guard against a hang, not a measure: a lost line fails the test here.
    let hang = std::time::Duration::from_secs(120);
    let mut followed = Vec::new();
    let wait_for = |want: &str, followed: &mut Vec<String>| loop {
        let l = rx
            .recv_timeout(hang)
            .unwrap_or_else(|_| panic!("docker logs -f never showed {want}: {followed:?}"));
        followed.push(l.clone());
        if l == want {
            break;
        }
    };
    wait_for("ready", &mut followed);
    for b in 0..BATCHES {
        e.docker(&["exec", "rot", "touch", &format!("/tmp/go-{b}")])
            .ok();
        wait_for(&format!("line-{}", (b + 1) * PER_BATCH - 1), &mut followed);
    }
    let status = child
        .wait()
        .expect("docker logs -f ends with the container");
    assert!(status.success(), "{status:?}");
    reader.join().expect("the reader thread ends");
    followed.extend(rx.try_iter());
    let total = BATCHES * PER_BATCH;
    assert_eq!(
        numbers(&followed.join("\n")),
        (0..total).collect::<Vec<_>>(),
        "the follower saw every line once, in order"
    );
    e.docker(&["wait", "rot"]).ok();

    // At most max-file files, each at most max-size (no line is longer than
    // the 50 bytes a record takes here).
    let log =
        e.d.root()
            .join("docker/logs")
            .join(&id)
            .join("container.log");
    let rotated = |n: u32| std::path::PathBuf::from(format!("{}.{n}", log.display()));
    for p in [log.clone(), rotated(1), rotated(2)] {
        let len = std::fs::metadata(&p)
            .unwrap_or_else(|err| panic!("{}: {err}", p.display()))
            .len();
        assert!(len <= MAX_SIZE, "{} has {len} bytes", p.display());
    }
    assert!(!rotated(3).exists(), "a fourth file is kept");

    // `docker logs` reads the kept files oldest first: the last lines, no
    // gap, no repeat; what rotated out is gone.
    let all = e.docker(&["logs", "rot"]).ok();
    let kept = numbers(&all.stdout);
    let first = *kept.first().expect("some lines are kept");
    assert!(first > 0, "rotation dropped the oldest lines");
    assert!(
        kept.len() > 300,
        "three files of 10k hold more: {}",
        kept.len()
    );
    assert_eq!(kept, (first..total).collect::<Vec<_>>());
    assert!(!all.stdout.contains("ready"), "the first line rotated out");

    let tail = e.docker(&["logs", "--tail", "3", "rot"]).ok();
    assert_eq!(numbers(&tail.stdout), [total - 3, total - 2, total - 1]);
    // --since from a line in the oldest kept file: from that line on.
    let stamped = e.docker(&["logs", "-t", "rot"]).ok();
    let mid = stamped
        .stdout
        .lines()
        .nth(10)
        .expect("an 11th line")
        .to_string();
    let (ts, text) = split_stamp(&mid);
    let since = e.docker(&["logs", "--since", ts, "rot"]).ok();
    let from: u32 = text.trim_start_matches("line-").parse().expect("a number");
    let got = numbers(&since.stdout);
    // Lines printed in the same nanosecond-stamped instant may come before it.
    assert!(got.first().is_some_and(|f| *f <= from), "{ts} {got:?}");
    assert_eq!(got.last(), Some(&(total - 1)));
    assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "in order, no gap");
    e.docker(&["rm", "-f", "rot"]).ok();
}

#[tokio::test]
async fn bad_log_opts_are_refused_with_400() {
    let e = DockerEnv::new("").await;
    for (opt, word) in [
        ("max-size=abc", "max-size"),
        ("max-file=0", "max-file"),
        ("compress=true", "compress"),
        ("mode=non-blocking", "mode"),
    ] {
        let mut args = vec!["run", "--rm", "--log-opt", opt];
        if opt.starts_with("max-file") {
            args.extend(["--log-opt", "max-size=10k"]);
        }
        args.extend([e.busybox.as_str(), "true"]);
        let r = e.docker(&args);
        assert_eq!(r.code, 125, "{opt}: {r:?}");
        assert!(r.stderr.contains(word), "{opt}: {r:?}");
    }
    // The API's answer is a 400 with the reason.
    let d = e.bollard();
    let body = bollard::models::ContainerCreateBody {
        image: Some(e.busybox.clone()),
        host_config: Some(bollard::models::HostConfig {
            log_config: Some(bollard::models::HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some([("max-size".to_string(), "abc".to_string())].into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    match d
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
    {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        }) => {
            assert_eq!(status_code, 400);
            assert!(message.contains("max-size"), "{message}");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    let r = e.docker(&["ps", "-aq"]).ok();
    assert_eq!(r.out(), "", "no container was left behind");
}
