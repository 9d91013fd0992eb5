//! `docker exec` with the real CLI and bollard: output, exit codes, stdin,
//! env/workdir/user, terminals, stopped containers, inspect and events.

use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::attach::in_terminal;
use crate::support::docker::DockerEnv;
use crate::support::wait_until;

/// A detached busybox that sleeps, named `name`.
fn sleeper(e: &DockerEnv, name: &str) -> String {
    e.docker(&["run", "-d", "--name", name, &e.busybox, "sleep", "1000"])
        .ok()
        .out()
        .to_string()
}

#[tokio::test]
async fn exec_output_exit_codes_stdin_and_options() {
    let e = DockerEnv::new("").await;
    sleeper(&e, "c");
    let r = e.docker(&["exec", "c", "echo", "hi"]).ok();
    assert_eq!(r.stdout, "hi\n");
    let r = e.docker(&["exec", "c", "sh", "-c", "exit 7"]);
    assert_eq!(r.code, 7, "{r:?}");
    let r = e
        .docker(&["exec", "c", "sh", "-c", "echo o; echo e >&2"])
        .ok();
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("o\n", "e\n"));
    let r = e.docker_stdin(&["exec", "-i", "c", "cat"], b"data\n");
    assert_eq!((r.code, r.stdout.as_str()), (0, "data\n"), "{r:?}");
    let r = e
        .docker(&[
            "exec",
            "-w",
            "/tmp",
            "-e",
            "X=1",
            "-u",
            "1000",
            "c",
            "sh",
            "-c",
            "pwd; echo $X; id -u",
        ])
        .ok();
    assert_eq!(r.stdout, "/tmp\n1\n1000\n");
    // Without options the exec runs as the container does.
    let r = e.docker(&["exec", "c", "sh", "-c", "pwd; id -u"]).ok();
    assert_eq!(r.stdout, "/\n0\n");
    // A command that does not exist fails, and says so.
    let r = e.docker(&["exec", "c", "no-such-command"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("no-such-command") || r.stderr.contains("no-such-command"),
        "{r:?}"
    );
    // Detached: it runs in the background.
    e.docker(&["exec", "-d", "c", "touch", "/tmp/detached"])
        .ok();
    wait_until("the detached exec", Duration::from_secs(30), || async {
        (e.docker(&["exec", "c", "ls", "/tmp/detached"]).code == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn exec_in_a_terminal_and_in_stopped_containers() {
    let e = DockerEnv::new("").await;
    sleeper(&e, "t");
    let r = in_terminal(&e, &["exec", "-t", "t", "sh", "-c", "tty"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("/dev/pts/"), "{r:?}");
    let r = in_terminal(&e, &["exec", "-t", "t", "sh", "-c", "exit 9"]);
    assert_eq!(r.code, 9, "{r:?}");

    e.docker(&["create", "--name", "s", &e.busybox, "true"])
        .ok();
    let r = e.docker(&["exec", "s", "echo", "hi"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("is not running"), "{r:?}");
    e.docker(&["kill", "t"]).ok();
    e.docker(&["wait", "t"]);
    let r = e.docker(&["exec", "t", "echo", "hi"]);
    assert!(r.stderr.contains("is not running"), "{r:?}");
    let r = e.docker(&["exec", "nonexistent", "echo"]);
    assert!(r.stderr.contains("No such container"), "{r:?}");
}

#[tokio::test]
async fn exec_api_with_bollard() {
    use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
    let e = DockerEnv::new("").await;
    let id = sleeper(&e, "b");
    let api = e.bollard();
    let since = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1)
    .to_string();

    let ex = api
        .create_exec(
            "b",
            CreateExecOptions {
                cmd: Some(vec![
                    "sh",
                    "-c",
                    "read x; echo got $x; echo bad >&2; exit 3",
                ]),
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("create exec")
        .id;
    let before = api.inspect_exec(&ex).await.expect("inspect");
    assert_eq!(before.running, Some(false));
    assert_eq!(before.exit_code, None);
    assert_eq!(before.container_id.as_deref(), Some(id.as_str()));
    let started = api
        .start_exec(&ex, Some(StartExecOptions::default()))
        .await
        .expect("start exec");
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        panic!("not attached");
    };
    input.write_all(b"it\n").await.unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    while let Some(chunk) = output.next().await {
        match chunk.expect("output") {
            bollard::container::LogOutput::StdOut { message } => {
                out.push_str(&String::from_utf8_lossy(&message))
            }
            bollard::container::LogOutput::StdErr { message } => {
                err.push_str(&String::from_utf8_lossy(&message))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((out.as_str(), err.as_str()), ("got it\n", "bad\n"));
    let after = api.inspect_exec(&ex).await.expect("inspect");
    assert_eq!(after.running, Some(false));
    assert_eq!(after.exit_code, Some(3));
    let pc = after.process_config.expect("process config");
    assert_eq!(pc.entrypoint.as_deref(), Some("sh"));
    // It ran once; it cannot run again.
    let again = api.start_exec(&ex, Some(StartExecOptions::default())).await;
    assert!(again.is_err(), "{again:?}");

    // A detached exec reports its exit code once it ends.
    let ex = api
        .create_exec(
            "b",
            CreateExecOptions {
                cmd: Some(vec!["sh", "-c", "exit 4"]),
                ..Default::default()
            },
        )
        .await
        .expect("create exec")
        .id;
    let r = api
        .start_exec(
            &ex,
            Some(StartExecOptions {
                detach: true,
                ..Default::default()
            }),
        )
        .await
        .expect("start detached");
    assert!(matches!(r, StartExecResults::Detached));
    let code = wait_until(
        "the detached exec's exit",
        Duration::from_secs(30),
        || async {
            let i = api.inspect_exec(&ex).await.ok()?;
            (i.running == Some(false)).then_some(i.exit_code).flatten()
        },
    )
    .await;
    assert_eq!(code, 4);
    assert!(api.inspect_exec("nonexistent").await.is_err());

    // Docker's events for execs.
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let ev = e
        .docker(&[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "container=b",
            "--format",
            "{{.Action}}",
        ])
        .ok();
    for want in [
        "exec_create: sh -c exit 4",
        "exec_start: sh -c exit 4",
        "exec_die",
    ] {
        assert!(ev.stdout.lines().any(|l| l == want), "{want}: {ev:?}");
    }
}
