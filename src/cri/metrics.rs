//! ListMetricDescriptors / ListPodSandboxMetrics: the cAdvisor metric names
//! the kubelet serves on `/metrics/cadvisor` when it takes pod and container
//! stats from the CRI (`PodAndContainerStatsFromCRI`), from the same cgroup
//! and netns samples as PodSandboxStats.
//!
//! Values are UInt64 as the CRI carries them: seconds are whole seconds
//! (the kubelet turns them into floats), bytes are bytes. Every metric has
//! the labels `id`, `name`, `image` (the container's id, name and image; for
//! the pod's network metrics the pod's id and name and an empty image), and
//! network metrics `interface` too.

use k8s_cri::v1 as cri;

use crate::engine::samples::PodSample;
use crate::engine::stats::Usage;

const BASE: &[&str] = &["id", "name", "image"];
const NET: &[&str] = &["id", "name", "image", "interface"];

/// A metric: name, help, type, labels.
struct Def {
    name: &'static str,
    help: &'static str,
    counter: bool,
    labels: &'static [&'static str],
}

const fn def(
    name: &'static str,
    help: &'static str,
    counter: bool,
    labels: &'static [&'static str],
) -> Def {
    Def {
        name,
        help,
        counter,
        labels,
    }
}

/// Every metric berth reports; the container ones first, then the pod's network.
const CONTAINER: &[Def] = &[
    def(
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        true,
        BASE,
    ),
    def(
        "container_cpu_user_seconds_total",
        "Cumulative user cpu time consumed in seconds.",
        true,
        BASE,
    ),
    def(
        "container_cpu_system_seconds_total",
        "Cumulative system cpu time consumed in seconds.",
        true,
        BASE,
    ),
    def(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        false,
        BASE,
    ),
    def(
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        false,
        BASE,
    ),
    def("container_memory_rss", "Size of RSS in bytes.", false, BASE),
    def(
        "container_memory_swap",
        "Container swap usage in bytes.",
        false,
        BASE,
    ),
    def(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
        false,
        BASE,
    ),
    def(
        "container_oom_events_total",
        "Count of out of memory events observed for the container",
        true,
        BASE,
    ),
    def(
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        false,
        BASE,
    ),
    def(
        "container_processes",
        "Number of processes running inside the container.",
        false,
        BASE,
    ),
];

const NETWORK: &[Def] = &[
    def(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
        true,
        NET,
    ),
    def(
        "container_network_receive_packets_total",
        "Cumulative count of packets received",
        true,
        NET,
    ),
    def(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
        true,
        NET,
    ),
    def(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        true,
        NET,
    ),
    def(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
        true,
        NET,
    ),
    def(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
        true,
        NET,
    ),
    def(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
        true,
        NET,
    ),
    def(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        true,
        NET,
    ),
];

/// `ListMetricDescriptors`.
pub fn descriptors() -> Vec<cri::MetricDescriptor> {
    CONTAINER
        .iter()
        .chain(NETWORK)
        .map(|d| cri::MetricDescriptor {
            name: d.name.into(),
            help: d.help.into(),
            label_keys: d.labels.iter().map(|s| s.to_string()).collect(),
        })
        .collect()
}

fn metric(d: &Def, ts: i64, labels: Vec<String>, value: u64) -> cri::Metric {
    let kind = if d.counter {
        cri::MetricType::Counter
    } else {
        cri::MetricType::Gauge
    };
    cri::Metric {
        name: d.name.into(),
        timestamp: ts,
        metric_type: kind as i32,
        label_values: labels,
        value: Some(cri::UInt64Value { value }),
    }
}

