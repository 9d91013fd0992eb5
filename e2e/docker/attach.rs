//! Attach with the real CLI: `docker run` attached (stdin, split streams,
//! exit codes), terminals (`-t`, under `script` so the CLI has one),
//! `docker attach` to a running container, and resizes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use futures::StreamExt;

use crate::support::docker::{run, DockerEnv, Run};

/// Runs `docker ARGS` inside `script`, which gives the CLI a terminal
/// (`script -qec CMD /dev/null`, from util-linux).
pub fn in_terminal(e: &DockerEnv, args: &[&str]) -> Run {
    let quoted: Vec<String> = std::iter::once(crate::support::docker::DOCKER.to_string())
        .chain(
            args.iter()
                .map(|a| format!("'{}'", a.replace('\'', r"'\''"))),
        )
        .collect();
    let mut c = Command::new("script");
    c.args(["-qec", &quoted.join(" "), "/dev/null"])
        .env("DOCKER_HOST", e.host())
        .env("DOCKER_CONFIG", e.cli_config.path())
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .stdin(Stdio::null());
    run(c)
}

#[tokio::test]
async fn run_attaches_stdin_and_separates_streams() {
    let e = DockerEnv::new("").await;
    let r = e.docker_stdin(&["run", "-i", "--rm", &e.busybox, "cat"], b"hello\n");
    assert_eq!((r.code, r.stdout.as_str()), (0, "hello\n"), "{r:?}");
    // Input with no trailing newline, larger than one read.
    let big: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let r = e.docker_stdin(&["run", "-i", "--rm", &e.busybox, "wc", "-c"], &big);
    assert_eq!((r.code, r.out().trim()), (0, "200000"), "{r:?}");
    let r = e.docker(&[
        "run",
        "--rm",
        &e.busybox,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("out\n", "err\n"));
}

#[tokio::test]
async fn run_with_a_terminal() {
    let e = DockerEnv::new("").await;
    let r = in_terminal(
        &e,
        &[
            "run",
            "--rm",
            "-t",
            &e.busybox,
            "sh",
            "-c",
            "tty; echo tty-ok; exit 4",
        ],
    );
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stdout.contains("/dev/pts/"), "{r:?}");
    // The container's terminal turns \n into \r\n (and script's own
    // terminal adds another \r).
    assert!(r.stdout.contains("tty-ok\r"), "{r:?}");

    // Detached: the terminal's output is the log's stdout.
    let id = e
        .docker(&[
            "run",
            "-d",
            "-t",
            &e.busybox,
            "sh",
            "-c",
            "tty; echo logged",
        ])
        .ok()
        .out()
        .to_string();
    let w = e.docker(&["wait", &id]).ok();
    assert_eq!(w.out(), "0");
    let logs = e.docker(&["logs", &id]).ok();
    assert!(logs.stdout.contains("/dev/pts/"), "{logs:?}");
    assert!(logs.stdout.contains("logged"), "{logs:?}");
    assert_eq!(logs.stderr, "", "a terminal has no stderr");
    e.docker(&["rm", &id]).ok();
}

#[tokio::test]
async fn attach_to_a_running_container_and_resize() {
    let e = DockerEnv::new("").await;
    let id = e
        .docker(&[
            "run",
            "-d",
            &e.busybox,
            "sh",
            "-c",
            "while [ ! -e /tmp/stop ]; do echo tick; sleep 0.1; done; echo bye; exit 5",
        ])
        .ok()
        .out()
        .to_string();
    let mut attach = e.command(&["attach", &id]);
    attach.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = attach.spawn().expect("docker attach");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // Live output arrives through the attach...
    let first = lines.next().expect("a line").expect("read");
    assert_eq!(first, "tick");
    e.docker(&["exec", &id, "touch", "/tmp/stop"]).ok();
    // ...up to the end, and the attach ends with the container.
    let rest: Vec<String> = lines.map(|l| l.expect("read")).collect();
    assert_eq!(rest.last().map(String::as_str), Some("bye"), "{rest:?}");
    let st = child.wait().expect("wait attach");
    assert_eq!(st.code(), Some(5));
    let r = e.docker(&["attach", &id]);
    assert_ne!(r.code, 0, "attach to a stopped container: {r:?}");
    // logs=1 replays what the container printed (here: all of it, as it
    // has exited), then the attach ends (stream=0: with stream=1 an attach
    // to an exited container waits for its next start, as Docker's does
    // and `docker start -a` relies on; see start_attach.rs).
    let api = e.bollard();
    let replay = api
        .attach_container(
            &id,
            Some(
                bollard::query_parameters::AttachContainerOptionsBuilder::new()
                    .logs(true)
                    .stream(false)
                    .stdout(true)
                    .build(),
            ),
        )
        .await
        .expect("attach with logs");
    let mut out = String::new();
    let mut output = replay.output;
    while let Some(m) = output.next().await {
        out.push_str(&m.expect("log output").to_string());
    }
    assert!(out.starts_with("tick\n"), "{out:?}");
    assert!(out.ends_with("bye\n"), "{out:?}");
    e.docker(&["rm", &id]).ok();

    // A resize reaches a terminal container.
    let id = e
        .docker(&[
            "run",
            "-d",
            "-t",
            &e.busybox,
            "sh",
            "-c",
            "while [ ! -e /tmp/go ]; do sleep 0.1; done; stty size",
        ])
        .ok()
        .out()
        .to_string();
    let size = |w, h| {
        bollard::query_parameters::ResizeContainerTTYOptionsBuilder::new()
            .w(w)
            .h(h)
            .build()
    };
    api.resize_container_tty(&id, size(100, 40))
        .await
        .expect("resize");
    e.docker(&["exec", &id, "touch", "/tmp/go"]).ok();
    assert_eq!(e.docker(&["wait", &id]).ok().out(), "0");
    let logs = e.docker(&["logs", &id]).ok();
    assert_eq!(logs.stdout.trim_end(), "40 100", "{logs:?}");
    // Resizing an unknown container fails.
    assert!(api
        .resize_container_tty("nonexistent", size(1, 1))
        .await
        .is_err());
    e.docker(&["rm", &id]).ok();
}
