//! Engine records → CRI messages, and CRI list filters.

use k8s_cri::v1 as cri;

use crate::engine::records::{ContainerRecord, ContainerState, PodRecord, PodState};

fn pod_state(s: PodState) -> i32 {
    match s {
        PodState::Ready => cri::PodSandboxState::SandboxReady as i32,
        PodState::NotReady => cri::PodSandboxState::SandboxNotready as i32,
    }
}

fn container_state(s: ContainerState) -> i32 {
    match s {
        ContainerState::Created => cri::ContainerState::ContainerCreated as i32,
        ContainerState::Running => cri::ContainerState::ContainerRunning as i32,
        ContainerState::Exited => cri::ContainerState::ContainerExited as i32,
    }
}

/// A pod in `ListPodSandbox`.
pub fn pod(p: &PodRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: p.id.clone(),
        metadata: p.config.metadata.clone(),
        state: pod_state(p.state),
        created_at: p.created_at,
        labels: p.config.labels.clone(),
        annotations: p.config.annotations.clone(),
        runtime_handler: p.runtime_handler.clone(),
    }
}

/// `PodSandboxStatus`.
pub fn pod_status(p: &PodRecord) -> cri::PodSandboxStatus {
    let options = p
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone());
    cri::PodSandboxStatus {
        id: p.id.clone(),
        metadata: p.config.metadata.clone(),
        state: pod_state(p.state),
        created_at: p.created_at,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: p.ips.first().cloned().unwrap_or_default(),
            additional_ips: p
                .ips
                .iter()
                .skip(1)
                .map(|ip| cri::PodIp { ip: ip.clone() })
                .collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace { options }),
        }),
        labels: p.config.labels.clone(),
        annotations: p.config.annotations.clone(),
        runtime_handler: p.runtime_handler.clone(),
    }
}

fn labels_match(
    labels: &std::collections::HashMap<String, String>,
    sel: &std::collections::HashMap<String, String>,
) -> bool {
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether a pod passes a `ListPodSandbox` filter.
pub fn pod_matches(p: &PodRecord, f: Option<&cri::PodSandboxFilter>) -> bool {
    let Some(f) = f else { return true };
    (f.id.is_empty() || p.id.starts_with(&f.id))
        && f.state
            .as_ref()
            .is_none_or(|s| s.state == pod_state(p.state))
        && labels_match(&p.config.labels, &f.label_selector)
}

/// A container in `ListContainers`.
pub fn container(c: &ContainerRecord) -> cri::Container {
    cri::Container {
        id: c.id.clone(),
        pod_sandbox_id: c.pod_id.clone(),
        metadata: c.config.metadata.clone(),
        image: c.config.image.clone(),
        image_ref: c.image_id.clone(),
        image_id: c.image_id.clone(),
        state: container_state(c.state),
        created_at: c.created_at,
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
    }
}

/// Whether a container passes a `ListContainers` filter.
pub fn container_matches(c: &ContainerRecord, f: Option<&cri::ContainerFilter>) -> bool {
    let Some(f) = f else { return true };
    (f.id.is_empty() || c.id.starts_with(&f.id))
        && (f.pod_sandbox_id.is_empty() || c.pod_id.starts_with(&f.pod_sandbox_id))
        && f.state
            .as_ref()
            .is_none_or(|s| s.state == container_state(c.state))
        && labels_match(&c.config.labels, &f.label_selector)
}

/// `ContainerStatus`, with the resources and identity the engine read back.
pub fn container_status(
    c: &ContainerRecord,
    resources: Option<cri::LinuxContainerResources>,
    identity: Option<crate::engine::inspect::Identity>,
) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: c.id.clone(),
        metadata: c.config.metadata.clone(),
        state: container_state(c.state),
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
        exit_code: c.exit_code,
        image: c.config.image.clone(),
        image_ref: c.image_id.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        mounts: c.config.mounts.clone(),
        log_path: c
            .log_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        resources: resources.map(|linux| cri::ContainerResources {
            linux: Some(linux),
            windows: None,
        }),
        image_id: c.image_id.clone(),
        user: identity.map(|i| cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: i.uid.into(),
                gid: i.gid.into(),
                supplemental_groups: i.groups.into_iter().map(i64::from).collect(),
            }),
        }),
    }
}

/// `ContainerStats` from a usage sample (`None`: no cgroup, so no figures).
pub fn container_stats(
    c: &ContainerRecord,
    u: Option<&crate::engine::stats::Usage>,
    mountpoint: &str,
) -> cri::ContainerStats {
    let attributes = Some(cri::ContainerAttributes {
        id: c.id.clone(),
        metadata: c.config.metadata.clone(),
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
    });
    let Some(u) = u else {
        return cri::ContainerStats {
            attributes,
            ..Default::default()
        };
    };
    let s = &u.cgroup;
    let v = |value: u64| Some(cri::UInt64Value { value });
    cri::ContainerStats {
        attributes,
        cpu: Some(cri::CpuUsage {
            timestamp: s.timestamp_ns,
            usage_core_nano_seconds: v(s.cpu_usage_ns),
            usage_nano_cores: u.nano_cores.and_then(v),
        }),
        memory: Some(memory(s)),
        swap: s.swap_usage_bytes.map(|used| cri::SwapUsage {
            timestamp: s.timestamp_ns,
            swap_usage_bytes: v(used),
            swap_available_bytes: s
                .swap_limit_bytes
                .map(|l| l.saturating_sub(used))
                .and_then(v),
        }),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: s.timestamp_ns,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: mountpoint.to_string(),
            }),
            used_bytes: v(u.layer_bytes),
            inodes_used: v(u.layer_inodes),
        }),
    }
}

