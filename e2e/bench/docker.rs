//! Docker façade benchmark, with the real docker CLI against berthd:
//!
//! * `docker run --rm <busybox> true`: wall time of the CLI process (create,
//!   attach, wait, start, exit, auto-remove), median and p90 of 30 after 3
//!   warm-up runs; beside it `docker version` (one ping + one request), the
//!   CLI's own start-up and round-trip cost.
//! * the same on a bridge network (bridge + host-local + portmap, the
//!   benchmark's own bridge and /24, removed by the network guard), the
//!   network Docker users get by default;
//! * `docker ps -a` with 100 containers (running `sleep`): median and p90 of
//!   10 runs, beside `docker ps -a` with none; and the same listing without
//!   the CLI's start-up — the Docker API's `GET /containers/json?all=1` and
//!   CRI `ListContainers`, both over their unix sockets, 30 calls each — so
//!   the two doors' cost of one model can be compared;
//! * Debian's docker-compose 1.29: `up -d` and `down -v` of a two-service
//!   project (busybox httpd publishing a port, a client depending on it, a
//!   named volume, a project network on its own /24), median of 5.
//!
//! `cargo bench --bench docker` runs the full measurement
//! (`BERTH_BENCH_BERTHD=PATH`: another berthd, e.g. `target/dist/berthd`). Under `cargo
//! test` (no `--bench` argument) it checks the plumbing with 2 runs and 3
//! containers. Every container it made is removed before the daemon stops.

#[path = "../support/mod.rs"]
mod support;
#[path = "../network/testnet.rs"]
#[allow(dead_code)]
mod testnet;

use std::time::{Duration, Instant};

use support::stats::{ms, percentile};

use support::docker::DockerEnv;

/// Runs `args` `n` times; returns the sorted wall times.
fn time_cli(e: &DockerEnv, args: &[&str], n: usize) -> Vec<Duration> {
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            e.docker(args).ok();
            t.elapsed()
        })
        .collect();
    v.sort();
    v
}

/// `n` Docker API listings and `n` CRI ListContainers, each checked to list
/// `want` containers; returns the sorted times of both.
async fn time_lists(e: &DockerEnv, n: usize, want: usize) -> (Vec<Duration>, Vec<Duration>) {
    let api = e.bollard();
    let mut rt = e.d.runtime_client().await;
    let opts = bollard::query_parameters::ListContainersOptionsBuilder::new()
        .all(true)
        .build();
    // Warm-up: the first call of each opens its connection.
    let _ = api.list_containers(Some(opts.clone())).await;
    let _ = rt
        .list_containers(k8s_cri::v1::ListContainersRequest { filter: None })
        .await;
    let (mut a, mut c) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        let listed = api
            .list_containers(Some(opts.clone()))
            .await
            .expect("GET /containers/json");
        a.push(t.elapsed());
        assert_eq!(listed.len(), want);
        let t = Instant::now();
        let listed = rt
            .list_containers(k8s_cri::v1::ListContainersRequest { filter: None })
            .await
            .expect("ListContainers")
            .into_inner()
            .containers;
        c.push(t.elapsed());
        assert_eq!(listed.len(), want);
    }
    a.sort();
    c.sort();
    (a, c)
}

fn report(what: &str, v: &[Duration]) {
    println!(
        "{what}: median {:.1} ms, p90 {:.1} ms (n={})",
        ms(percentile(v, 0.5)),
        ms(percentile(v, 0.9)),
        v.len()
    );
}

/// `docker-compose up -d` and `down -v` of a two-service project, `n` times.
fn compose_up_down(e: &DockerEnv, n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = format!(
        "version: \"3.7\"\nservices:\n  web:\n    image: {bb}\n    command: [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/data\"]\n    ports: [\"127.0.0.1::80\"]\n    volumes: [\"shared:/data\"]\n  client:\n    image: {bb}\n    depends_on: [web]\n    command: [\"sleep\", \"3600\"]\n    volumes: [\"shared:/data\"]\nvolumes:\n  shared: {{}}\nnetworks:\n  default:\n    ipam:\n      config:\n        - subnet: 10.89.92.0/24\n",
        bb = e.busybox
    );
    std::fs::write(dir.path().join("docker-compose.yml"), file).expect("compose file");
    let compose = |args: &[&str]| {
        let mut c = std::process::Command::new("docker-compose");
        c.args(["-p", "benchc"])
            .args(args)
            .current_dir(dir.path())
            .env("DOCKER_HOST", e.host())
            .env("DOCKER_CONFIG", e.cli_config.path())
            .stdin(std::process::Stdio::null());
        let t = Instant::now();
        let r = support::docker::run(c);
        assert_eq!(r.code, 0, "docker-compose {args:?}: {r:?}");
        t.elapsed()
    };
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for _ in 0..n {
        up.push(compose(&["up", "-d"]));
        down.push(compose(&["down", "-v", "-t", "1"]));
    }
    up.sort();
    down.sort();
    report("docker-compose up -d (2 services, network, volume)", &up);
    report("docker-compose down -v", &down);
    assert_eq!(e.docker(&["ps", "-aq"]).ok().out(), "");
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (runs, containers) = if full { (30, 100) } else { (2, 3) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let binary = support::daemon::bench_berthd();
    let env_with = |extra: &str| rt.block_on(DockerEnv::pulled(&binary, extra));
    let e = env_with("");
    let image = e.busybox.clone();
    for _ in 0..if full { 3 } else { 1 } {
        e.docker(&["run", "--rm", &image, "true"]).ok();
    }
    report(
        "docker version (CLI start-up + ping + request)",
        &time_cli(&e, &["version"], runs),
    );
    report(
        "docker run --rm busybox true",
        &time_cli(&e, &["run", "--rm", &image, "true"], runs),
    );
    {
        let net = rt.block_on(testnet::TestNet::new(testnet::Plugins {
            masq: false,
            portmap: true,
            firewall: false,
        }));
        net.install();
        let b = env_with(&net.yaml());
        let image = b.busybox.clone();
        // Warm-up: the first run also creates the bridge.
        for _ in 0..if full { 3 } else { 1 } {
            b.docker(&["run", "--rm", &image, "true"]).ok();
        }
        report(
            "docker run --rm busybox true (bridge network)",
            &time_cli(&b, &["run", "--rm", &image, "true"], runs),
        );
        assert_eq!(b.docker(&["ps", "-aq"]).ok().out(), "");
        compose_up_down(&b, if full { 5 } else { 1 });
        drop(b);
        net.finish();
    }
    report(
        "docker ps -a, 0 containers",
        &time_cli(&e, &["ps", "-a"], 10),
    );
    for _ in 0..containers {
        e.docker(&["run", "-d", &image, "sleep", "1000"]).ok();
    }
    let listed = e.docker(&["ps", "-aq"]).ok();
    assert_eq!(listed.out().lines().count(), containers);
    report(
        &format!("docker ps -a, {containers} containers"),
        &time_cli(&e, &["ps", "-a"], 10),
    );
    let (api, cri) = rt.block_on(time_lists(&e, 30, containers));
    report(
        &format!("GET /containers/json?all=1, {containers} containers"),
        &api,
    );
    report(
        &format!("CRI ListContainers, {containers} containers"),
        &cri,
    );
    let ids: Vec<String> = listed.out().lines().map(String::from).collect();
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.iter().map(String::as_str));
    e.docker(&rm).ok();
    assert_eq!(e.docker(&["ps", "-aq"]).ok().out(), "");
    drop(e);
}
