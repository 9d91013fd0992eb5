//! Debian's docker-compose 1.29 (on its docker-py 5) against berthd: a
//! two-service project on its own network — a busybox httpd publishing a
//! port on 127.0.0.1 and a client depending on it, sharing a named volume —
//! through up, ps, port, logs, exec, run --rm, scale, stop/start/restart
//! and `down -v`, which must leave no container, network, volume, bridge,
//! veth, pod netns or rule behind. Service-name lookups (embedded DNS) and
//! health checks are tested where they are built.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::network::testnet::{Plugins, TestNet};
use crate::support::docker::{run, DockerEnv, Run};
use crate::support::net::{free_subnets, iptables_save, links, veths, Ours};

const PROJECT: &str = "berthc";

/// `docker-compose -p berthc ARGS` in `dir`, talking to the test daemon.
fn compose(e: &DockerEnv, dir: &Path, args: &[&str]) -> Run {
    let mut c = Command::new("docker-compose");
    c.arg("-p")
        .arg(PROJECT)
        .args(args)
        .current_dir(dir)
        .env("DOCKER_HOST", e.host())
        .env("DOCKER_CONFIG", e.cli_config.path())
        // exec and run through compose's own client, not the docker CLI.
        .env("COMPOSE_INTERACTIVE_NO_CLI", "1")
        .env_remove("DOCKER_API_VERSION")
        .env_remove("COMPOSE_API_VERSION")
        .stdin(Stdio::null());
    run(c)
}

/// On a failed test, `docker-compose down -v` while the daemon still runs,
/// so the project's pods DEL their rules and the network its bridge.
struct Down {
    host: String,
    config: std::path::PathBuf,
    dir: std::path::PathBuf,
    done: bool,
}

impl Drop for Down {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let _ = Command::new("docker-compose")
            .args(["-p", PROJECT, "down", "-v", "-t", "0"])
            .current_dir(&self.dir)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", &self.config)
            .stdin(Stdio::null())
            .output();
    }
}

fn ok(r: Run) -> Run {
    assert_eq!(r.code, 0, "docker-compose failed: {r:?}");
    r
}

