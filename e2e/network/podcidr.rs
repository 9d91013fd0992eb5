//! UpdateRuntimeConfig's pod CIDR handed to CNI: a network whose host-local
//! IPAM declares the `ipRanges` capability (and no range of its own)
//! allocates pods from the CIDR the kubelet sent. Not passing
//! it while no CIDR is known, and to networks that do not declare the
//! capability, is covered by src/network/config_tests.rs. (A bridge cannot
//! change its gateway's subnet under live pods, so one test network shows
//! one CIDR.)

use k8s_cri::v1::{NetworkConfig, RuntimeConfig, UpdateRuntimeConfigRequest};

use super::testnet::{Plugins, TestNet};
use super::{env, pod_ip};

#[tokio::test]
async fn pods_get_ips_from_the_kubelets_pod_cidr_when_cni_asks_for_it() {
    let net = TestNet::new(Plugins::default()).await;
    let mut conf = net.conflist_for(&net.name, &net.bridge);
    conf["plugins"][0]["capabilities"] = serde_json::json!({"ipRanges": true});
    // No range of its own: only the kubelet's CIDR (host-local would make
    // a range set of each, and bridge takes one gateway per family).
    conf["plugins"][0]["ipam"]
        .as_object_mut()
        .unwrap()
        .remove("ranges");
    net.write_conf("10-e2e.conflist", &conf);
    let mut e = env(&net).await;

    let last = |ip: &str| ip.rsplit('.').next().unwrap().parse::<u8>().unwrap();
    let [a, b, c] = net.prefix;
    let cidr = format!("{a}.{b}.{c}.128/25");
    e.rt.update_runtime_config(UpdateRuntimeConfigRequest {
        runtime_config: Some(RuntimeConfig {
            network_config: Some(NetworkConfig {
                pod_cidr: cidr.clone(),
            }),
        }),
    })
    .await
    .expect("UpdateRuntimeConfig");
    for name in ["after-1", "after-2"] {
        let cfg = e.pod_config(name);
        let pod = e.pod(&cfg).await;
        let ip = pod_ip(&mut e.rt, &pod).await;
        assert!(
            net.contains(&ip) && last(&ip) > 128,
            "{name}: the first address is the pod CIDR {cidr}'s (not its gateway), got {ip}"
        );
    }
    e.remove_all_pods().await;
    drop(e);
    net.finish();
}
