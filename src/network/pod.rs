//! A pod's attachment from its CRI config: the Kubernetes CNI_ARGS and the
//! capability arguments (`portMappings`, `bandwidth`, `dns`, pod annotations)
//! that containerd and CRI-O pass to the same plugins.

use std::path::PathBuf;

use k8s_cri::v1::{PodSandboxConfig, Protocol};
use serde_json::{json, Map, Value};

use super::attach::Attachment;
use super::error::CniError;

/// Pod annotations that ask for traffic shaping (bits per second).
pub const INGRESS_BANDWIDTH: &str = "kubernetes.io/ingress-bandwidth";
pub const EGRESS_BANDWIDTH: &str = "kubernetes.io/egress-bandwidth";

/// The burst given with a rate, as containerd does (bits).
const BURST: u64 = u32::MAX as u64;

impl Attachment {
    /// The attachment of pod sandbox `sandbox_id` on `eth0` in `netns`.
    pub fn for_pod(
        sandbox_id: &str,
        netns: impl Into<PathBuf>,
        config: &PodSandboxConfig,
    ) -> Result<Self, CniError> {
        let mut att = Attachment::new(sandbox_id, netns);
        let meta = config.metadata.clone().unwrap_or_default();
        att.args.extend([
            ("K8S_POD_NAMESPACE".to_string(), meta.namespace),
            ("K8S_POD_NAME".to_string(), meta.name),
            (
                "K8S_POD_INFRA_CONTAINER_ID".to_string(),
                sandbox_id.to_string(),
            ),
            ("K8S_POD_UID".to_string(), meta.uid),
        ]);
        let caps = &mut att.capabilities;
        let ports: Vec<Value> = config
            .port_mappings
            .iter()
            .filter(|p| p.host_port > 0)
            .map(|p| {
                let protocol = match Protocol::try_from(p.protocol) {
                    Ok(Protocol::Udp) => "udp",
                    Ok(Protocol::Sctp) => "sctp",
                    _ => "tcp",
                };
                json!({
                    "hostPort": p.host_port,
                    "containerPort": p.container_port,
                    "protocol": protocol,
                    "hostIP": p.host_ip,
                })
            })
            .collect();
        if !ports.is_empty() {
            caps.insert("portMappings".into(), Value::Array(ports));
        }
        let mut bw = Map::new();
        for (annotation, rate, burst) in [
            (INGRESS_BANDWIDTH, "ingressRate", "ingressBurst"),
            (EGRESS_BANDWIDTH, "egressRate", "egressBurst"),
        ] {
            if let Some(q) = config.annotations.get(annotation) {
                let bits = bandwidth(q).map_err(|reason| CniError::InvalidArgument {
                    what: "pod bandwidth annotation",
                    reason: format!("{annotation}={q:?}: {reason}"),
                })?;
                bw.insert(rate.into(), bits.into());
                bw.insert(burst.into(), BURST.into());
            }
        }
        if !bw.is_empty() {
            caps.insert("bandwidth".into(), Value::Object(bw));
        }
        if let Some(dns) = &config.dns_config {
            if !(dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty()) {
                caps.insert(
                    "dns".into(),
                    json!({"servers": dns.servers, "searches": dns.searches, "options": dns.options}),
                );
            }
        }
        if !config.annotations.is_empty() {
            let mut sorted: Vec<_> = config.annotations.iter().collect();
            sorted.sort();
            let map: Map<String, Value> = sorted
                .into_iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            caps.insert(
                "io.kubernetes.cri.pod-annotations".into(),
                Value::Object(map),
            );
        }
        Ok(att)
    }
}

/// A bandwidth annotation in bits per second: a Kubernetes quantity
/// (`10M`, `1.5Gi`, `500k`) between 1k and 1P, as the kubelet allows.
pub fn bandwidth(quantity: &str) -> Result<u64, String> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| "not a Kubernetes quantity".to_string())?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        _ => return Err(format!("unknown suffix {suffix:?}")),
    };
    let bits = (number * factor).ceil();
    if !(1e3..=1e15).contains(&bits) {
        return Err("must be between 1k and 1P".into());
    }
    Ok(bits as u64)
}