fn memory(s: &crate::cgroups::Stats) -> cri::MemoryUsage {
    let v = |value: u64| Some(cri::UInt64Value { value });
    cri::MemoryUsage {
        timestamp: s.timestamp_ns,
        working_set_bytes: v(s.memory_working_set_bytes),
        available_bytes: s
            .memory_limit_bytes
            .map(|l| l.saturating_sub(s.memory_working_set_bytes))
            .and_then(v),
        usage_bytes: v(s.memory_usage_bytes),
        rss_bytes: v(s.memory_rss_bytes),
        page_faults: v(s.memory_page_faults),
        major_page_faults: v(s.memory_major_page_faults),
    }
}

/// Pod stats: the sum of its containers' samples, the pod netns's
/// interfaces (the first, normally `eth0`, is the default) and the
/// processes in its containers.
pub fn pod_stats(
    sample: &crate::engine::samples::PodSample,
    containers: Vec<cri::ContainerStats>,
) -> cri::PodSandboxStats {
    let p = &sample.pod;
    let ts = containers
        .iter()
        .filter_map(|c| c.cpu.as_ref().map(|x| x.timestamp))
        .max()
        .unwrap_or_else(crate::engine::records::now_nanos);
    let sum = |f: &dyn Fn(&cri::ContainerStats) -> Option<u64>| -> Option<cri::UInt64Value> {
        let vals: Vec<u64> = containers.iter().filter_map(f).collect();
        (!vals.is_empty()).then(|| cri::UInt64Value {
            value: vals.iter().sum(),
        })
    };
    let cpu = cri::CpuUsage {
        timestamp: ts,
        usage_core_nano_seconds: sum(&|c| {
            c.cpu
                .as_ref()?
                .usage_core_nano_seconds
                .as_ref()
                .map(|v| v.value)
        }),
        usage_nano_cores: sum(&|c| c.cpu.as_ref()?.usage_nano_cores.as_ref().map(|v| v.value)),
    };
    let mem = |g: fn(&cri::MemoryUsage) -> Option<&cri::UInt64Value>| {
        sum(&|c: &cri::ContainerStats| c.memory.as_ref().and_then(g).map(|v| v.value))
    };
    let memory = cri::MemoryUsage {
        timestamp: ts,
        working_set_bytes: mem(|m| m.working_set_bytes.as_ref()),
        available_bytes: mem(|m| m.available_bytes.as_ref()),
        usage_bytes: mem(|m| m.usage_bytes.as_ref()),
        rss_bytes: mem(|m| m.rss_bytes.as_ref()),
        page_faults: mem(|m| m.page_faults.as_ref()),
        major_page_faults: mem(|m| m.major_page_faults.as_ref()),
    };
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: p.id.clone(),
            metadata: p.config.metadata.clone(),
            labels: p.config.labels.clone(),
            annotations: p.config.annotations.clone(),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cpu),
            memory: Some(memory),
            network: sample.interfaces.as_ref().map(|list| {
                let ifaces: Vec<cri::NetworkInterfaceUsage> =
                    list.iter().map(interface_usage).collect();
                cri::NetworkUsage {
                    timestamp: sample.timestamp,
                    default_interface: ifaces
                        .iter()
                        .find(|i| i.name == "eth0")
                        .or(ifaces.first())
                        .cloned(),
                    interfaces: ifaces,
                }
            }),
            process: sample.process_count().map(|n| cri::ProcessUsage {
                timestamp: sample.timestamp,
                process_count: Some(cri::UInt64Value { value: n }),
            }),
            containers,
        }),
        windows: None,
    }
}

/// `Status.runtime_handlers`: the default handler under the name "" (what a
/// pod without a RuntimeClass gets), then every handler by name.
pub fn runtime_handlers(
    default: &str,
    features: &std::collections::BTreeMap<String, crate::engine::features::HandlerFeatures>,
) -> Vec<cri::RuntimeHandler> {
    let entry = |name: &str, f: &crate::engine::features::HandlerFeatures| cri::RuntimeHandler {
        name: name.to_string(),
        features: Some(cri::RuntimeHandlerFeatures {
            recursive_read_only_mounts: f.recursive_read_only_mounts,
            user_namespaces: f.user_namespaces,
        }),
    };
    features
        .get(default)
        .map(|f| entry("", f))
        .into_iter()
        .chain(features.iter().map(|(n, f)| entry(n, f)))
        .collect()
}

fn interface_usage(i: &crate::sandbox::InterfaceCounters) -> cri::NetworkInterfaceUsage {
    let v = |value: u64| Some(cri::UInt64Value { value });
    cri::NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: v(i.rx_bytes),
        rx_errors: v(i.rx_errors),
        tx_bytes: v(i.tx_bytes),
        tx_errors: v(i.tx_errors),
    }
}
