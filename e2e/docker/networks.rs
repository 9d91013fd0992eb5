//! `docker network` against berthd: the predefined networks, user networks
//! as CNI configs berth writes (their own bridge, subnet and host-local
//! data), two containers talking over one with the real plugins, and a
//! removal that leaves no bridge, rule or IPAM file behind.

use std::collections::BTreeSet;

use crate::network::testnet::{Plugins, TestNet};
use crate::support::docker::DockerEnv;
use crate::support::net::{free_subnets, iptables_save, links, Ours};

/// Networks made and removed without a container: nothing on the host
/// changes (a bridge appears only when a pod joins), so no lock is needed.
#[tokio::test]
async fn networks_are_listed_created_inspected_and_removed() {
    let e = DockerEnv::without_pull("").await;
    let ls = e
        .docker(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"])
        .ok();
    assert_eq!(ls.out(), "bridge bridge\nhost host\nnone null", "{ls:?}");
    let bridge_id = e
        .docker(&["network", "inspect", "--format", "{{.Id}}", "bridge"])
        .ok();
    assert_eq!(bridge_id.out().len(), 64, "{bridge_id:?}");
    let rm = e.docker(&["network", "rm", "host"]);
    assert_ne!(rm.code, 0);
    assert!(
        rm.stderr
            .contains("host is a pre-defined network and cannot be removed"),
        "{rm:?}"
    );
    let bad = e.docker(&["network", "create", "-d", "macvlan", "mv"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("not found"), "{bad:?}");

    let id = e
        .docker(&["network", "create", "--label", "team=red", "auto"])
        .ok()
        .out()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    let dup = e.docker(&["network", "create", "auto"]);
    assert_ne!(dup.code, 0);
    assert!(
        dup.stderr.contains("network with name auto already exists"),
        "{dup:?}"
    );
    let fmt = "{{.Name}} {{.Id}} {{.Driver}} {{.Scope}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{index .Labels \"team\"}} {{.Internal}}";
    let auto = e
        .docker(&["network", "inspect", "--format", fmt, "auto"])
        .ok();
    let f: Vec<&str> = auto.out().split(' ').collect();
    assert_eq!(f[..4], ["auto", id.as_str(), "bridge", "local"], "{auto:?}");
    assert!(
        f[4].starts_with("10.89.") && f[4].ends_with(".0/24"),
        "{auto:?}"
    );
    assert_eq!(f[5], f[4].replace(".0/24", ".1"), "{auto:?}");
    assert_eq!(f[6..], ["red", "false"], "{auto:?}");
    // The same network by id prefix; a given subnet; an overlapping one.
    let by_prefix = e
        .docker(&["network", "inspect", "--format", "{{.Name}}", &id[..10]])
        .ok();
    assert_eq!(by_prefix.out(), "auto");
    e.docker(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.89.200.0/24",
        "--gateway",
        "10.89.200.254",
        "inner",
    ])
    .ok();
    let inner = e
        .docker(&["network", "inspect", "--format", fmt, "inner"])
        .ok();
    assert!(
        inner
            .out()
            .ends_with("10.89.200.0/24 10.89.200.254 <no value> true"),
        "{inner:?}"
    );
    let clash = e.docker(&["network", "create", "--subnet", "10.89.200.128/25", "x"]);
    assert_ne!(clash.code, 0);
    assert!(clash.stderr.contains("overlaps"), "{clash:?}");
    let files: BTreeSet<String> = std::fs::read_dir(e.d.root().join("networks"))
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        ["auto.conflist", "auto.json", "inner.conflist", "inner.json"]
            .map(String::from)
            .into(),
    );
    let custom = e
        .docker(&[
            "network",
            "ls",
            "--filter",
            "type=custom",
            "--filter",
            "label=team=red",
            "--format",
            "{{.Name}}",
        ])
        .ok();
    assert_eq!(custom.out(), "auto");
    // An unknown network refuses the container.
    let r = e.docker(&["create", "--network", "nosuch", &e.busybox]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("network nosuch not found"), "{r:?}");
    let pruned = e.docker(&["network", "prune", "-f"]).ok();
    assert!(
        pruned.stdout.contains("auto") && pruned.stdout.contains("inner"),
        "{pruned:?}"
    );
    let ls = e.docker(&["network", "ls", "--format", "{{.Name}}"]).ok();
    assert_eq!(ls.out(), "bridge\nhost\nnone");
    assert!(std::fs::read_dir(e.d.root().join("networks"))
        .unwrap()
        .next()
        .is_none());
}

/// The host lines that name `ours` (its network, bridge or /24).
fn our_rules(ours: &Ours) -> Vec<String> {
    let mut v: Vec<String> = [
        iptables_save("iptables-save"),
        iptables_save("ip6tables-save"),
    ]
    .iter()
    .flat_map(|t| t.lines().map(String::from).collect::<Vec<_>>())
    .filter(|l| ours.mentions(l))
    .collect();
    v.sort();
    v
}

