//! Docker networking on the real CNI plugins: `docker run -p` publishes a
//! port through portmap, inspect shows the bridge IP, `--network host` and
//! `--network none`; `-v` bind mounts.

use std::net::SocketAddr;
use std::time::Duration;

use crate::network::http_get;
use crate::network::testnet::{Plugins, TestNet};
use crate::support::docker::DockerEnv;
use crate::support::{free_port, wait_until};

async fn get(addr: SocketAddr) -> Result<String, String> {
    tokio::task::spawn_blocking(move || http_get(addr, "/index.html"))
        .await
        .expect("http task")
}

#[tokio::test]
async fn published_port_answers_http_and_goes_with_the_container() {
    let net = TestNet::new(Plugins {
        portmap: true,
        ..Default::default()
    })
    .await;
    net.install();
    let e = DockerEnv::new(&net.yaml()).await;
    let port = free_port();
    let token = crate::support::pods::unique("served-by-docker");
    let publish = format!("127.0.0.1:{port}:80");
    e.docker(&[
        "run",
        "-d",
        "--name",
        "www",
        "-p",
        &publish,
        &e.busybox,
        "sh",
        "-c",
        &format!("mkdir -p /www && echo {token} > /www/index.html && exec httpd -f -p 80 -h /www"),
    ])
    .ok();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let body = wait_until(
        &format!("the container to answer on {addr}"),
        Duration::from_secs(30),
        || async move { get(addr).await.ok() },
    )
    .await;
    assert_eq!(body.trim(), token);
    let ports = e.docker(&["port", "www"]).ok();
    assert_eq!(ports.out(), format!("80/tcp -> 127.0.0.1:{port}"));
    let ps = e.docker(&["ps", "--format", "{{.Ports}}"]).ok();
    assert_eq!(ps.out(), format!("127.0.0.1:{port}->80/tcp"));
    let ip = e
        .docker(&[
            "inspect",
            "--format",
            "{{.NetworkSettings.IPAddress}}",
            "www",
        ])
        .ok()
        .out()
        .to_string();
    assert!(net.contains(&ip), "{ip} in {}", net.subnet());
    // --network none: only loopback; --network host: the host's interfaces.
    let none = e
        .docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            &e.busybox,
            "ls",
            "/sys/class/net",
        ])
        .ok();
    assert_eq!(none.out(), "lo");
    let host = e
        .docker(&[
            "run",
            "--rm",
            "--network",
            "host",
            &e.busybox,
            "ls",
            "/sys/class/net",
        ])
        .ok();
    assert!(host.out().lines().any(|l| l == net.bridge), "{host:?}");
    e.docker(&["rm", "-f", "www"]).ok();
    assert!(
        get(addr).await.is_err(),
        "the mapping went with the container"
    );
    assert!(net.reserved_ips().is_empty(), "{:?}", net.ipam_files());
    drop(e);
    net.finish();
}

#[tokio::test]
async fn bind_mounts_and_named_volumes() {
    let e = DockerEnv::new("").await;
    let host = crate::support::short_tempdir("bm");
    std::fs::write(host.path().join("in.txt"), "from the host\n").unwrap();
    let bind = format!("{}:/data", host.path().display());
    let r = e
        .docker(&[
            "run",
            "--rm",
            "-v",
            &bind,
            &e.busybox,
            "sh",
            "-c",
            "cat /data/in.txt; echo from the container > /data/out.txt",
        ])
        .ok();
    assert_eq!(r.stdout, "from the host\n");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out.txt")).unwrap(),
        "from the container\n"
    );
    let ro = format!("{}:/data:ro", host.path().display());
    let r = e.docker(&["run", "--rm", "-v", &ro, &e.busybox, "touch", "/data/x"]);
    assert_ne!(r.code, 0, "a read-only bind refuses writes: {r:?}");
    assert!(!host.path().join("x").exists());
    // A named volume keeps data between containers.
    e.docker(&[
        "run",
        "--rm",
        "-v",
        "keep:/v",
        &e.busybox,
        "sh",
        "-c",
        "echo kept > /v/f",
    ])
    .ok();
    let r = e
        .docker(&["run", "--rm", "-v", "keep:/v", &e.busybox, "cat", "/v/f"])
        .ok();
    assert_eq!(r.stdout, "kept\n");
    let m = e
        .docker(&["create", "--name", "m", "-v", &bind, &e.busybox])
        .ok();
    let _ = m;
    let mounts = e
        .docker(&[
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Type}} {{.Source}} {{.Destination}} {{.RW}}{{end}}",
            "m",
        ])
        .ok();
    assert_eq!(
        mounts.out(),
        format!("bind {} /data true", host.path().display())
    );
    e.docker(&["rm", "m"]).ok();
}
