//! Docker's sidecar pattern with the docker CLI: `--network container:X`
//! (the target's netns: its loopback, address, hostname and /etc/hosts;
//! nothing of its own in inspect), the options Docker refuses with it, a
//! start refused while the target is not running; `--pid container:X`
//! and `--ipc container:X` (with a shareable donor); and the `publish` /
//! `expose` filters of `docker ps`.

use crate::network::testnet::{Plugins, TestNet};
use crate::support::docker::DockerEnv;

fn inspect(e: &DockerEnv, format: &str, ctr: &str) -> String {
    e.docker(&["inspect", "--format", format, ctr])
        .ok()
        .out()
        .to_string()
}

/// stderr of a CLI run that must fail.
fn fails(e: &DockerEnv, args: &[&str]) -> String {
    let r = e.docker(args);
    assert_ne!(r.code, 0, "{args:?} should fail: {r:?}");
    r.stderr
}

#[tokio::test]
async fn network_container_mode_shares_the_targets_network() {
    let net = TestNet::new(Plugins::default()).await;
    net.install();
    let e = DockerEnv::new(&net.yaml()).await;
    let bb = e.busybox.clone();
    let token = crate::support::pods::unique("from-web");
    // A server on the target's loopback only.
    let web_id = e
        .docker(&[
            "run",
            "-d",
            "--name",
            "web",
            "--hostname",
            "webhost",
            &bb,
            "sh",
            "-c",
            &format!(
                "mkdir -p /www && echo {token} > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"
            ),
        ])
        .ok()
        .out()
        .to_string();
    let web_ip = inspect(&e, "{{.NetworkSettings.IPAddress}}", "web");
    assert!(net.contains(&web_ip), "{web_ip} in {}", net.subnet());

    // localhost is shared: B reaches A's 127.0.0.1 server. httpd may not
    // listen yet when the first try runs: a few tries, no timing asserted.
    let mut got = None;
    for _ in 0..30 {
        let r = e.docker(&[
            "run",
            "--rm",
            "--network",
            "container:web",
            &bb,
            "wget",
            "-qO-",
            "http://127.0.0.1:8080/",
        ]);
        if r.code == 0 {
            got = Some(r.stdout);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(got.as_deref().map(str::trim), Some(token.as_str()));

    // The same address, interfaces, hostname and /etc/hosts.
    let side = e
        .docker(&[
            "run",
            "-d",
            "--name",
            "side",
            "--network",
            "container:web",
            &bb,
            "sleep",
            "600",
        ])
        .ok()
        .out()
        .to_string();
    let addr = |ctr: &str| {
        e.docker(&["exec", ctr, "ip", "-4", "-o", "addr", "show", "eth0"])
            .ok()
            .stdout
    };
    assert!(
        addr("side").contains(&format!("inet {web_ip}/")),
        "{}",
        addr("side")
    );
    assert_eq!(addr("side"), addr("web"));
    assert_eq!(
        e.docker(&["exec", "side", "hostname"]).ok().out(),
        "webhost"
    );
    let hosts = |ctr: &str| e.docker(&["exec", ctr, "cat", "/etc/hosts"]).ok().stdout;
    assert_eq!(hosts("side"), hosts("web"));
    let resolv = |ctr: &str| {
        e.docker(&["exec", ctr, "cat", "/etc/resolv.conf"])
            .ok()
            .stdout
    };
    assert_eq!(resolv("side"), resolv("web"));
    let netns = |ctr: &str| {
        e.docker(&["exec", ctr, "readlink", "/proc/self/ns/net"])
            .ok()
            .stdout
    };
    assert_eq!(netns("side"), netns("web"));

    // inspect: the target by full id, no network of its own; A unchanged.
    assert_eq!(
        inspect(&e, "{{.HostConfig.NetworkMode}}", &side),
        format!("container:{web_id}")
    );
    assert_eq!(
        inspect(&e, "{{json .NetworkSettings.Networks}}", "side"),
        "{}"
    );
    assert_eq!(inspect(&e, "{{.HostConfig.NetworkMode}}", "web"), "bridge");
    assert_eq!(inspect(&e, "{{.NetworkSettings.IPAddress}}", "web"), web_ip);
    let ps = e
        .docker(&[
            "ps",
            "--filter",
            "name=web",
            "--format",
            "{{.Names}} {{.Networks}}",
        ])
        .ok();
    assert_eq!(ps.out(), "web bridge");

    // Options Docker refuses with a joined network, in its words.
    for (opt, want) in [
        (
            vec!["-p", "8081:80"],
            "conflicting options: port publishing and the container type network mode",
        ),
        (
            vec!["--expose", "81"],
            "conflicting options: port exposing and the container type network mode",
        ),
        (
            vec!["--hostname", "other"],
            "conflicting options: hostname and the network mode",
        ),
        (
            vec!["--dns", "192.0.2.53"],
            "conflicting options: dns and the network mode",
        ),
        (
            vec!["--add-host", "x:192.0.2.1"],
            "conflicting options: custom host-to-IP mapping and the network mode",
        ),
        (
            vec!["--mac-address", "02:42:ac:11:00:99"],
            "conflicting options: mac-address and the network mode",
        ),
        (
            vec!["--network-alias", "nick"],
            "network-scoped aliases are only supported for user-defined networks",
        ),
    ] {
        let mut args = vec!["create", "--network", "container:web"];
        args.extend(opt.iter().copied());
        args.extend([bb.as_str(), "true"]);
        let err = fails(&e, &args);
        assert!(err.contains(want), "{opt:?}: {err}");
    }
    let err = fails(
        &e,
        &["create", "--network", "container:nosuch", &bb, "true"],
    );
    assert!(err.contains("No such container: nosuch"), "{err}");
    let err = fails(&e, &["network", "connect", "bridge", "side"]);
    assert!(
        err.contains("container sharing network namespace with another container"),
        "{err}"
    );

    // A start while the target is not running is refused.
    e.docker(&[
        "create",
        "--name",
        "late",
        "--network",
        "container:web",
        &bb,
        "true",
    ])
    .ok();
    e.docker(&["stop", "-t", "1", "web"]).ok();
    let err = fails(&e, &["start", "late"]);
    assert!(
        err.contains("cannot join network of a non running container"),
        "{err}"
    );
    e.docker(&["start", "web"]).ok();
    e.docker(&["start", "-a", "late"]).ok();
    // The target removed: a running joiner keeps the namespace (as in
    // Docker), its next start is refused.
    e.docker(&["rm", "-f", "web"]).ok();
    assert_eq!(inspect(&e, "{{.State.Running}}", "side"), "true");
    e.docker(&["exec", "side", "true"]).ok();
    let err = fails(&e, &["start", "late"]);
    assert!(
        err.contains("cannot join network of a non running container"),
        "{err}"
    );
    e.docker(&["rm", "-f", "side", "late"]).ok();
    assert!(net.reserved_ips().is_empty(), "{:?}", net.ipam_files());
    drop(e);
    net.finish();
}

#[tokio::test]
async fn pid_and_ipc_container_modes_share_the_targets_namespaces() {
    let e = DockerEnv::new("").await;
    let bb = e.busybox.clone();
    e.docker(&[
        "run",
        "-d",
        "--name",
        "a",
        "--network",
        "none",
        "--ipc",
        "shareable",
        &bb,
        "sleep",
        "4321",
    ])
    .ok();
    // PID: B lists A's process; B's own is not pid 1.
    let ps = e
        .docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--pid",
            "container:a",
            &bb,
            "ps",
            "-o",
            "pid,args",
        ])
        .ok();
    let first = ps
        .stdout
        .lines()
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        first.starts_with("1 ") && first.contains("sleep 4321"),
        "{ps:?}"
    );
    // IPC: the same namespace; a segment A's /dev/shm holds is seen in B.
    let ipc = |args: &[&str]| e.docker(args).ok().out().to_string();
    let a_ipc = ipc(&["exec", "a", "readlink", "/proc/self/ns/ipc"]);
    let b_ipc = ipc(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--ipc",
        "container:a",
        &bb,
        "readlink",
        "/proc/self/ns/ipc",
    ]);
    assert_eq!(a_ipc, b_ipc);
    e.docker(&["exec", "a", "sh", "-c", "echo shared > /dev/shm/mark"])
        .ok();
    let mark = ipc(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--ipc",
        "container:a",
        &bb,
        "cat",
        "/dev/shm/mark",
    ]);
    assert_eq!(mark, "shared");
    let own = ipc(&[
        "run",
        "--rm",
        "--network",
        "none",
        &bb,
        "readlink",
        "/proc/self/ns/ipc",
    ]);
    assert_ne!(own, a_ipc);
    // A donor of the default (private) IPC mode lends nothing, as in Docker.
    e.docker(&[
        "run",
        "-d",
        "--name",
        "private",
        "--network",
        "none",
        &bb,
        "sleep",
        "600",
    ])
    .ok();
    let err = fails(
        &e,
        &[
            "create",
            "--network",
            "none",
            "--ipc",
            "container:private",
            &bb,
            "true",
        ],
    );
    assert!(err.contains("non-shareable IPC"), "{err}");
    // B restarted after A restarted: A's new process's namespace.
    e.docker(&[
        "create",
        "--name",
        "b",
        "--network",
        "none",
        "--pid",
        "container:a",
        &bb,
        "ps",
        "-o",
        "args",
    ])
    .ok();
    e.docker(&["restart", "-t", "1", "a"]).ok();
    let out = e.docker(&["start", "-a", "b"]).ok();
    assert!(out.stdout.contains("sleep 4321"), "{out:?}");
    e.docker(&["stop", "-t", "1", "a"]).ok();
    let err = fails(&e, &["start", "b"]);
    assert!(
        err.contains("cannot join PID of a non running container"),
        "{err}"
    );
    e.docker(&["rm", "-f", "a", "b", "private"]).ok();
}