#[tokio::test]
async fn containers_on_a_user_network_reach_each_other() {
    let net = TestNet::new(Plugins {
        portmap: true,
        ..Default::default()
    })
    .await;
    net.install();
    free_subnets(&["10.89.77."]);
    let before_ipt = [
        iptables_save("iptables-save"),
        iptables_save("ip6tables-save"),
    ];
    let e = DockerEnv::new(&net.yaml()).await;
    let id = e
        .docker(&["network", "create", "--subnet", "10.89.77.0/24", "mynet"])
        .ok()
        .out()
        .to_string();
    let bridge = format!("br-{}", &id[..12]);
    let ours = Ours {
        name: "mynet".into(),
        bridge: bridge.clone(),
        prefix: [10, 89, 77],
    };
    let before: Vec<String> = {
        let mut v: Vec<String> = before_ipt
            .iter()
            .flat_map(|t| t.lines().map(String::from).collect::<Vec<_>>())
            .filter(|l| ours.mentions(l))
            .collect();
        v.sort();
        v
    };
    let ls = e
        .docker(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"])
        .ok();
    assert_eq!(
        ls.out(),
        "bridge bridge\nhost host\nmynet bridge\nnone null",
        "{ls:?}"
    );
    let bridge_subnet = e
        .docker(&[
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            "bridge",
        ])
        .ok();
    assert_eq!(
        bridge_subnet.out(),
        net.subnet(),
        "the default network's IPAM"
    );
    let token = crate::support::pods::unique("over-mynet");
    e.docker(&[
        "run",
        "-d",
        "--network",
        "mynet",
        "--name",
        "a",
        &e.busybox,
        "sh",
        "-c",
        &format!("mkdir -p /www && echo {token} > /www/index.html && exec httpd -f -p 80 -h /www"),
    ])
    .ok();
    let ip = e
        .docker(&[
            "inspect",
            "--format",
            "{{.NetworkSettings.Networks.mynet.IPAddress}}",
            "a",
        ])
        .ok()
        .out()
        .to_string();
    assert!(
        ip.starts_with("10.89.77."),
        "a's IP {ip:?} in 10.89.77.0/24"
    );
    let mode = e
        .docker(&["inspect", "--format", "{{.HostConfig.NetworkMode}}", "a"])
        .ok();
    assert_eq!(mode.out(), "mynet");
    assert!(links().contains(&bridge), "the network's bridge {bridge}");
    // A second container on the network fetches a's page (httpd may still
    // be starting: the client retries inside the container).
    let fetch =
        format!("for i in $(seq 50); do wget -qO- http://{ip}/ && exit 0; sleep 0.2; done; exit 1");
    let got = e
        .docker(&[
            "run",
            "--rm",
            "--network",
            "mynet",
            &e.busybox,
            "sh",
            "-c",
            &fetch,
        ])
        .ok();
    assert_eq!(got.out(), token);
    // host-gateway: the host's address on this network (its bridge's, the
    // gateway host-local gave), which the container reaches.
    let gw = e
        .docker(&[
            "run",
            "--rm",
            "--network",
            "mynet",
            "--add-host",
            "host.docker.internal:host-gateway",
            &e.busybox,
            "sh",
            "-c",
            "grep host.docker.internal /etc/hosts; ping -c1 -W5 host.docker.internal >/dev/null && echo reached",
        ])
        .ok();
    assert_eq!(
        gw.out(),
        "10.89.77.1\thost.docker.internal\nreached",
        "{gw:?}"
    );
    let members = e
        .docker(&[
            "network",
            "inspect",
            "--format",
            "{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}}",
            "mynet",
        ])
        .ok();
    assert_eq!(members.out(), format!("a {ip}/24"));
    // The host's network is no network to join (connect: docker/connect.rs).
    let connect = e.docker(&["network", "connect", "host", "a"]);
    assert_ne!(connect.code, 0);
    assert!(
        connect.stderr.contains("connected to host network"),
        "{connect:?}"
    );
    let busy = e.docker(&["network", "rm", "mynet"]);
    assert_ne!(busy.code, 0);
    assert!(
        busy.stderr.contains(&format!(
            "error while removing network: network mynet id {id} has active endpoints"
        )),
        "{busy:?}"
    );
    e.docker(&["rm", "-f", "a"]).ok();
    e.docker(&["network", "rm", "mynet"]).ok();
    assert!(!links().contains(&bridge), "{bridge} went with the network");
    let ipam = e.d.root().join("networks").join("ipam").join("mynet");
    assert!(!ipam.exists(), "{} is gone", ipam.display());
    assert_eq!(
        our_rules(&ours),
        before,
        "no iptables rule of mynet is left"
    );
    drop(e);
    net.finish();
}