/// The body of `GET /` on 127.0.0.1:`port` (httpd may still be starting:
/// retried for a while); `None` when it never answers.
fn http_get(port: u16) -> Option<String> {
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let req = "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n";
            let mut out = String::new();
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_to_string(&mut out).is_ok()
                && out.starts_with("HTTP/1.")
            {
                return out
                    .split_once("\r\n\r\n")
                    .map(|(_, b)| b.trim().to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// The host port `docker-compose port` reports for service `svc`'s port 80
/// (replica `index`).
fn port_of(e: &DockerEnv, dir: &Path, svc: &str, index: &str) -> u16 {
    let r = ok(compose(e, dir, &["port", "--index", index, svc, "80"]));
    let (ip, port) = r.out().rsplit_once(':').expect("ip:port");
    assert_eq!(ip, "127.0.0.1", "{r:?}");
    port.parse().expect("a port")
}

/// Names of the project's containers in `state` (`docker ps` filter).
fn names(e: &DockerEnv, status: &str) -> Vec<String> {
    let r = e
        .docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={PROJECT}"),
            "--filter",
            &format!("status={status}"),
            "--format",
            "{{.Names}}",
        ])
        .ok();
    let mut v: Vec<String> = r.out().lines().map(String::from).collect();
    v.sort();
    v
}

#[tokio::test]
async fn compose_project_up_scale_restart_and_down() {
    let net = TestNet::new(Plugins {
        masq: true,
        portmap: true,
        ..Default::default()
    })
    .await;
    net.install();
    free_subnets(&["10.89.91."]);
    let veths_before = veths();
    let e = DockerEnv::new(&net.yaml()).await;
    let token = crate::support::pods::unique("compose-web");
    let dir = tempfile::tempdir().unwrap();
    let file = format!(
        r#"version: "3.7"
services:
  web:
    image: {bb}
    command: ["sh", "-c", "echo web-started; echo {token} > /data/index.html; exec httpd -f -p 80 -h /data"]
    ports:
      - "127.0.0.1::80"
    volumes:
      - shared:/data
  client:
    image: {bb}
    depends_on:
      - web
    command: ["sh", "-c", "echo from-client > /data/client.txt; echo client-started; exec sleep 3600"]
    volumes:
      - shared:/data
volumes:
  shared: {{}}
networks:
  default:
    ipam:
      config:
        - subnet: 10.89.91.0/24
"#,
        bb = e.busybox
    );
    std::fs::write(dir.path().join("docker-compose.yml"), file).unwrap();
    let d = dir.path();
    let mut guard = Down {
        host: e.host(),
        config: e.cli_config.path().to_path_buf(),
        dir: d.to_path_buf(),
        done: false,
    };

    let up = ok(compose(&e, d, &["up", "-d"]));
    assert_eq!(
        names(&e, "running"),
        ["berthc_client_1", "berthc_web_1"],
        "{up:?}"
    );
    let net_id = e
        .docker(&[
            "network",
            "inspect",
            "--format",
            "{{.Id}}",
            "berthc_default",
        ])
        .ok()
        .out()
        .to_string();
    let ours = Ours {
        name: "berthc_default".into(),
        bridge: format!("br-{}", &net_id[..12]),
        prefix: [10, 89, 91],
    };
    let labels = e
        .docker(&[
            "network",
            "inspect",
            "--format",
            "{{index .Labels \"com.docker.compose.network\"}} {{index .Labels \"com.docker.compose.project\"}}",
            "berthc_default",
        ])
        .ok();
    assert_eq!(labels.out(), "default berthc");
    // Both containers are on the project network, with the service name
    // among their aliases.
    let aliases = e
        .docker(&[
            "inspect",
            "--format",
            "{{with index .NetworkSettings.Networks \"berthc_default\"}}{{.IPAddress}} {{.Aliases}}{{end}}",
            "berthc_web_1",
        ])
        .ok();
    assert!(
        aliases.out().starts_with("10.89.91.") && aliases.out().contains("web"),
        "{aliases:?}"
    );
    let ps = ok(compose(&e, d, &["ps"]));
    for n in ["berthc_web_1", "berthc_client_1"] {
        let line = ps.stdout.lines().find(|l| l.starts_with(n));
        assert!(line.is_some_and(|l| l.contains(" Up")), "{n}: {ps:?}");
    }

    // The published port answers on 127.0.0.1 with the page web wrote into
    // the shared volume.
    let port = port_of(&e, d, "web", "1");
    assert_eq!(http_get(port).as_deref(), Some(token.as_str()));
    let logs = ok(compose(&e, d, &["logs", "--no-color", "web"]));
    assert!(logs.stdout.contains("web-started"), "{logs:?}");
    // exec -T and run --rm see the same volume.
    let page = ok(compose(
        &e,
        d,
        &["exec", "-T", "client", "cat", "/data/index.html"],
    ));
    assert_eq!(page.out(), token);
    let from_client = ok(compose(
        &e,
        d,
        &["exec", "-T", "web", "cat", "/data/client.txt"],
    ));
    assert_eq!(from_client.out(), "from-client");
    let ran = ok(compose(
        &e,
        d,
        &["run", "--rm", "-T", "client", "cat", "/data/index.html"],
    ));
    assert_eq!(ran.out(), token, "{ran:?}");
    assert_eq!(
        names(&e, "exited").len() + names(&e, "created").len(),
        0,
        "run --rm left no container"
    );

    // Two replicas of web, each answering on its own port.
    ok(compose(&e, d, &["up", "-d", "--scale", "web=2"]));
    assert_eq!(
        names(&e, "running"),
        ["berthc_client_1", "berthc_web_1", "berthc_web_2"]
    );
    let port2 = port_of(&e, d, "web", "2");
    assert_ne!(port, port2);
    assert_eq!(http_get(port2).as_deref(), Some(token.as_str()));
    // The service name resolves, through the embedded DNS, to both
    // replicas on the project network (busybox's nslookup).
    let ip_of = |c: &str| {
        e.docker(&[
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            c,
        ])
        .ok()
        .out()
        .trim()
        .to_string()
    };
    let (ip1, ip2) = (ip_of("berthc_web_1"), ip_of("berthc_web_2"));
    assert!(!ip1.is_empty() && !ip2.is_empty() && ip1 != ip2);
    let looked = ok(compose(&e, d, &["exec", "-T", "client", "nslookup", "web"]));
    for ip in [&ip1, &ip2] {
        assert!(
            looked.stdout.contains(&format!("Address: {ip}")),
            "web resolves to {ip}: {looked:?}"
        );
    }

    // stop / start / restart.
    ok(compose(&e, d, &["stop"]));
    assert!(names(&e, "running").is_empty());
    assert_eq!(names(&e, "exited").len(), 3);
    ok(compose(&e, d, &["start"]));
    assert_eq!(names(&e, "running").len(), 3);
    ok(compose(&e, d, &["restart", "web"]));
    assert_eq!(names(&e, "running").len(), 3);
    let port = port_of(&e, d, "web", "1");
    assert_eq!(http_get(port).as_deref(), Some(token.as_str()));

    // down -v: nothing of the project is left, through the CLI and on the host.
    let down = ok(compose(&e, d, &["down", "-v"]));
    guard.done = true;
    assert!(e.docker(&["ps", "-aq"]).ok().out().is_empty(), "{down:?}");
    let nets = e.docker(&["network", "ls", "--format", "{{.Name}}"]).ok();
    assert_eq!(nets.out(), "bridge\nhost\nnone");
    let vols = e.docker(&["volume", "ls", "-q"]).ok();
    assert_eq!(vols.out(), "", "{vols:?}");
    assert!(!links().contains(&ours.bridge), "{} is gone", ours.bridge);
    let left: Vec<String> = [
        iptables_save("iptables-save"),
        iptables_save("ip6tables-save"),
    ]
    .iter()
    .flat_map(|t| t.lines().map(String::from).collect::<Vec<_>>())
    .filter(|l| ours.mentions(l))
    .collect();
    assert!(
        left.is_empty(),
        "rules of the project network are left: {left:?}"
    );
    let pods: BTreeSet<String> = std::fs::read_dir(e.d.state().join("pods"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        pods.is_empty(),
        "pod dirs (pinned netns) are left: {pods:?}"
    );
    // The veths go with their netns, which the kernel frees a little later.
    let mut tries = 0;
    while veths() != veths_before && tries < 100 {
        std::thread::sleep(Duration::from_millis(200));
        tries += 1;
    }
    assert_eq!(veths(), veths_before, "no veth is left");
    drop(e);
    net.finish();
}
