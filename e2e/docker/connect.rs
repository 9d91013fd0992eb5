//! `docker network connect` / `disconnect` and several networks per
//! container with the docker CLI: a second interface (`eth1`) in the
//! container's netns with its own address, containers reaching each other
//! over it, aliases and `--ip`, errors as Docker gives them, and a DEL
//! after a daemon restart that releases exactly the disconnected address.
//!
//! Each test takes its own default network ([`TestNet`]: the host lock and
//! the guard) and makes user networks on /24s the host does not route;
//! `--internal` networks add no masquerading rule, and what the networks
//! did add is checked gone at the end.

use std::collections::BTreeSet;

use crate::network::testnet::{Plugins, TestNet};
use crate::support::docker::DockerEnv;
use crate::support::net::{free_subnets, iptables_save, links, Ours};

/// The host's lines of iptables-save that name one of `nets`.
fn rules_of(nets: &[&Ours]) -> Vec<String> {
    let mut v: Vec<String> = [
        iptables_save("iptables-save"),
        iptables_save("ip6tables-save"),
    ]
    .iter()
    .flat_map(|t| t.lines().map(String::from).collect::<Vec<_>>())
    .filter(|l| nets.iter().any(|n| n.mentions(l)))
    .collect();
    v.sort();
    v
}

/// A user network made with `docker network create --internal`; its id and
/// what identifies its rules.
pub fn user_network(e: &DockerEnv, name: &str, prefix: [u8; 3]) -> (String, Ours) {
    let [a, b, c] = prefix;
    let id = e
        .docker(&[
            "network",
            "create",
            "--internal",
            "--subnet",
            &format!("{a}.{b}.{c}.0/24"),
            name,
        ])
        .ok()
        .out()
        .to_string();
    let ours = Ours {
        name: name.into(),
        bridge: format!("br-{}", &id[..12]),
        prefix,
    };
    (id, ours)
}

/// Deletes the bridges of the test's user networks when a failed test
/// left them (a passing test removes its networks and checks they went).
pub struct Bridges(pub Vec<String>);

impl Drop for Bridges {
    fn drop(&mut self) {
        for b in &self.0 {
            if links().contains(b) {
                let _ = crate::support::net::run("ip", &["link", "del", b]);
            }
        }
    }
}

