//! ListMetricDescriptors / ListPodSandboxMetrics (the kubelet's CRI-sourced
//! cAdvisor metrics) and PodSandboxStats' network and process figures:
//! descriptors with cAdvisor names, values that move with a busy container.

use std::collections::HashMap;
use std::time::Duration;

use k8s_cri::v1::{
    ListMetricDescriptorsRequest, ListPodSandboxMetricsRequest, Metric, PodSandboxStatsRequest,
};

use super::Env;
use crate::support::pods;
use crate::support::wait_until;

/// `name{labels}` → value, for one container (or the pod, for `None`).
async fn sample(e: &mut Env, pod: &str, container: Option<&str>) -> HashMap<String, u64> {
    let resp =
        e.rt.list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
            .await
            .expect("ListPodSandboxMetrics")
            .into_inner();
    let p = resp
        .pod_metrics
        .iter()
        .find(|m| m.pod_sandbox_id == pod)
        .unwrap_or_else(|| panic!("pod {pod} in {resp:?}"));
    let metrics: &[Metric] = match container {
        None => &p.metrics,
        Some(c) => {
            &p.container_metrics
                .iter()
                .find(|m| m.container_id == c)
                .unwrap_or_else(|| panic!("container {c} in {p:?}"))
                .metrics
        }
    };
    metrics
        .iter()
        .map(|m| {
            let key = match m.label_values.get(3) {
                Some(iface) => format!("{}/{iface}", m.name),
                None => m.name.clone(),
            };
            (key, m.value.as_ref().map(|v| v.value).unwrap_or(0))
        })
        .collect()
}

#[tokio::test]
async fn metrics_descriptors_and_values_follow_a_busy_container() {
    let mut e = Env::new().await;
    let descriptors =
        e.rt.list_metric_descriptors(ListMetricDescriptorsRequest {})
            .await
            .expect("ListMetricDescriptors")
            .into_inner()
            .descriptors;
    let by_name: HashMap<&str, &Vec<String>> = descriptors
        .iter()
        .map(|d| (d.name.as_str(), &d.label_keys))
        .collect();
    for name in [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_network_receive_bytes_total",
        "container_network_transmit_packets_total",
        "container_fs_usage_bytes",
        "container_processes",
    ] {
        assert!(by_name.contains_key(name), "{name} in {descriptors:?}");
    }
    assert_eq!(
        by_name["container_network_receive_bytes_total"],
        &vec!["id", "name", "image", "interface"]
    );
    assert_eq!(by_name["container_processes"], &vec!["id", "name", "image"]);

    let pod_cfg = e.pod_config("metrics");
    let pod = e.pod(&pod_cfg).await;
    // A second interface in the pod's netns (a veth pair, gone with the
    // netns), so its traffic has somewhere to go.
    let netns = e.d.state().join("pods").join(&pod).join("ns").join("net");
    for cmd in [
        "ip link add m0 type veth peer name m1",
        "ip link set m0 up",
        "ip link set m1 up",
        "ip addr add 10.99.7.1/24 dev m0",
    ] {
        let st = std::process::Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(cmd.split(' '))
            .status()
            .expect("nsenter");
        assert!(st.success(), "{cmd} in {}", netns.display());
    }
    let (cfg, _) = e.container("idle", "exec sleep 1000");
    let id = e.run(&pod, &cfg, &pod_cfg).await;

    let before = sample(&mut e, &pod, Some(&id)).await;
    assert_eq!(before["container_processes"], 1, "{before:?}");
    let net_before = sample(&mut e, &pod, None).await;
    let tx0 = net_before["container_network_transmit_packets_total/m0"];

    // Busy: a CPU spinner, 24 MiB written to the writable layer, one more
    // process, and pings out of m0.
    pods::sh(
        &mut e.rt,
        &id,
        "dd if=/dev/zero of=/fill bs=1M count=24 2>/dev/null; sync; \
         (while :; do :; done) >/dev/null 2>&1 & ping -c 3 -W 1 10.99.7.2 >/dev/null 2>&1; true",
    )
    .await;
    let moved = wait_until(
        "the spinner's CPU seconds to show",
        Duration::from_secs(60),
        || {
            let mut e2 = e.rt.clone();
            let (pod, id) = (pod.clone(), id.clone());
            async move {
                let resp = e2
                    .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
                    .await
                    .ok()?
                    .into_inner();
                let c = resp
                    .pod_metrics
                    .iter()
                    .find(|m| m.pod_sandbox_id == pod)?
                    .container_metrics
                    .iter()
                    .find(|m| m.container_id == id)?
                    .clone();
                let cpu = c
                    .metrics
                    .iter()
                    .find(|m| m.name == "container_cpu_usage_seconds_total")?
                    .value
                    .as_ref()?
                    .value;
                (cpu >= 2).then_some(cpu)
            }
        },
    )
    .await;
    assert!(moved >= before["container_cpu_usage_seconds_total"] + 2);
    let after = sample(&mut e, &pod, Some(&id)).await;
    assert_eq!(
        after["container_processes"], 2,
        "sleep + spinner: {after:?}"
    );
    assert!(
        after["container_fs_usage_bytes"] >= before["container_fs_usage_bytes"] + (24 << 20),
        "{before:?} -> {after:?}"
    );
    assert!(
        after["container_memory_usage_bytes"] > 0
            && after["container_memory_working_set_bytes"] <= after["container_memory_usage_bytes"]
    );
    let net_after = sample(&mut e, &pod, None).await;
    assert!(
        net_after["container_network_transmit_packets_total/m0"] > tx0,
        "pings (or their ARP) left m0: {net_before:?} -> {net_after:?}"
    );
    assert!(
        !net_after.keys().any(|k| k.ends_with("/lo")),
        "lo is not reported"
    );

    // PodSandboxStats carries the same network and process figures.
    let stats =
        e.rt.pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("PodSandboxStats")
        .into_inner()
        .stats
        .and_then(|s| s.linux)
        .expect("linux stats");
    let net = stats.network.expect("network stats");
    let m0 = net
        .interfaces
        .iter()
        .find(|i| i.name == "m0")
        .expect("m0 listed");
    assert!(m0.tx_bytes.as_ref().is_some_and(|v| v.value > 0), "{m0:?}");
    assert_eq!(
        stats.process.and_then(|p| p.process_count).map(|v| v.value),
        Some(2)
    );
    e.remove_all_pods().await;
}
