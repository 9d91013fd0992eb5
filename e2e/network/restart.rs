//! DEL after a daemon kill -9 uses what ADD recorded: a pod attached to a
//! bridge + masquerade + portmap + firewall network, berthd killed, the
//! config dir switched to another network, berthd restarted, then only
//! RemovePodSandbox — the IP is released, the veth and the pod's rules are
//! gone, and the new network was never touched.

use std::collections::BTreeSet;

use k8s_cri::v1::{PodSandboxState, PortMapping, Protocol};

use super::testnet::{Plugins, TestNet};
use super::{env, pod_ip, running};
use crate::support::free_port;
use crate::support::net;
use crate::support::pods;

fn cache_files(e: &crate::runtime::Env) -> BTreeSet<String> {
    std::fs::read_dir(e.d.root().join("cni/cache"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn del_after_kill_9_and_restart_uses_the_recorded_attachment() {
    let net = TestNet::new(Plugins {
        masq: true,
        portmap: true,
        firewall: true,
    })
    .await;
    net.install();
    let mut e = env(&net).await;
    let port = free_port();
    let mut cfg = e.pod_config("survivor");
    cfg.port_mappings.push(PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 80,
        host_port: i32::from(port),
        host_ip: "127.0.0.1".into(),
    });

    // Warm-up: the plugins' shared chains exist from here on.
    let warm = e.pod(&cfg).await;
    pods::stop_pod(&mut e.rt, &warm)
        .await
        .expect("stop warm-up");
    pods::remove_pod(&mut e.rt, &warm)
        .await
        .expect("remove warm-up");
    let rules = net.tracked_rules();
    assert!(cache_files(&e).is_empty(), "{:?}", cache_files(&e));

    let pod = e.pod(&cfg).await;
    let ip = pod_ip(&mut e.rt, &pod).await;
    running(&mut e, &pod, &cfg, "exec sleep 1000").await;
    assert_eq!(net.reserved_ips(), BTreeSet::from([ip.clone()]));
    let pod_veths = net::bridge_ports(&net.bridge);
    assert_eq!(pod_veths.len(), 1, "one veth for the pod: {pod_veths:?}");
    let with_pod = net.tracked_rules().join("\n");
    assert!(
        with_pod.contains(&format!("{ip}/32")),
        "the pod's rules name {ip}:\n{with_pod}"
    );
    assert_eq!(cache_files(&e).len(), 1, "{:?}", cache_files(&e));

    e.d.kill9();
    // Another network becomes the default: DEL must not use it.
    let other_name = format!("{}-other", net.name);
    let other_bridge = format!("{}o", net.bridge);
    std::fs::remove_file(net.conf_dir.join("10-e2e.conflist")).expect("remove conflist");
    net.write_conf(
        "05-other.conflist",
        &net.conflist_for(&other_name, &other_bridge),
    );
    e.d.restart().await;
    e.rt = e.d.runtime_client().await;

    let st = pods::pod_status(&mut e.rt, &pod)
        .await
        .expect("status after restart");
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32, "{st:?}");
    assert_eq!(
        pod_ip(&mut e.rt, &pod).await,
        ip,
        "the IP survives the restart"
    );

    pods::remove_pod(&mut e.rt, &pod)
        .await
        .unwrap_or_else(|err| panic!("RemovePodSandbox: {err:?}\n{}", e.log_tail()));
    assert!(pods::list_pods(&mut e.rt).await.is_empty());
    assert!(
        net.reserved_ips().is_empty(),
        "DEL released {ip}: {:?}",
        net.ipam_files()
    );
    let left: Vec<_> = pod_veths.intersection(&net::links()).cloned().collect();
    assert!(left.is_empty(), "the pod's veth is gone: {left:?}");
    assert!(net::bridge_ports(&net.bridge).is_empty());
    assert!(cache_files(&e).is_empty(), "{:?}", cache_files(&e));
    assert_eq!(
        net.tracked_rules(),
        rules,
        "the pod's masquerade, hostport and firewall rules are gone"
    );
    assert!(
        !net::links().contains(&other_bridge),
        "the new default network was never attached"
    );
    let log = e.d.log();
    let dels: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cni DEL done") || l.contains("running DEL with the default"))
        .collect();
    assert!(
        !net.data_dir.join(&other_name).exists(),
        "a DEL ran on the new default network {other_name}, which the pod was never \
         attached to (host-local made its data dir); daemon log:\n{}",
        dels.join("\n")
    );
    drop(e);
    net.finish();
}

/// Deletes a network namespace made by a test, by name, when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// An attachment whose pod never got recorded — as when berthd dies between
/// CNI ADD and storing the pod — is found in the CNI cache at start-up and
/// released with the arguments ADD recorded.
#[tokio::test]
async fn start_up_releases_attachments_of_pods_that_do_not_exist() {
    let net = TestNet::new(Plugins {
        masq: false,
        portmap: false,
        firewall: false,
    })
    .await;
    net.install();
    let mut e = env(&net).await;
    e.d.kill9();

    let name = format!("berth-orphan-{}", std::process::id());
    let ok = std::process::Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .expect("ip netns add");
    assert!(ok.success());
    let ns = Netns(name);
    let netns = std::path::PathBuf::from("/run/netns").join(&ns.0);
    let bins = vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()];
    let config = berth::network::load_default(&net.conf_dir, &bins)
        .expect("load the test network")
        .expect("the test network is valid");
    let cni = berth::network::Cni::new(
        net.conf_dir.clone(),
        bins,
        e.d.root().join("cni").join("cache"),
    );
    let orphan = "0".repeat(63) + "1";
    let res = cni
        .add(
            &config,
            &berth::network::Attachment::new(orphan.clone(), &netns),
        )
        .await
        .expect("CNI ADD for the orphan");
    let ip = berth::network::pod_ips(&res)[0].to_string();
    assert_eq!(net.reserved_ips(), BTreeSet::from([ip.clone()]));
    assert_eq!(cache_files(&e).len(), 1, "{:?}", cache_files(&e));

    e.d.restart().await;
    e.rt = e.d.runtime_client().await;
    assert!(
        net.reserved_ips().is_empty(),
        "start-up released {ip}: {:?}\n{}",
        net.ipam_files(),
        e.log_tail()
    );
    assert!(cache_files(&e).is_empty(), "{:?}", cache_files(&e));
    assert!(
        e.d.log()
            .contains("released the network of a pod that no longer exists"),
        "{}",
        e.log_tail()
    );
    drop(ns);
    drop(e);
    net.finish();
}
