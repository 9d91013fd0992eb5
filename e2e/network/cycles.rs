//! Many pod life cycles on a bridge + masquerade + portmap + firewall
//! network leak nothing: after 200 RunPodSandbox / StopPodSandbox /
//! RemovePodSandbox cycles the host-local pool, `ip netns`, the veths on the
//! network's bridge and iptables are exactly as after one warm-up cycle
//! (the plugins create their shared chains once and never remove them).
//!
//! The host is shared with other test sessions whose pods come and go, so
//! iptables are compared on this network's rules plus the shared chains'
//! fixed rules, and veths on this network's bridge.
//!
//! 200 cycles took 97-121 s on the 2-core test VM (debug build, about
//! 0.5-0.6 s per cycle: ns-pin, infra process under crun, bridge +
//! portmap + firewall ADD and DEL); the test prints its time.

use std::collections::BTreeSet;
use std::time::Instant;

use k8s_cri::v1::{PortMapping, Protocol};

use super::testnet::{Plugins, TestNet};
use super::{cni_count, cni_ops, env, pod_ip};
use crate::runtime::Env;
use crate::support::free_port;
use crate::support::net;
use crate::support::pods;

const CYCLES: usize = 200;

/// What one cycle must not leave behind.
#[derive(Debug, PartialEq, Eq)]
struct Leftovers {
    ipam_files: BTreeSet<String>,
    netns: BTreeSet<String>,
    bridge_ports: BTreeSet<String>,
    rules: Vec<String>,
    cache: BTreeSet<String>,
    pod_dirs: BTreeSet<String>,
}

fn names(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn leftovers(net: &TestNet, e: &Env) -> Leftovers {
    Leftovers {
        ipam_files: net.ipam_files(),
        netns: net::netns(),
        bridge_ports: net::bridge_ports(&net.bridge),
        rules: net.tracked_rules(),
        cache: names(&e.d.root().join("cni/cache")),
        pod_dirs: names(&e.d.state().join("pods")),
    }
}

/// One cycle; returns the pod's IP.
async fn cycle(e: &mut Env, net: &TestNet, i: usize, port: u16) -> String {
    let mut cfg = e.pod_config(&format!("cycle-{i}"));
    cfg.port_mappings.push(PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 80,
        host_port: i32::from(port),
        host_ip: "127.0.0.1".into(),
    });
    let pod = e.pod(&cfg).await;
    let ip = pod_ip(&mut e.rt, &pod).await;
    assert!(net.contains(&ip), "cycle {i}: {ip} in {}", net.subnet());
    pods::stop_pod(&mut e.rt, &pod)
        .await
        .unwrap_or_else(|err| panic!("cycle {i}: StopPodSandbox: {err:?}\n{}", e.log_tail()));
    pods::remove_pod(&mut e.rt, &pod)
        .await
        .unwrap_or_else(|err| panic!("cycle {i}: RemovePodSandbox: {err:?}\n{}", e.log_tail()));
    ip
}

#[tokio::test]
async fn pod_cycles_leak_no_ips_interfaces_or_rules() {
    let net = TestNet::new(Plugins {
        masq: true,
        portmap: true,
        firewall: true,
    })
    .await;
    net.install();
    let mut e = env(&net).await;
    let port = free_port();

    // Warm-up, watching the pod's veth come and go.
    let mut cfg = e.pod_config("warm-up");
    cfg.port_mappings.push(PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 80,
        host_port: i32::from(port),
        host_ip: "127.0.0.1".into(),
    });
    let pod = e.pod(&cfg).await;
    let ip = pod_ip(&mut e.rt, &pod).await;
    assert_eq!(net.reserved_ips(), BTreeSet::from([ip.clone()]));
    let ports = net::bridge_ports(&net.bridge);
    assert_eq!(
        ports.len(),
        1,
        "the pod has one veth on the bridge: {ports:?}"
    );
    let veth = ports.into_iter().next().expect("a port");
    assert!(net::veths().contains(&veth), "{veth} is a veth");
    let rules_with_pod = net.tracked_rules().join("\n");
    pods::stop_pod(&mut e.rt, &pod).await.expect("stop warm-up");
    pods::remove_pod(&mut e.rt, &pod)
        .await
        .expect("remove warm-up");
    let baseline = leftovers(&net, &e);
    assert!(
        net.reserved_ips().is_empty(),
        "warm-up released its IP: {:?}",
        baseline.ipam_files
    );
    assert!(
        baseline.bridge_ports.is_empty(),
        "{:?}",
        baseline.bridge_ports
    );
    assert!(
        !net::links().contains(&veth),
        "the warm-up pod's veth {veth} is gone"
    );
    assert!(baseline.cache.is_empty(), "{:?}", baseline.cache);
    let ip_rule = format!("{ip}/32");
    assert!(
        rules_with_pod.contains(&ip_rule) && !baseline.rules.join("\n").contains(&ip_rule),
        "the pod's own rules name its IP and went with it:\n{rules_with_pod}\n--\n{:#?}",
        baseline.rules
    );

    let start = Instant::now();
    let mut ips = BTreeSet::new();
    for i in 0..CYCLES {
        ips.insert(cycle(&mut e, &net, i, port).await);
    }
    let took = start.elapsed();
    eprintln!(
        "{CYCLES} pod cycles (run + stop + remove with CNI ADD/DEL) took {took:?}, {:?} each",
        took / CYCLES as u32
    );
    eprintln!("{} distinct pod IPs handed out", ips.len());

    let after = leftovers(&net, &e);
    assert_eq!(after, baseline, "{CYCLES} cycles left something behind");
    let ops = cni_ops(&e.d);
    let pods_run = CYCLES as u64 + 1;
    assert_eq!(cni_count(&ops, "add", "success"), pods_run, "{ops:?}");
    assert_eq!(cni_count(&ops, "add", "failure"), 0, "{ops:?}");
    assert_eq!(cni_count(&ops, "del", "failure"), 0, "{ops:?}");
    assert_eq!(
        cni_count(&ops, "del", "success"),
        pods_run,
        "one DEL per pod (at StopPodSandbox): {ops:?}"
    );
    drop(e);
    net.finish();
}
