//! What Docker clients read about logs: the Docker SDK for Python (in the
//! venv e2e/test.sh makes) gets a container's output from
//! `containers.run()`, which it reads only for the `json-file`/`journald`
//! log drivers; `docker logs` keeps a last line without a newline as it is.

use std::process::Command;

use crate::support::docker::DockerEnv;

/// The venv's python with the `docker` package (see e2e/test.sh).
fn sdk_python() -> String {
    crate::support::python()
}

#[tokio::test]
async fn docker_sdk_for_python_reads_run_output() {
    let e = DockerEnv::new("").await;
    let script = r#"
import sys, docker
c = docker.DockerClient(base_url=sys.argv[1])
img = sys.argv[2]
print(repr(c.containers.run(img, "echo hi", remove=True)))
print(repr(c.containers.run(img, ["sh", "-c", "printf abc"])))
ctr = c.containers.run(img, ["sh", "-c", "echo out; echo err >&2"], detach=True)
ctr.wait()
print(repr(ctr.logs(stdout=True, stderr=False)), repr(ctr.logs(stdout=False, stderr=True)))
print(ctr.attrs["HostConfig"]["LogConfig"]["Type"])
try:
    c.containers.run(img, ["sh", "-c", "echo bad >&2; exit 3"])
except docker.errors.ContainerError as err:
    print("error", err.exit_status, repr(err.stderr))
"#;
    let out = Command::new(sdk_python())
        .arg("-c")
        .arg(script)
        .arg(e.host())
        .arg(&e.busybox)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "b'hi\\n'",
            "b'abc'",
            "b'out\\n' b'err\\n'",
            "json-file",
            "error 3 b'bad\\n'",
        ],
        "{stdout}"
    );
}

#[tokio::test]
async fn logs_keep_a_last_line_without_newline_and_report_json_file() {
    let e = DockerEnv::new("").await;
    e.docker(&[
        "run",
        "--name",
        "p",
        &e.busybox,
        "sh",
        "-c",
        "echo one; printf abc",
    ])
    .ok();
    assert_eq!(e.docker(&["logs", "p"]).ok().stdout, "one\nabc");
    assert_eq!(e.docker(&["logs", "--tail", "1", "p"]).ok().stdout, "abc");
    assert_eq!(e.docker(&["logs", "-f", "p"]).ok().stdout, "one\nabc");
    let r = e
        .docker(&["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", "p"])
        .ok();
    assert_eq!(r.out(), "json-file");
    let r = e.docker(&["info", "-f", "{{.LoggingDriver}}"]).ok();
    assert_eq!(r.out(), "json-file");
    // A driver berth does not have is refused, not ignored.
    let r = e.docker(&["run", "--rm", "--log-driver", "syslog", &e.busybox, "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("syslog"), "{r:?}");
    // An option berth does not have is refused too (rotation is there:
    // see docker::logs).
    let r = e.docker(&[
        "run",
        "--rm",
        "--log-opt",
        "compress=true",
        &e.busybox,
        "true",
    ]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("compress"), "{r:?}");
    e.docker(&[
        "run",
        "--rm",
        "--log-driver",
        "json-file",
        &e.busybox,
        "true",
    ])
    .ok();
    e.docker(&["rm", "p"]).ok();
}
