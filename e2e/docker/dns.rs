//! The embedded DNS server of user networks (127.0.0.11 in each
//! container's namespace) with the docker CLI and busybox `nslookup`:
//! names, aliases and short ids of the network's containers, an alias
//! shared by two containers answering both, names leaving with their
//! container, other names forwarded to an upstream server this test runs
//! on the host's loopback (berthd's `docker.dns.upstreams`), the default
//! bridge without names, and resolution again after a berthd restart.
//! No query leaves 127.0.0.0/8 and the test's own namespaces.

use std::net::Ipv4Addr;

use crate::network::testnet::{Plugins, TestNet};
use crate::support::dns::Upstream;
use crate::support::docker::DockerEnv;
use crate::support::net::{free_subnets, iptables_save, Ours};

/// The addresses `nslookup -type=a <name>` in container `ctr` printed
/// (the server's own lines left out), and whether it succeeded.
fn lookup(e: &DockerEnv, ctr: &str, name: &str) -> (bool, Vec<String>, String) {
    let r = e.docker(&["exec", ctr, "nslookup", "-type=a", name]);
    let ips = r
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Address:"))
        .map(str::trim)
        .filter(|a| !a.contains(':') && *a != "127.0.0.11")
        .map(String::from)
        .collect();
    (r.code == 0, ips, format!("{r:?}"))
}

fn ip_of(e: &DockerEnv, ctr: &str) -> String {
    e.docker(&[
        "inspect",
        "--format",
        "{{.NetworkSettings.Networks.dnsnet.IPAddress}}",
        ctr,
    ])
    .ok()
    .out()
    .to_string()
}

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
async fn user_network_names_resolve_and_the_rest_is_forwarded() {
    let upstream = Upstream::start(
        Ipv4Addr::new(127, 0, 0, 77),
        &[("outside.test", Ipv4Addr::new(192, 0, 2, 55))],
    );
    let net = TestNet::new(Plugins {
        portmap: true,
        ..Default::default()
    })
    .await;
    net.install();
    free_subnets(&["10.89.93."]);
    let extra = format!(
        "{}docker:\n  dns:\n    upstreams: [\"{}\"]\n",
        net.yaml(),
        upstream.addr
    );
    let mut e = DockerEnv::new(&extra).await;
    // Internal: no masquerading, nothing routed out of the subnet.
    let id = e
        .docker(&[
            "network",
            "create",
            "--internal",
            "--subnet",
            "10.89.93.0/24",
            "dnsnet",
        ])
        .ok()
        .out()
        .to_string();
    let ours = Ours {
        name: "dnsnet".into(),
        bridge: format!("br-{}", &id[..12]),
        prefix: [10, 89, 78],
    };
    let rules_before = our_rules(&ours);
    let bb = e.busybox.clone();
    let on_net = |name: &str, alias: Option<&str>| {
        let mut args = vec!["run", "-d", "--network", "dnsnet", "--name", name];
        if let Some(a) = alias {
            args.extend(["--network-alias", a]);
        }
        args.extend([bb.as_str(), "sleep", "600"]);
        e.docker(&args).ok().out().to_string()
    };
    on_net("web", Some("svc"));
    let db_id = on_net("db", Some("svc"));
    on_net("client", None);
    let (web, db) = (ip_of(&e, "web"), ip_of(&e, "db"));
    assert!(
        web.starts_with("10.89.93.") && db.starts_with("10.89.93."),
        "{web} {db}"
    );

    let resolv = e
        .docker(&["exec", "client", "cat", "/etc/resolv.conf"])
        .ok();
    assert!(
        resolv.stdout.contains("nameserver 127.0.0.11\n"),
        "{resolv:?}"
    );
    assert!(resolv.stdout.contains("ndots:0"), "{resolv:?}");
    assert_eq!(
        resolv.stdout.matches("nameserver").count(),
        1,
        "only the embedded server: {resolv:?}"
    );
    let aliases = e
        .docker(&[
            "inspect",
            "--format",
            "{{json .NetworkSettings.Networks.dnsnet.Aliases}}",
            "web",
        ])
        .ok();
    // The alias asked for, and the short id Docker adds on user networks.
    let web_id = e
        .docker(&["inspect", "--format", "{{.Id}}", "web"])
        .ok()
        .out()
        .trim()
        .to_string();
    assert_eq!(aliases.out(), format!("[\"svc\",\"{}\"]", &web_id[..12]));

    // By name (any case), by the network-qualified name, by short id.
    for (name, want) in [
        ("web", &web),
        ("DB", &db),
        ("web.dnsnet", &web),
        (&db_id[..12], &db),
    ] {
        let (ok, ips, out) = lookup(&e, "client", name);
        assert!(ok, "{name}: {out}");
        assert_eq!(ips, std::slice::from_ref(want), "{name}: {out}");
    }
    // The shared alias answers both containers, in turn.
    let (ok, ips, out) = lookup(&e, "client", "svc");
    assert!(ok, "{out}");
    let mut sorted = ips.clone();
    sorted.sort();
    let mut both = vec![web.clone(), db.clone()];
    both.sort();
    assert_eq!(sorted, both, "{out}");
    let (_, again, out) = lookup(&e, "client", "svc");
    assert_ne!(again, ips, "round robin: {out}");
    // The same over TCP (what a resolver does after a truncated answer),
    // asked from a socket this test opens in the client's namespace.
    let pid: u32 = e
        .docker(&["inspect", "--format", "{{.State.Pid}}", "client"])
        .ok()
        .out()
        .parse()
        .expect("a pid");
    let over_tcp = crate::support::dns::query_in_netns(pid, "web", true);
    assert_eq!(over_tcp, [web.parse::<Ipv4Addr>().unwrap()]);
    let over_tcp = crate::support::dns::query_in_netns(pid, "outside.test", true);
    assert!(
        over_tcp.is_empty(),
        "the upstream answers UDP only: SERVFAIL, no address"
    );
    // A reverse lookup names the container on the network.
    let ptr = e.docker(&["exec", "client", "nslookup", &web]);
    assert!(ptr.stdout.contains("web.dnsnet"), "{ptr:?}");

    // Other names go to the upstream server: an answer and an NXDOMAIN.
    let (ok, ips, out) = lookup(&e, "client", "outside.test");
    assert!(ok, "{out}");
    assert_eq!(ips, ["192.0.2.55"], "{out}");
    let (ok, _, out) = lookup(&e, "client", "nosuch.test");
    assert!(!ok && out.contains("NXDOMAIN"), "{out}");
    let asked = upstream.asked();
    assert!(
        asked.contains(&"outside.test".to_string()) && asked.contains(&"nosuch.test".to_string()),
        "{asked:?}"
    );
    assert!(
        !asked.iter().any(|n| n == "web" || n == "svc"),
        "the network's names are not forwarded: {asked:?}"
    );

    // The default bridge: the host's resolv.conf, nothing on 127.0.0.11.
    let plain = e
        .docker(&["run", "--rm", &bb, "cat", "/etc/resolv.conf"])
        .ok();
    assert!(!plain.stdout.contains("127.0.0.11"), "{plain:?}");
    let none = e.docker(&[
        "run",
        "--rm",
        &bb,
        "nslookup",
        "-type=a",
        "-timeout=1",
        "-retry=1",
        "web",
        "127.0.0.11",
    ]);
    assert_ne!(none.code, 0, "{none:?}");
    assert!(!none.stdout.contains(&web), "{none:?}");

    // A rename is seen at once; a removed container's name goes.
    e.docker(&["rename", "web", "www"]).ok();
    let (ok, ips, out) = lookup(&e, "client", "www");
    assert!(ok && ips == [web.clone()], "{out}");
    e.docker(&["rm", "-f", "db"]).ok();
    let (ok, _, out) = lookup(&e, "client", "db");
    assert!(!ok, "db is gone: {out}");
    let (ok, ips, out) = lookup(&e, "client", "svc");
    assert!(ok && ips == [web.clone()], "{out}");

    // After a berthd restart the sockets are open again: names and
    // forwarding work in the containers that kept running.
    e.d.restart().await;
    let (ok, ips, out) = lookup(&e, "client", "www");
    assert!(ok && ips == [web.clone()], "after the restart: {out}");
    let (ok, ips, out) = lookup(&e, "www", "outside.test");
    assert!(ok && ips == ["192.0.2.55"], "after the restart: {out}");
    assert!(e.d.log().contains("embedded DNS reopened"), "restart log");

    e.docker(&["rm", "-f", "www", "client"]).ok();
    e.docker(&["network", "rm", "dnsnet"]).ok();
    assert_eq!(our_rules(&ours), rules_before, "no rule of dnsnet is left");
    drop(e);
    drop(upstream);
    net.finish();
}

