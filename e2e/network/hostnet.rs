//! A host-network pod: its containers see the host's interfaces, and CNI is
//! never called for it (no cache record, no IP, no bridge, no metric).

use std::collections::BTreeSet;

use k8s_cri::v1::NamespaceMode;

use super::testnet::{Plugins, TestNet};
use super::{cni_count, cni_ops, env, pod_ip, running};
use crate::support::net;
use crate::support::pods;

fn host_interfaces() -> BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .expect("read /sys/class/net")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn host_network_pod_sees_host_interfaces_and_gets_no_cni_call() {
    // The default network is a real bridge network: had the daemon called
    // CNI for this pod, the bridge would appear.
    let net = TestNet::new(Plugins::default()).await;
    net.install();
    let mut e = env(&net).await;

    let mut cfg = e.pod_config("hostnet");
    pods::pod_security(&mut cfg)
        .namespace_options
        .get_or_insert_with(Default::default)
        .network = NamespaceMode::Node as i32;
    let pod = e.pod(&cfg).await;
    assert_eq!(
        pod_ip(&mut e.rt, &pod).await,
        "",
        "a host-network pod has no pod IP"
    );
    let id = running(&mut e, &pod, &cfg, "exec sleep 1000").await;

    let seen: BTreeSet<String> = pods::sh(&mut e.rt, &id, "ls -1 /sys/class/net")
        .await
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(
        seen,
        host_interfaces(),
        "the container sees the host's interfaces"
    );
    let addrs = pods::sh(&mut e.rt, &id, "ip -o addr show dev lo").await;
    assert!(addrs.contains("127.0.0.1/8"), "{addrs}");

    assert!(
        !net::links().contains(&net.bridge),
        "no CNI ADD ran, so no bridge {} was made",
        net.bridge
    );
    let cache = e.d.root().join("cni/cache");
    let cached: Vec<_> = std::fs::read_dir(&cache)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(cached.is_empty(), "no CNI cache records: {cached:?}");
    assert!(net.ipam_files().is_empty(), "{:?}", net.ipam_files());
    let ops = cni_ops(&e.d);
    assert_eq!(cni_count(&ops, "add", "success"), 0, "{ops:?}");
    assert_eq!(cni_count(&ops, "add", "failure"), 0, "{ops:?}");

    e.remove_all_pods().await;
    let ops = cni_ops(&e.d);
    assert_eq!(
        cni_count(&ops, "del", "success") + cni_count(&ops, "del", "failure"),
        0,
        "no CNI DEL for a host-network pod: {ops:?}"
    );
    drop(e);
    net.finish();
}
