//! Embedded DNS benchmark: lookup latency of the 127.0.0.11 server of a
//! user network, with a real berthd, real containers and the CNI bridge.
//!
//! * a query's round trip, timed by this process from a UDP socket inside
//!   a container's network namespace (a thread that setns()es into it):
//!   median and p90 of 100, for a name of the network (answered from the
//!   table) and for a name forwarded to an upstream server this benchmark
//!   runs on 127.0.0.78;
//! * `nslookup` in the container, 100 in a loop inside one `docker exec`,
//!   timed from the host: per lookup including busybox's own start-up,
//!   beside a `docker exec … true` of the same container.
//!
//! `cargo bench --bench dns` runs the full measurement; under `cargo test`
//! it checks the plumbing with 5 lookups. Everything it made is removed
//! before the daemon stops, and the network guard puts the host back.

#[path = "../support/mod.rs"]
mod support;
#[path = "../network/testnet.rs"]
#[allow(dead_code)]
mod testnet;

use std::net::{Ipv4Addr, UdpSocket};

use std::time::{Duration, Instant};
use support::stats::{ms, percentile};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use support::dns::Upstream;
use support::docker::DockerEnv;

fn report(what: &str, v: &[Duration]) {
    println!(
        "{what}: median {:.3} ms, p90 {:.3} ms (n={})",
        ms(percentile(v, 0.5)),
        ms(percentile(v, 0.9)),
        v.len()
    );
}

/// `n` A queries for `name` to 127.0.0.11:53 from a socket in the network
/// namespace of process `pid`; the sorted round trips.
fn time_queries(pid: u32, name: &str, n: usize) -> Vec<Duration> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("open the netns");
    let name = name.to_string();
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.connect("127.0.0.11:53").expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut out = Vec::with_capacity(n);
        let mut buf = vec![0u8; 4096];
        for i in 0..n {
            let mut m = Message::new();
            m.set_id(i as u16).set_recursion_desired(true);
            m.add_query(Query::query(
                Name::from_ascii(format!("{name}.")).expect("name"),
                RecordType::A,
            ));
            let q = m.to_vec().expect("encode");
            let t = Instant::now();
            sock.send(&q).expect("send");
            let got = sock.recv(&mut buf).expect("an answer");
            out.push(t.elapsed());
            let a = Message::from_vec(&buf[..got]).expect("decode");
            assert_eq!(a.id(), i as u16);
            assert_eq!(a.answers().len(), 1, "{name}: {a:?}");
        }
        out.sort();
        out
    })
    .join()
    .expect("query thread")
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 100 } else { 5 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let upstream = Upstream::start(
        Ipv4Addr::new(127, 0, 0, 78),
        &[("outside.test", Ipv4Addr::new(192, 0, 2, 56))],
    );
    let net = rt.block_on(testnet::TestNet::new(testnet::Plugins {
        masq: false,
        portmap: true,
        firewall: false,
    }));
    net.install();
    let extra = format!(
        "{}docker:\n  dns:\n    upstreams: [\"{}\"]\n",
        net.yaml(),
        upstream.addr
    );
    let e = rt.block_on(DockerEnv::new(&extra));
    let bb = e.busybox.clone();
    e.docker(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.89.79.0/24",
        "benchdns",
    ])
    .ok();
    for name in ["web", "client"] {
        e.docker(&[
            "run",
            "-d",
            "--network",
            "benchdns",
            "--name",
            name,
            &bb,
            "sleep",
            "600",
        ])
        .ok();
    }
    let pid: u32 = e
        .docker(&["inspect", "--format", "{{.State.Pid}}", "client"])
        .ok()
        .out()
        .parse()
        .expect("a pid");
    // Warm-up.
    time_queries(pid, "web", 3);
    report(
        "DNS query round trip from a container's netns, a name of the network",
        &time_queries(pid, "web", n),
    );
    report(
        "DNS query round trip from a container's netns, forwarded to a loopback upstream",
        &time_queries(pid, "outside.test", n),
    );
    let loop_cmd =
        format!("for i in $(seq {n}); do nslookup -type=a web >/dev/null || exit 1; done");
    let t = Instant::now();
    e.docker(&["exec", "client", "sh", "-c", &loop_cmd]).ok();
    let looped = t.elapsed();
    let t = Instant::now();
    e.docker(&["exec", "client", "true"]).ok();
    let exec = t.elapsed();
    println!(
        "nslookup in the container ({n} in one docker exec): {:.2} ms per lookup, busybox start-up included (docker exec true: {:.1} ms)",
        ms(looped.saturating_sub(exec)) / n as f64,
        ms(exec)
    );
    e.docker(&["rm", "-f", "web", "client"]).ok();
    e.docker(&["network", "rm", "benchdns"]).ok();
    assert_eq!(e.docker(&["ps", "-aq"]).ok().out(), "");
    drop(e);
    drop(upstream);
    net.finish();
}
