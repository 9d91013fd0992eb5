//! `docker run` with the real CLI: output, exit codes, options.

use crate::support::docker::DockerEnv;

#[tokio::test]
async fn version_is_negotiated() {
    let e = DockerEnv::without_pull("").await;
    let v = e
        .docker(&[
            "version",
            "--format",
            "{{.Server.APIVersion}} {{.Client.APIVersion}}",
        ])
        .ok();
    // The client (API 1.50) negotiates down to what berth speaks.
    assert_eq!(
        v.out(),
        format!("{0} {0}", berth::docker::API_VERSION),
        "{v:?}"
    );
    let info = e
        .docker(&[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Driver}} {{.OSType}}",
        ])
        .ok();
    assert_eq!(info.out(), "inactive overlay2 linux");
}

#[tokio::test]
async fn run_prints_output_and_returns_exit_codes() {
    let e = DockerEnv::new("").await;
    let r = e.docker(&["run", "--rm", &e.busybox, "echo", "hello world"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "hello world\n"), "{r:?}");
    let r = e.docker(&[
        "run",
        "--rm",
        &e.busybox,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.stdout, "out\n");
    assert_eq!(r.stderr, "err\n");
    // --rm removed both containers.
    let ps = e.docker(&["ps", "-aq"]).ok();
    assert_eq!(ps.out(), "", "{ps:?}");
}

#[tokio::test]
async fn run_options_env_workdir_user_entrypoint() {
    let e = DockerEnv::new("").await;
    let r = e
        .docker(&[
            "run",
            "--rm",
            "-e",
            "GREETING=hi there",
            "-w",
            "/tmp",
            "-u",
            "1234:5678",
            &e.busybox,
            "sh",
            "-c",
            "echo \"$GREETING\"; pwd; id -u; id -g",
        ])
        .ok();
    assert_eq!(r.stdout, "hi there\n/tmp\n1234\n5678\n");
    let r = e
        .docker(&[
            "run",
            "--rm",
            "--entrypoint",
            "/bin/echo",
            &e.busybox,
            "a",
            "b",
        ])
        .ok();
    assert_eq!(r.stdout, "a b\n");
    let r = e
        .docker(&[
            "run",
            "--rm",
            "--hostname",
            "myhost",
            &e.busybox,
            "hostname",
        ])
        .ok();
    assert_eq!(r.stdout, "myhost\n");
}

#[tokio::test]
async fn run_missing_command_and_missing_image_fail_clearly() {
    let e = DockerEnv::new("").await;
    // As Docker: the start fails with 127, and --rm removes the container
    // (exit_codes.rs has the rest).
    let r = e.docker(&["run", "--rm", &e.busybox, "/no/such/binary"]);
    assert_eq!(r.code, 127, "{r:?}");
    assert!(
        r.stderr.contains("/no/such/binary") && r.stderr.contains("no such file or directory"),
        "{r:?}"
    );
    assert_eq!(
        e.docker(&["ps", "-aq"]).ok().out(),
        "",
        "a failed --rm run leaves nothing"
    );
    let missing = format!("{}/test/nothing:here", e.reg.addr());
    let r = e.docker(&["run", "--rm", &missing, "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(!r.stderr.is_empty());
}