/// The value of a container metric, `None` when there is no figure.
fn container_value(name: &str, u: &Usage) -> Option<u64> {
    let s = &u.cgroup;
    let secs = |ns: u64| ns / 1_000_000_000;
    Some(match name {
        "container_cpu_usage_seconds_total" => secs(s.cpu_usage_ns),
        "container_cpu_user_seconds_total" => secs(s.cpu_user_ns),
        "container_cpu_system_seconds_total" => secs(s.cpu_system_ns),
        "container_memory_usage_bytes" => s.memory_usage_bytes,
        "container_memory_working_set_bytes" => s.memory_working_set_bytes,
        "container_memory_rss" => s.memory_rss_bytes,
        "container_memory_swap" => s.swap_usage_bytes?,
        // cAdvisor reports 0 for "no limit".
        "container_spec_memory_limit_bytes" => s.memory_limit_bytes.unwrap_or(0),
        "container_oom_events_total" => s.oom_kills,
        "container_fs_usage_bytes" => u.layer_bytes,
        "container_processes" => s.pids_current?,
        _ => return None,
    })
}

fn network_value(name: &str, i: &crate::sandbox::InterfaceCounters) -> Option<u64> {
    Some(match name {
        "container_network_receive_bytes_total" => i.rx_bytes,
        "container_network_receive_packets_total" => i.rx_packets,
        "container_network_receive_packets_dropped_total" => i.rx_dropped,
        "container_network_receive_errors_total" => i.rx_errors,
        "container_network_transmit_bytes_total" => i.tx_bytes,
        "container_network_transmit_packets_total" => i.tx_packets,
        "container_network_transmit_packets_dropped_total" => i.tx_dropped,
        "container_network_transmit_errors_total" => i.tx_errors,
        _ => return None,
    })
}

/// One pod's `PodSandboxMetrics`.
pub fn pod_metrics(s: &PodSample) -> cri::PodSandboxMetrics {
    let ts = s.timestamp;
    let pod_name = s
        .pod
        .config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let mut metrics = Vec::new();
    for i in s.interfaces.iter().flatten() {
        for d in NETWORK {
            if let Some(v) = network_value(d.name, i) {
                let labels = vec![
                    s.pod.id.clone(),
                    pod_name.clone(),
                    String::new(),
                    i.name.clone(),
                ];
                metrics.push(metric(d, ts, labels, v));
            }
        }
    }
    let container_metrics = s
        .containers
        .iter()
        .filter_map(|(c, u)| {
            let u = u.as_ref()?;
            let name = c
                .config
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let labels = vec![c.id.clone(), name, c.image_name.clone()];
            let metrics = CONTAINER
                .iter()
                .filter_map(|d| {
                    let v = container_value(d.name, u)?;
                    Some(metric(d, u.cgroup.timestamp_ns, labels.clone(), v))
                })
                .collect();
            Some(cri::ContainerMetrics {
                container_id: c.id.clone(),
                metrics,
            })
        })
        .collect();
    cri::PodSandboxMetrics {
        pod_sandbox_id: s.pod.id.clone(),
        metrics,
        container_metrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_a_reader_and_cadvisor_shape() {
        let u = Usage {
            cgroup: crate::cgroups::Stats {
                cpu_usage_ns: 3_500_000_000,
                pids_current: Some(4),
                ..Default::default()
            },
            nano_cores: None,
            layer_bytes: 4096,
            layer_inodes: 1,
        };
        for d in CONTAINER {
            assert!(d.name.starts_with("container_"));
            assert_eq!(d.counter, d.name.ends_with("_total"), "{}", d.name);
            if d.name != "container_memory_swap" {
                assert!(container_value(d.name, &u).is_some(), "{}", d.name);
            }
        }
        assert_eq!(
            container_value("container_cpu_usage_seconds_total", &u),
            Some(3)
        );
        assert_eq!(container_value("container_processes", &u), Some(4));
        assert_eq!(container_value("container_memory_swap", &u), None);
        let i = crate::sandbox::InterfaceCounters {
            rx_bytes: 7,
            ..Default::default()
        };
        for d in NETWORK {
            assert!(
                d.counter && network_value(d.name, &i).is_some(),
                "{}",
                d.name
            );
        }
        let names: Vec<String> = descriptors().into_iter().map(|d| d.name).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "names are unique");
    }
}
