//! Result parsing (1.0, 0.4, 0.2 shapes), pod IP selection and the pod
//! attachment built from a CRI config.

use std::net::IpAddr;

use k8s_cri::v1::{DnsConfig, PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol};
use serde_json::json;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn parses_a_1_0_bridge_result() {
    let raw = json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cni0", "mac": "aa:bb:cc:dd:ee:ff"},
            {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:00"},
            {"name": "eth0", "mac": "aa:bb:cc:dd:ee:01", "sandbox": "/run/netns/p", "mtu": 1500}
        ],
        "ips": [
            {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 2},
            {"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2},
            {"address": "10.88.0.1/16", "interface": 0}
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.0.0.0/8", "gw": "10.88.0.254"}],
        "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}
    });
    let r = CniResult::parse(raw.clone()).unwrap();
    assert_eq!(r.raw, raw);
    assert_eq!(r.cni_version, "1.0.0");
    assert_eq!(r.interfaces[2].sandbox, "/run/netns/p");
    assert_eq!(r.interfaces[2].mtu, Some(1500));
    assert_eq!(
        r.ips[1],
        IpConfig {
            address: "10.88.0.5/16".parse().unwrap(),
            gateway: Some(ip("10.88.0.1")),
            interface: Some(2)
        }
    );
    assert_eq!(r.ips[1].address.to_string(), "10.88.0.5/16");
    assert_eq!(r.routes[1].gw, Some(ip("10.88.0.254")));
    assert_eq!(r.routes[0].dst.prefix_len, 0);
    assert_eq!(r.dns.nameservers, ["10.96.0.10"]);
    // The host-side gateway address is not the pod's; IPv4 comes first.
    assert_eq!(pod_ips(&r), [ip("10.88.0.5"), ip("fd00::5")]);
}

#[test]
fn parses_0_4_and_0_2_results() {
    let r = CniResult::parse(json!({
        "cniVersion": "0.4.0",
        "ips": [{"version": "4", "address": "10.22.0.9/24", "gateway": "10.22.0.1"}]
    }))
    .unwrap();
    assert_eq!(pod_ips(&r), [ip("10.22.0.9")]);
    assert_eq!(r.ips[0].interface, None);

    let r = CniResult::parse(json!({
        "cniVersion": "0.2.0",
        "ip4": {"ip": "10.1.0.7/16", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
        "ip6": {"ip": "fd01::7/64"}
    }))
    .unwrap();
    assert_eq!(pod_ips(&r), [ip("10.1.0.7"), ip("fd01::7")]);
    assert_eq!(r.routes.len(), 1);
}

#[test]
fn rejects_malformed_results() {
    for bad in [
        json!([]),
        json!({"ips": [{"address": "10.0.0.1"}]}),
        json!({"ips": [{"address": "10.0.0.1/33"}]}),
        json!({"ips": [{"address": "nope/24"}]}),
        json!({"ips": [{"address": "10.0.0.1/24", "gateway": "x"}]}),
        json!({"routes": [{"dst": "default"}]}),
    ] {
        assert!(CniResult::parse(bad.clone()).is_err(), "{bad}");
    }
}

#[test]
fn pod_ips_fall_back_to_every_address() {
    // Only host-side interfaces are named: better some address than none.
    let r = CniResult::parse(json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "host0"}],
        "ips": [{"address": "fd00::2/64", "interface": 0}, {"address": "10.0.0.2/8", "interface": 0},
                {"address": "10.0.0.2/8", "interface": 0}]
    }))
    .unwrap();
    assert_eq!(pod_ips(&r), [ip("10.0.0.2"), ip("fd00::2")]);
}

#[test]
fn bandwidth_quantities() {
    assert_eq!(bandwidth("10M"), Ok(10_000_000));
    assert_eq!(bandwidth("1.5k"), Ok(1500));
    assert_eq!(bandwidth("1Mi"), Ok(1 << 20));
    assert_eq!(bandwidth("2000"), Ok(2000));
    assert_eq!(bandwidth("1P"), Ok(1_000_000_000_000_000));
    for bad in ["", "M", "10X", "999", "2P", "-1M", "1e6"] {
        assert!(bandwidth(bad).is_err(), "{bad}");
    }
}

#[test]
fn pod_attachment_from_cri_config() {
    let cfg = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web".into(),
            uid: "u-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        port_mappings: vec![
            PortMapping {
                protocol: Protocol::Udp as i32,
                container_port: 53,
                host_port: 5353,
                host_ip: "127.0.0.1".into(),
            },
            // No host port: nothing to map.
            PortMapping {
                protocol: Protocol::Tcp as i32,
                container_port: 80,
                host_port: 0,
                host_ip: String::new(),
            },
        ],
        dns_config: Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        annotations: [(INGRESS_BANDWIDTH.to_string(), "1M".to_string())].into(),
        ..Default::default()
    };
    let att = Attachment::for_pod("abc123", "/run/berth/pods/abc123/ns/net", &cfg).unwrap();
    assert_eq!(att.ifname, "eth0");
    let args: Vec<String> = att.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(
        args,
        [
            "IgnoreUnknown=1",
            "K8S_POD_NAMESPACE=default",
            "K8S_POD_NAME=web",
            "K8S_POD_INFRA_CONTAINER_ID=abc123",
            "K8S_POD_UID=u-1"
        ]
    );
    let caps = serde_json::Value::Object(att.capabilities);
    assert_eq!(
        caps["portMappings"],
        json!([{"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}])
    );
    assert_eq!(
        caps["bandwidth"],
        json!({"ingressRate": 1_000_000, "ingressBurst": u32::MAX})
    );
    assert_eq!(caps["dns"]["options"], json!(["ndots:5"]));
    assert_eq!(
        caps["io.kubernetes.cri.pod-annotations"][INGRESS_BANDWIDTH],
        "1M"
    );

    let mut bad = cfg.clone();
    bad.annotations
        .insert(EGRESS_BANDWIDTH.into(), "lots".into());
    let e = Attachment::for_pod("abc123", "/x", &bad).unwrap_err();
    assert_eq!(e.kind(), CniErrorKind::InvalidArgument);
    assert!(e.to_string().contains(EGRESS_BANDWIDTH));
}
