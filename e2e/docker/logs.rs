//! `docker logs`: streams kept apart, --tail, --timestamps, --since/--until,
//! -f ending with the container, and the API's refusal of no stream.

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