/// The addresses host-local holds reserved on user network `name`.
fn reserved(e: &DockerEnv, name: &str) -> BTreeSet<String> {
    let dir = e.d.root().join("networks").join("ipam").join(name);
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .filter(|f| f.parse::<std::net::Ipv4Addr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

fn inspect(e: &DockerEnv, format: &str, what: &str) -> String {
    e.docker(&["inspect", "--format", format, what])
        .ok()
        .out()
        .to_string()
}

/// The IPv4 address with prefix of `ifname` in container `c` (busybox `ip`),
/// and its MAC; empty when the interface does not exist.
fn iface(e: &DockerEnv, c: &str, ifname: &str) -> (String, String) {
    let r = e.docker(&["exec", c, "ip", "addr", "show", ifname]);
    if r.code != 0 {
        return (String::new(), String::new());
    }
    let word_after = |key: &str| {
        r.stdout
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default()
            .to_string()
    };
    (word_after("inet "), word_after("link/ether "))
}

/// Pings `ip` once from container `c` (traffic between the test's pods only).
fn pings(e: &DockerEnv, c: &str, ip: &str) -> bool {
    e.docker(&["exec", c, "ping", "-c1", "-W5", ip]).code == 0
}

#[tokio::test]
async fn connect_and_disconnect_running_and_created_containers() {
    let net = TestNet::new(Plugins::default()).await;
    net.install();
    free_subnets(&["10.89.78.", "10.89.79."]);
    let mut e = DockerEnv::new(&net.yaml()).await;
    let (_, front) = user_network(&e, "front", [10, 89, 78]);
    let (back_id, back) = user_network(&e, "back", [10, 89, 79]);
    let _bridges = Bridges(vec![front.bridge.clone(), back.bridge.clone()]);
    let before = rules_of(&[&front, &back]);
    let sleep = ["sleep", "3600"];
    let run = |name: &str, extra: &[&str]| {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(extra);
        args.push(&e.busybox);
        args.extend_from_slice(&sleep);
        e.docker(&args).ok();
    };
    run("a", &["--network", "front"]);
    run("b", &["--network", "back", "--network-alias", "bee"]);

    // A running container joins a second network on eth1, with an alias
    // and the address asked for.
    e.docker(&[
        "network",
        "connect",
        "--alias",
        "web",
        "--ip",
        "10.89.79.50",
        "back",
        "a",
    ])
    .ok();
    let a_id = inspect(&e, "{{.Id}}", "a");
    let short = &a_id[..12];
    let fmt = "{{with index .NetworkSettings.Networks \"back\"}}{{.IPAddress}} {{.IPPrefixLen}} {{.Gateway}} {{.MacAddress}} {{.NetworkID}} {{.Aliases}}{{end}}";
    let got = inspect(&e, fmt, "a");
    let f: Vec<&str> = got.splitn(6, ' ').collect();
    assert_eq!(f[..3], ["10.89.79.50", "24", "10.89.79.1"], "{got}");
    assert_eq!(f[4], back_id, "{got}");
    assert_eq!(f[5], format!("[web {short}]"), "{got}");
    let mac = f[3].to_string();
    let (eth1, eth1_mac) = iface(&e, "a", "eth1");
    assert_eq!(
        eth1, "10.89.79.50/24",
        "eth1 carries the address inspect shows"
    );
    assert_eq!(eth1_mac, mac, "and the MAC");
    let a_front = inspect(
        &e,
        "{{with index .NetworkSettings.Networks \"front\"}}{{.IPAddress}}{{end}}",
        "a",
    );
    assert!(a_front.starts_with("10.89.78."), "{a_front}");
    assert_eq!(iface(&e, "a", "eth0").0, format!("{a_front}/24"));
    // The first network keeps the default route (an internal network has
    // none): eth1 adds only its own subnet.
    let routes = e.docker(&["exec", "a", "ip", "route"]).ok();
    assert!(
        routes.stdout.contains("10.89.79.0/24 dev eth1"),
        "{routes:?}"
    );
    // b's alias given at create; the short id is among the aliases too.
    let b_id = inspect(&e, "{{.Id}}", "b");
    let b_aliases = inspect(
        &e,
        "{{with index .NetworkSettings.Networks \"back\"}}{{.Aliases}}{{end}}",
        "b",
    );
    assert_eq!(b_aliases, format!("[bee {}]", &b_id[..12]));
    let b_ip = inspect(
        &e,
        "{{with index .NetworkSettings.Networks \"back\"}}{{.IPAddress}}{{end}}",
        "b",
    );
    assert!(pings(&e, "a", &b_ip), "a reaches b over back");
    assert!(pings(&e, "b", "10.89.79.50"), "b reaches a's eth1");
    assert!(!pings(&e, "b", &a_front), "front stays apart from back");
    // Both are listed as back's members; ps filters by network.
    let members = e
        .docker(&[
            "network",
            "inspect",
            "--format",
            "{{range .Containers}}{{.Name}}={{.IPv4Address}} {{end}}",
            "back",
        ])
        .ok();
    let mut m: Vec<&str> = members.out().split_whitespace().collect();
    m.sort();
    assert_eq!(
        m,
        ["a=10.89.79.50/24".to_string(), format!("b={b_ip}/24")],
        "{members:?}"
    );
    let ps = |filter: &str| {
        let out = e
            .docker(&["ps", "--filter", filter, "--format", "{{.Names}}"])
            .ok();
        let mut v: Vec<String> = out.out().lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(ps("network=back"), ["a", "b"]);
    assert_eq!(ps("network=front"), ["a"]);
    assert_eq!(ps(&format!("network={}", &back_id[..12])), ["a", "b"]);

    // The default network joins as well (its route to the world is left
    // to the first interface); no aliases on it, as in Docker.
    e.docker(&["network", "connect", "bridge", "b"]).ok();
    let on_bridge = inspect(
        &e,
        "{{with index .NetworkSettings.Networks \"bridge\"}}{{.IPAddress}} {{.Aliases}}{{end}}",
        "b",
    );
    let (bridge_ip, aliases) = on_bridge.split_once(' ').expect("ip and aliases");
    assert!(net.contains(bridge_ip), "{on_bridge}");
    assert_eq!(aliases, "[]", "{on_bridge}");
    assert_eq!(iface(&e, "b", "eth1").0, format!("{bridge_ip}/24"));
    assert!(
        pings(&e, "b", &net.gateway().to_string()),
        "b reaches the bridge's gateway"
    );
    let b_routes = e.docker(&["exec", "b", "ip", "route"]).ok();
    assert!(!b_routes.stdout.contains("default"), "{b_routes:?}");
    e.docker(&["network", "disconnect", "bridge", "b"]).ok();
    assert!(net.reserved_ips().is_empty(), "{:?}", net.reserved_ips());

    // Errors as Docker gives them.
    let again = e.docker(&["network", "connect", "back", "a"]);
    assert_ne!(again.code, 0);
    assert!(
        again
            .stderr
            .contains("endpoint with name a already exists in network back"),
        "{again:?}"
    );
    let host = e.docker(&["network", "connect", "host", "a"]);
    assert!(
        host.stderr
            .contains("cannot be disconnected from host network or connected to host network"),
        "{host:?}"
    );
    let nosuch = e.docker(&["network", "connect", "nosuch", "a"]);
    assert!(
        nosuch.stderr.contains("network nosuch not found"),
        "{nosuch:?}"
    );
    let noctr = e.docker(&["network", "connect", "back", "nosuch"]);
    assert!(
        noctr.stderr.contains("No such container: nosuch"),
        "{noctr:?}"
    );
    let outside = e.docker(&["network", "connect", "--ip", "10.89.1.9", "front", "b"]);
    assert!(
        outside
            .stderr
            .contains("no configured subnet or ip-range contain the IP address 10.89.1.9"),
        "{outside:?}"
    );
    let busy = e.docker(&["network", "rm", "back"]);
    assert!(busy.stderr.contains("has active endpoints"), "{busy:?}");

    // Disconnect: the interface goes, and so does its address in host-local.
    assert!(reserved(&e, "back").contains("10.89.79.50"));
    e.docker(&["network", "disconnect", "back", "a"]).ok();
    assert_eq!(iface(&e, "a", "eth1").0, "", "eth1 is gone");
    assert_eq!(
        iface(&e, "a", "eth0").0,
        format!("{a_front}/24"),
        "eth0 stays"
    );
    assert!(!reserved(&e, "back").contains("10.89.79.50"));
    let nets = inspect(
        &e,
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        "a",
    );
    assert_eq!(nets.trim(), "front");
    let not = e.docker(&["network", "disconnect", "back", "a"]);
    assert!(
        not.stderr.contains(&format!(
            "container {a_id} is not connected to network back"
        )),
        "{not:?}"
    );

    // A created container: connected before it starts, eth1 is there at start.
    e.docker(&[
        "create",
        "--name",
        "c",
        "--network",
        "front",
        &e.busybox,
        "sleep",
        "3600",
    ])
    .ok();
    e.docker(&["network", "connect", "back", "c"]).ok();
    e.docker(&["start", "c"]).ok();
    let c_back = inspect(
        &e,
        "{{with index .NetworkSettings.Networks \"back\"}}{{.IPAddress}}{{end}}",
        "c",
    );
    assert!(c_back.starts_with("10.89.79."), "{c_back}");
    assert_eq!(iface(&e, "c", "eth1").0, format!("{c_back}/24"));
    assert!(pings(&e, "c", &b_ip), "c reaches b over back");

    // After a daemon restart the records still say what to DEL: the
    // disconnect releases c's address on back and nothing else.
    e.d.restart().await;
    let held = reserved(&e, "back");
    assert!(held.contains(&c_back) && held.contains(&b_ip), "{held:?}");
    e.docker(&["network", "disconnect", "back", "c"]).ok();
    assert_eq!(reserved(&e, "back"), BTreeSet::from([b_ip.clone()]));
    assert_eq!(iface(&e, "c", "eth1").0, "");
    e.docker(&["network", "connect", "back", "c"]).ok();
    e.d.restart().await;
    // Docker lets a container leave its first network too: eth0 goes,
    // the later attachment stays.
    e.docker(&["network", "disconnect", "front", "c"]).ok();
    assert_eq!(iface(&e, "c", "eth0").0, "", "eth0 is gone");
    let c_back = inspect(
        &e,
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}}{{end}}",
        "c",
    );
    let (name, ip) = c_back.split_once('=').expect("one network");
    assert_eq!(name, "back");
    assert_eq!(iface(&e, "c", "eth1").0, format!("{ip}/24"));
    // Removal after a restart DELs every attachment.
    e.docker(&["rm", "-f", "a", "b", "c"]).ok();
    assert!(
        reserved(&e, "front").is_empty(),
        "{:?}",
        reserved(&e, "front")
    );
    assert!(
        reserved(&e, "back").is_empty(),
        "{:?}",
        reserved(&e, "back")
    );
    e.docker(&["network", "rm", "front", "back"]).ok();
    for n in [&front, &back] {
        assert!(
            !links().contains(&n.bridge),
            "{} went with its network",
            n.bridge
        );
    }
    assert_eq!(
        rules_of(&[&front, &back]),
        before,
        "no rule of front/back is left"
    );
    drop(e);
    net.finish();
}

#[tokio::test]
async fn create_attaches_every_network_with_its_aliases_and_address() {
    let net = TestNet::new(Plugins::default()).await;
    net.install();
    free_subnets(&["10.89.86.", "10.89.87."]);
    let e = DockerEnv::new(&net.yaml()).await;
    let (_, one) = user_network(&e, "one", [10, 89, 86]);
    let (_, two) = user_network(&e, "two", [10, 89, 87]);
    let _bridges = Bridges(vec![one.bridge.clone(), two.bridge.clone()]);
    let before = rules_of(&[&one, &two]);
    // Two networks at create (API ≥ 1.44 sends both in EndpointsConfig).
    e.docker(&[
        "run",
        "-d",
        "--name",
        "m",
        "--network",
        "one",
        "--network",
        "two",
        &e.busybox,
        "sleep",
        "3600",
    ])
    .ok();
    let nets = inspect(
        &e,
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}",
        "m",
    );
    let pairs: Vec<(String, String)> = nets
        .split_whitespace()
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(pairs.len(), 2, "{nets}");
    assert!(
        pairs[0].0 == "one" && pairs[0].1.starts_with("10.89.86."),
        "{nets}"
    );
    assert!(
        pairs[1].0 == "two" && pairs[1].1.starts_with("10.89.87."),
        "{nets}"
    );
    assert_eq!(iface(&e, "m", "eth0").0, format!("{}/24", pairs[0].1));
    assert_eq!(iface(&e, "m", "eth1").0, format!("{}/24", pairs[1].1));
    // --ip and --network-alias on the first network.
    e.docker(&[
        "run",
        "-d",
        "--name",
        "n",
        "--network",
        "two",
        "--ip",
        "10.89.87.77",
        "--network-alias",
        "enn",
        &e.busybox,
        "sleep",
        "3600",
    ])
    .ok();
    let n = inspect(
        &e,
        "{{with index .NetworkSettings.Networks \"two\"}}{{.IPAddress}} {{.IPAMConfig.IPv4Address}} {{index .Aliases 0}}{{end}}",
        "n",
    );
    assert_eq!(n, "10.89.87.77 10.89.87.77 enn");
    assert!(pings(&e, "m", "10.89.87.77"), "m reaches n over two");
    // Docker's refusals on the default network (the CLI checks aliases
    // itself: the daemon is asked directly) and outside the subnet.
    let create = |endpoints: &str| {
        let body = format!(
            r#"{{"Image": "{}", "NetworkingConfig": {{"EndpointsConfig": {endpoints}}}}}"#,
            e.busybox
        );
        let mut c = std::process::Command::new("curl");
        c.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(e.docker_socket())
            .args([
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                &body,
            ])
            .arg("http://d/v1.47/containers/create");
        let r = crate::support::docker::run(c);
        let (body, code) = r.stdout.rsplit_once('\n').expect("code line");
        (code.to_string(), body.to_string())
    };
    let (code, body) = create(r#"{"bridge": {"Aliases": ["x"]}}"#);
    assert_eq!(code, "400", "{body}");
    assert!(
        body.contains(
            "network-scoped alias is supported only for containers in user defined networks"
        ),
        "{body}"
    );
    let (code, body) = create(r#"{"bridge": {"IPAMConfig": {"IPv4Address": "10.89.86.9"}}}"#);
    assert_eq!(code, "400", "{body}");
    assert!(
        body.contains("user specified IP address is supported on user defined networks only"),
        "{body}"
    );
    let (code, body) = create(r#"{"nosuch": null}"#);
    assert_eq!(code, "404", "{body}");
    let outside = e.docker(&[
        "create",
        "--network",
        "one",
        "--ip",
        "10.89.87.9",
        &e.busybox,
    ]);
    assert!(
        outside
            .stderr
            .contains("no configured subnet or ip-range contain the IP address 10.89.87.9"),
        "{outside:?}"
    );
    let taken = e.docker(&[
        "run",
        "-d",
        "--network",
        "two",
        "--ip",
        "10.89.87.77",
        &e.busybox,
        "sleep",
        "3600",
    ]);
    assert_ne!(taken.code, 0, "{taken:?}");
    e.docker(&["rm", "-f", "m", "n"]).ok();
    let left = e.docker(&["ps", "-aq"]).ok();
    assert_eq!(left.out(), "", "the failed run left no container");
    assert!(reserved(&e, "one").is_empty() && reserved(&e, "two").is_empty());
    e.docker(&["network", "rm", "one", "two"]).ok();
    assert_eq!(rules_of(&[&one, &two]), before);
    drop(e);
    net.finish();
}