#[tokio::test]
async fn ps_filters_by_published_and_exposed_ports() {
    let net = TestNet::new(Plugins {
        portmap: true,
        ..Default::default()
    })
    .await;
    net.install();
    let e = DockerEnv::new(&net.yaml()).await;
    let bb = e.busybox.clone();
    let port = crate::support::free_port();
    let publish = format!("127.0.0.1:{port}:80");
    e.docker(&[
        "run", "-d", "--name", "pub", "-p", &publish, &bb, "sleep", "600",
    ])
    .ok();
    e.docker(&[
        "run",
        "-d",
        "--name",
        "exp",
        "--expose",
        "8000-8002",
        "--expose",
        "53/udp",
        &bb,
        "sleep",
        "600",
    ])
    .ok();
    e.docker(&["run", "-d", "--name", "plain", &bb, "sleep", "600"])
        .ok();
    let names = |filter: &str| {
        let mut v: Vec<String> = e
            .docker(&["ps", "--filter", filter, "--format", "{{.Names}}"])
            .ok()
            .stdout
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v.join(",")
    };
    assert_eq!(names("publish=80"), "pub");
    assert_eq!(names("publish=80/tcp"), "pub");
    assert_eq!(names("publish=80/udp"), "");
    assert_eq!(names("publish=70-90"), "pub");
    // -p exposes the port too, as Docker's CLI sends it.
    assert_eq!(names("expose=80"), "pub");
    assert_eq!(names("expose=8001"), "exp");
    assert_eq!(names("expose=53/udp"), "exp");
    assert_eq!(names("expose=53"), "");
    assert_eq!(names("expose=7990-8000/tcp"), "exp");
    assert_eq!(names("publish=8001"), "");
    let err = fails(&e, &["ps", "--filter", "publish=1:80"]);
    assert!(err.contains("should not contain ':'"), "{err}");
    let err = fails(&e, &["ps", "--filter", "expose=nope"]);
    assert!(
        err.contains("error while looking up for expose nope"),
        "{err}"
    );
    e.docker(&["rm", "-f", "pub", "exp", "plain"]).ok();
    assert!(net.reserved_ips().is_empty(), "{:?}", net.ipam_files());
    drop(e);
    net.finish();
}

