//! Serving the Docker API: TCP only with TLS and verified client
//! certificates; restart policies; errors in Docker's shape.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::daemon::{config_yaml, run_to_exit};
use crate::support::docker::{run, DockerEnv, DOCKER};
use crate::support::{free_port, short_tempdir, wait_until};

/// openssl, panicking with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`.
fn make_pki(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=berth-test-ca",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (who, ext) in [("server", "server.ext"), ("client", "client.ext")] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{who}-key.pem"),
                "-out",
                &format!("{who}.csr"),
                "-subj",
                &format!("/CN={who}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-out",
                &format!("{who}.pem"),
                "-days",
                "2",
                "-extfile",
                ext,
            ],
        );
    }
}

#[tokio::test]
async fn tcp_needs_tls_and_a_client_certificate() {
    // Without TLS the daemon refuses to start, naming the keys it needs.
    let scratch = short_tempdir("dt");
    let (status, log) = run_to_exit(
        &config_yaml(
            scratch.path(),
            &format!(
                "docker:\n  socket: {}/docker.sock\n  tcp: \"127.0.0.1:{}\"\n",
                scratch.path().display(),
                free_port()
            ),
        ),
        Duration::from_secs(30),
    );
    assert!(status.is_some_and(|s| !s.success()), "{log}");
    assert!(log.contains("docker.tls.cert"), "{log}");

    let pki = short_tempdir("pk");
    make_pki(pki.path());
    let port = free_port();
    let p = pki.path().display();
    let e = DockerEnv::without_pull(&format!(
        "docker:\n  socket: {}/docker.sock\n  tcp: \"127.0.0.1:{port}\"\n  tls:\n    cert: {p}/server.pem\n    key: {p}/server-key.pem\n    ca: {p}/ca.pem\n",
        scratch.path().display()
    ))
    .await;
    let host = format!("tcp://127.0.0.1:{port}");
    let cli = |extra: &[&str]| {
        let mut c = Command::new(DOCKER);
        c.env("DOCKER_CONFIG", e.cli_config.path())
            .env_remove("DOCKER_HOST")
            .args(["-H", &host])
            .args(extra)
            .args(["version", "--format", "{{.Server.Os}}"]);
        run(c)
    };
    let ok = cli(&[
        "--tlsverify",
        "--tlscacert",
        &format!("{p}/ca.pem"),
        "--tlscert",
        &format!("{p}/client.pem"),
        "--tlskey",
        &format!("{p}/client-key.pem"),
    ]);
    assert_eq!((ok.code, ok.out()), (0, "linux"), "{ok:?}");
    // A client without a certificate is turned away during the handshake.
    let anon = cli(&["--tlsverify", "--tlscacert", &format!("{p}/ca.pem")]);
    assert_ne!(anon.code, 0, "{anon:?}");
    // And plain HTTP gets no answer either.
    let plain = cli(&[]);
    assert_ne!(plain.code, 0, "{plain:?}");
}

#[tokio::test]
async fn restart_policy_on_failure_is_bounded() {
    let e = DockerEnv::new("").await;
    e.docker(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        &e.busybox,
        "sh",
        "-c",
        "echo attempt; exit 1",
    ])
    .ok();
    // One run plus two restarts, then it stays down.
    let lines = wait_until("two restarts", Duration::from_secs(60), || {
        let logs = e.docker(&["logs", "flaky"]);
        let st = e.docker(&["inspect", "--format", "{{.State.Status}}", "flaky"]);
        let n = logs.stdout.lines().count();
        let r = (n >= 3 && st.out() == "exited").then_some(n);
        async move { r }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = e.docker(&["logs", "flaky"]).ok();
    assert_eq!(lines, 3);
    assert_eq!(after.stdout, "attempt\nattempt\nattempt\n");
    // A container the user stops is not restarted by `always`.
    e.docker(&[
        "run",
        "-d",
        "--name",
        "steady",
        "--restart",
        "always",
        &e.busybox,
        "sleep",
        "300",
    ])
    .ok();
    e.docker(&["stop", "-t", "0", "steady"]).ok();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = e
        .docker(&["inspect", "--format", "{{.State.Status}}", "steady"])
        .ok();
    assert_eq!(st.out(), "exited");
    e.docker(&["rm", "-f", "flaky", "steady"]).ok();
}

#[tokio::test]
async fn errors_have_docker_codes_and_messages() {
    let e = DockerEnv::without_pull("").await;
    let sock = e.docker_socket();
    let curl = |args: &[&str]| {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(&sock)
            .args(args);
        let r = run(c);
        let (body, code) = r.stdout.rsplit_once('\n').expect("code line");
        (code.to_string(), body.to_string())
    };
    let (code, body) = curl(&["http://d/v1.47/containers/nope/json"]);
    assert_eq!(code, "404");
    assert_eq!(body.trim(), r#"{"message":"No such container: nope"}"#);
    let (code, body) = curl(&["http://d/v1.99/info"]);
    assert_eq!(code, "400");
    assert!(body.contains("too new"), "{body}");
    let (code, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        "{not json",
        "http://d/containers/create",
    ]);
    assert_eq!(code, "400", "{body}");
    assert!(body.starts_with("{\"message\":"), "{body}");
    let (code, _) = curl(&["-I", "http://d/_ping"]);
    assert_eq!(code, "200");
}