/// A container on two user networks resolves the names of both (its one
/// server answers for every network of its pod, the first it joined
/// first); after a disconnect only those of the network it kept.
#[tokio::test]
async fn a_container_on_two_networks_resolves_the_names_of_both() {
    use super::connect::{user_network, Bridges};
    let net = TestNet::new(Plugins::default()).await;
    net.install();
    free_subnets(&["10.89.94.", "10.89.95."]);
    let e = DockerEnv::new(&net.yaml()).await;
    let (_, red) = user_network(&e, "red", [10, 89, 94]);
    let (_, blue) = user_network(&e, "blue", [10, 89, 95]);
    let _bridges = Bridges(vec![red.bridge.clone(), blue.bridge.clone()]);
    let bb = e.busybox.clone();
    let run = |name: &str, network: &str| {
        e.docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            &bb,
            "sleep",
            "600",
        ])
        .ok();
    };
    run("on-red", "red");
    run("on-blue", "blue");
    run("both", "red");
    let ip = |ctr: &str, network: &str| {
        e.docker(&[
            "inspect",
            "--format",
            &format!("{{{{.NetworkSettings.Networks.{network}.IPAddress}}}}"),
            ctr,
        ])
        .ok()
        .out()
        .to_string()
    };
    let (red_ip, blue_ip) = (ip("on-red", "red"), ip("on-blue", "blue"));
    let (ok, _, out) = lookup(&e, "both", "on-blue");
    assert!(!ok, "not on blue yet: {out}");

    e.docker(&["network", "connect", "blue", "both"]).ok();
    let (ok, ips, out) = lookup(&e, "both", "on-red");
    assert!(ok && ips == [red_ip.clone()], "{out}");
    let (ok, ips, out) = lookup(&e, "both", "on-blue");
    assert!(ok && ips == [blue_ip.clone()], "{out}");
    // And the other way: blue's member finds `both` by its blue address.
    let (ok, ips, out) = lookup(&e, "on-blue", "both");
    assert!(ok && ips == [ip("both", "blue")], "{out}");

    e.docker(&["network", "disconnect", "blue", "both"]).ok();
    let (ok, _, out) = lookup(&e, "both", "on-blue");
    assert!(!ok, "blue's names went with blue: {out}");
    let (ok, ips, out) = lookup(&e, "both", "on-red");
    assert!(ok && ips == [red_ip], "red's stay: {out}");

    e.docker(&["rm", "-f", "on-red", "on-blue", "both"]).ok();
    e.docker(&["network", "rm", "red", "blue"]).ok();
    drop(e);
    net.finish();
}