/// docker-compose 1.29's `network_mode: "service:web"` (sent as
/// `container:<web's id>`): the sidecar reaches web's loopback server and
/// `down` removes both.
#[tokio::test]
async fn compose_service_network_mode() {
    use std::process::{Command, Stdio};
    let net = TestNet::new(Plugins::default()).await;
    net.install();
    let e = DockerEnv::new(&net.yaml()).await;
    let token = crate::support::pods::unique("compose-side");
    let dir = tempfile::tempdir().unwrap();
    let file = format!(
        r#"version: "3.7"
services:
  web:
    image: {bb}
    network_mode: bridge
    command: ["sh", "-c", "mkdir -p /www && echo {token} > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"]
  side:
    image: {bb}
    network_mode: "service:web"
    command: ["sleep", "3600"]
"#,
        bb = e.busybox
    );
    std::fs::write(dir.path().join("docker-compose.yml"), file).unwrap();
    let compose = |args: &[&str]| {
        let mut c = Command::new("docker-compose");
        c.arg("-p")
            .arg("berthside")
            .args(args)
            .current_dir(dir.path())
            .env("DOCKER_HOST", e.host())
            .env("DOCKER_CONFIG", e.cli_config.path())
            .env_remove("DOCKER_API_VERSION")
            .env_remove("COMPOSE_API_VERSION")
            .stdin(Stdio::null());
        crate::support::docker::run(c)
    };
    let up = compose(&["up", "-d"]);
    assert_eq!(up.code, 0, "{up:?}");
    let web_id = inspect(&e, "{{.Id}}", "berthside_web_1");
    assert_eq!(
        inspect(&e, "{{.HostConfig.NetworkMode}}", "berthside_side_1"),
        format!("container:{web_id}")
    );
    let mut got = None;
    for _ in 0..30 {
        let r = e.docker(&[
            "exec",
            "berthside_side_1",
            "wget",
            "-qO-",
            "http://127.0.0.1:8080/",
        ]);
        if r.code == 0 {
            got = Some(r.stdout);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let down = compose(&["down", "-t", "0"]);
    assert_eq!(down.code, 0, "{down:?}");
    assert_eq!(got.as_deref().map(str::trim), Some(token.as_str()));
    let left = e.docker(&["ps", "-aq"]).ok();
    assert_eq!(left.out(), "", "down removed both");
    assert!(net.reserved_ips().is_empty(), "{:?}", net.ipam_files());
    drop(e);
    net.finish();
}
