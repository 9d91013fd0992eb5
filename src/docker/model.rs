//! How engine records look through Docker's eyes: the `docker ps` summary,
//! the `docker inspect` document, state words and "Up 3 minutes" statuses.
//! Docker-made containers answer with the request they were created from,
//! merged with their image's config as Docker merges it; containers made
//! through CRI are described from their CRI config.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::create::{stored_request, CreateRequest};
use super::time::{now_nanos, rfc3339};
use super::{ApiError, Shared};
use crate::engine::health::{HealthState, HealthStatus};
use crate::engine::records::{ContainerRecord, ContainerState, PodRecord};

/// Docker's state word.
pub fn state_word(rec: &ContainerRecord) -> &'static str {
    match rec.state {
        ContainerState::Created => "created",
        ContainerState::Running if rec.paused => "paused",
        ContainerState::Running => "running",
        ContainerState::Exited => "exited",
    }
}

/// Go's `units.HumanDuration`, as `docker ps` prints it.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    match s {
        0 => "Less than a second".into(),
        1..=59 => plural(s, "second"),
        60..=119 => "About a minute".into(),
        120..=3599 => plural(s / 60, "minute"),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => plural(s / 3600, "hour"),
        172_800..=1_209_599 => plural(s / 86_400, "day"),
        1_209_600..=5_183_999 => plural(s / 604_800, "week"),
        5_184_000..=63_071_999 => plural(s / 2_592_000, "month"),
        _ => plural(s / 31_536_000, "year"),
    }
}

/// A container's health as Docker shows it: its status while it has a check,
/// `none` without one.
pub fn health_word(d: &Shared, rec: &ContainerRecord) -> &'static str {
    health_of(d, rec).map_or("none", |h| h.status.as_str())
}

/// The recorded health of a container with a check.
pub fn health_of(d: &Shared, rec: &ContainerRecord) -> Option<HealthState> {
    if !rec.health.as_ref().is_some_and(|h| h.enabled()) {
        return None;
    }
    d.engine.health(&rec.id).ok().flatten()
}

/// `State.Health` of inspect.
fn health_json(h: &HealthState) -> Value {
    let log: Vec<Value> = h
        .log
        .iter()
        .map(|r| {
            json!({
                "Start": rfc3339(r.start),
                "End": rfc3339(r.end),
                "ExitCode": r.exit_code,
                "Output": r.output,
            })
        })
        .collect();
    json!({"Status": h.status.as_str(), "FailingStreak": h.failing_streak, "Log": log})
}

/// `Up 5 seconds (healthy)`, `Exited (3) 2 minutes ago`, `Created`.
pub fn status_line(rec: &ContainerRecord, health: Option<HealthStatus>, now: i64) -> String {
    let since = |t: i64| Duration::from_nanos((now - t).max(0) as u64);
    match rec.state {
        ContainerState::Created => "Created".into(),
        ContainerState::Running => {
            let up = format!("Up {}", human_duration(since(rec.started_at)));
            match health {
                _ if rec.paused => format!("{up} (Paused)"),
                Some(HealthStatus::Starting) => format!("{up} (health: starting)"),
                Some(h) => format!("{up} ({})", h.as_str()),
                None => up,
            }
        }
        ContainerState::Exited if rec.started_at == 0 && rec.reason == "StartError" => {
            "Created".into()
        }
        ContainerState::Exited => format!(
            "Exited ({}) {} ago",
            rec.exit_code,
            human_duration(since(rec.finished_at))
        ),
    }
}

/// The log driver Docker clients are told of: the Docker SDK for Python
/// (and compose) read a container's logs only for `json-file`/`journald`.
/// berth keeps one log per container (the CRI format) and its logs endpoint
/// serves it, so clients that ask for logs get them as from json-file.
pub const LOG_DRIVER: &str = "json-file";

/// The container's configuration after Docker's merge with its image.
pub struct Effective {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub labels: BTreeMap<String, String>,
    pub exposed: BTreeMap<String, Value>,
    pub stop_signal: Option<String>,
    pub request: Option<CreateRequest>,
}

impl Effective {
    /// `Path` and `Args` of the process Docker would report.
    pub fn path_args(&self) -> (String, Vec<String>) {
        let mut all = self.entrypoint.iter().chain(self.cmd.iter()).cloned();
        let path = all.next().unwrap_or_default();
        (path, all.collect())
    }

    /// `docker ps`'s COMMAND: path and args joined.
    pub fn command_line(&self) -> String {
        let (p, a) = self.path_args();
        std::iter::once(p).chain(a).collect::<Vec<_>>().join(" ")
    }
}

/// Merges a container's config with its image's, as Docker's daemon does.
pub async fn effective(d: &Shared, rec: &ContainerRecord) -> Effective {
    let image = match d.engine.images.resolve(&rec.image_id) {
        Ok(Some(img)) => d.engine.images.config(&img).await.ok(),
        _ => None,
    };
    let ic = image.as_ref().and_then(|i| i.config().clone());
    let img_ep = ic
        .as_ref()
        .and_then(|c| c.entrypoint().clone())
        .unwrap_or_default();
    let img_cmd = ic
        .as_ref()
        .and_then(|c| c.cmd().clone())
        .unwrap_or_default();
    let c = &rec.config;
    // CRI (Kubernetes) rules, which Docker's request was translated into.
    let (entrypoint, cmd) = match (c.command.is_empty(), c.args.is_empty()) {
        (false, _) => (c.command.clone(), c.args.clone()),
        (true, false) => (img_ep, c.args.clone()),
        (true, true) => (img_ep, img_cmd),
    };
    let mut env: Vec<String> = ic
        .as_ref()
        .and_then(|c| c.env().clone())
        .unwrap_or_default();
    for kv in &c.envs {
        let prefix = format!("{}=", kv.key);
        env.retain(|e| !e.starts_with(&prefix));
        env.push(format!("{}={}", kv.key, kv.value));
    }
    let request = stored_request(rec);
    let working_dir = if c.working_dir.is_empty() {
        ic.as_ref()
            .and_then(|c| c.working_dir().clone())
            .unwrap_or_default()
    } else {
        c.working_dir.clone()
    };
    let user = match request.as_ref().map(|r| r.user.clone()) {
        Some(u) if !u.is_empty() => u,
        _ => {
            let sc = c.linux.as_ref().and_then(|l| l.security_context.as_ref());
            match sc.and_then(|s| s.run_as_user.as_ref()) {
                Some(u) => u.value.to_string(),
                None => sc
                    .map(|s| s.run_as_username.clone())
                    .filter(|u| !u.is_empty())
                    .or_else(|| ic.as_ref().and_then(|c| c.user().clone()))
                    .unwrap_or_default(),
            }
        }
    };
    let mut labels: BTreeMap<String, String> = ic
        .as_ref()
        .and_then(|c| c.labels().clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(c.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut exposed: BTreeMap<String, Value> = ic
        .as_ref()
        .and_then(|c| c.exposed_ports().clone())
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p, json!({})))
        .collect();
    if let Some(r) = &request {
        for p in r.exposed_ports.iter().flatten().map(|(k, _)| k) {
            exposed.insert(p.clone(), json!({}));
        }
    }
    let stop_signal = request
        .as_ref()
        .and_then(|r| r.stop_signal.clone())
        .or_else(|| ic.as_ref().and_then(|c| c.stop_signal().clone()));
    Effective {
        entrypoint,
        cmd,
        env,
        working_dir,
        user,
        labels,
        exposed,
        stop_signal,
        request,
    }
}

/// `docker ps` port entries from the pod's published ports and exposed ports.
fn ports(pod: Option<&PodRecord>, eff: &Effective) -> Vec<Value> {
    let mut out = vec![];
    let mut published = std::collections::HashSet::new();
    for pm in pod
        .map(|p| p.config.port_mappings.as_slice())
        .unwrap_or(&[])
    {
        let proto = proto_name(pm.protocol);
        published.insert(format!("{}/{proto}", pm.container_port));
        let ip = if pm.host_ip.is_empty() {
            "0.0.0.0"
        } else {
            &pm.host_ip
        };
        out.push(json!({
            "IP": ip,
            "PrivatePort": pm.container_port,
            "PublicPort": pm.host_port,
            "Type": proto,
        }));
    }
    for p in eff.exposed.keys() {
        if published.contains(p) {
            continue;
        }
        let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        if let Ok(port) = port.parse::<u16>() {
            out.push(json!({"PrivatePort": port, "Type": proto}));
        }
    }
    out
}

pub fn proto_name(p: i32) -> &'static str {
    match k8s_cri::v1::Protocol::try_from(p) {
        Ok(k8s_cri::v1::Protocol::Udp) => "udp",
        Ok(k8s_cri::v1::Protocol::Sctp) => "sctp",
        _ => "tcp",
    }
}

fn network_mode(pod: Option<&PodRecord>) -> String {
    pod.map_or_else(|| "none".to_string(), super::networks::pod_network)
}

/// `NetworkSettings.Networks`: every attachment of the container's pod.
/// On user networks the container's short id is among its `Aliases` (as
/// Docker reports it; compose 1.29 reads it to see a container already
/// connected) and `DNSNames` lists its name, short id and aliases.
fn networks(d: &Shared, rec: &ContainerRecord, pod: Option<&PodRecord>) -> Value {
    let endpoint = |network: &str, network_id: String| {
        json!({
            "IPAMConfig": null,
            "Links": null,
            "Aliases": null,
            "MacAddress": "",
            "NetworkID": network_id,
            "EndpointID": pod.map(|p| super::networks::endpoint_id(&p.id, network)).unwrap_or_default(),
            "Gateway": "",
            "IPAddress": "",
            "IPPrefixLen": 0,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DriverOpts": null,
            "DNSNames": null,
        })
    };
    let mode = network_mode(pod);
    let mut out = serde_json::Map::new();
    let attachments = pod.map(PodRecord::attachments).unwrap_or_default();
    if attachments.is_empty() && matches!(mode.as_str(), "host" | "none") {
        out.insert(
            mode.clone(),
            endpoint(&mode, super::networks::builtin_id(&mode)),
        );
    }
    let short_id: String = rec.id.chars().take(12).collect();
    let name = d.engine.container_name(rec);
    for a in attachments {
        let mut v = endpoint(&a.network, super::networks::attachment_network_id(&a));
        let v4 = a
            .ips
            .iter()
            .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
            .cloned()
            .unwrap_or_default();
        let v6 = a
            .ips
            .iter()
            .find(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
            .cloned()
            .unwrap_or_default();
        v["IPAddress"] = json!(v4);
        v["IPPrefixLen"] = json!(if v4.is_empty() { 0 } else { a.prefix_len });
        v["GlobalIPv6Address"] = json!(v6);
        v["Gateway"] = json!(a.gateway);
        v["MacAddress"] = json!(a.mac);
        if !a.requested_ip.is_empty() {
            v["IPAMConfig"] = json!({"IPv4Address": a.requested_ip});
        }
        if a.network != "bridge" {
            let mut aliases = a.aliases.clone();
            let mut dns = vec![name.clone(), short_id.clone()];
            for al in &a.aliases {
                if !dns.contains(al) {
                    dns.push(al.clone());
                }
            }
            if !aliases.contains(&short_id) {
                aliases.push(short_id.clone());
            }
            v["Aliases"] = json!(aliases);
            v["DNSNames"] = json!(dns);
        }
        out.insert(a.network.clone(), v);
    }
    Value::Object(out)
}

/// The mounts of a container in Docker's form.
fn mounts(d: &Shared, rec: &ContainerRecord) -> Vec<Value> {
    rec.config
        .mounts
        .iter()
        .map(|m| {
            let prop = match k8s_cri::v1::MountPropagation::try_from(m.propagation) {
                Ok(k8s_cri::v1::MountPropagation::PropagationBidirectional) => "rshared",
                Ok(k8s_cri::v1::MountPropagation::PropagationHostToContainer) => "rslave",
                _ => "rprivate",
            };
            match d.engine.volume_of(&m.host_path) {
                Some(name) => json!({
                    "Type": "volume",
                    "Name": name,
                    "Source": m.host_path,
                    "Destination": m.container_path,
                    "Driver": "local",
                    "Mode": "",
                    "RW": !m.readonly,
                    "Propagation": "",
                }),
                None => json!({
                    "Type": "bind",
                    "Source": m.host_path,
                    "Destination": m.container_path,
                    "Mode": "",
                    "RW": !m.readonly,
                    "Propagation": prop,
                }),
            }
        })
        .collect()
}

/// `SizeRw` (the writable layer) and `SizeRootFs` (plus the image).
async fn add_sizes(d: &Shared, rec: &ContainerRecord, v: &mut Value) {
    let rw = d.engine.writable_layer_usage(rec).await.apparent_bytes;
    let image = d
        .engine
        .images
        .resolve(&rec.image_id)
        .ok()
        .flatten()
        .map(|i| i.size)
        .unwrap_or(0);
    v["SizeRw"] = json!(rw);
    v["SizeRootFs"] = json!(rw + image);
}

/// One `docker ps` entry.
pub async fn summary(d: &Shared, rec: &ContainerRecord, size: bool) -> Result<Value, ApiError> {
    let pod = d.engine.pod(&rec.pod_id).ok();
    let eff = effective(d, rec).await;
    let mut v = json!({
        "Id": rec.id,
        "Names": [format!("/{}", d.engine.container_name(rec))],
        "Image": rec.image_name,
        "ImageID": rec.image_id,
        "Command": eff.command_line(),
        "Created": rec.created_at / 1_000_000_000,
        "Ports": ports(pod.as_ref(), &eff),
        "Labels": rec.config.labels,
        "State": state_word(rec),
        "Status": status_line(rec, health_of(d, rec).map(|h| h.status), now_nanos()),
        "HostConfig": {"NetworkMode": network_mode(pod.as_ref())},
        "NetworkSettings": {"Networks": networks(d, rec, pod.as_ref())},
        "Mounts": mounts(d, rec),
    });
    if size {
        add_sizes(d, rec, &mut v).await;
    }
    Ok(v)
}

/// The HostConfig Docker reports, from the stored request or the CRI config.
fn host_config(
    d: &Shared,
    rec: &ContainerRecord,
    pod: Option<&PodRecord>,
    eff: &Effective,
) -> Value {
    let res = rec
        .config
        .linux
        .as_ref()
        .and_then(|l| l.resources.clone())
        .unwrap_or_default();
    let sc = rec
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    let caps = sc.capabilities.clone().unwrap_or_default();
    let port_bindings = port_bindings_of(pod);
    let binds: Vec<String> = rec
        .config
        .mounts
        .iter()
        .map(|m| {
            format!(
                "{}:{}{}",
                m.host_path,
                m.container_path,
                if m.readonly { ":ro" } else { "" }
            )
        })
        .collect();
    let dns = pod
        .and_then(|p| p.config.dns_config.clone())
        .unwrap_or_default();
    let mut hc = json!({
        "Binds": if binds.is_empty() { Value::Null } else { json!(binds) },
        "ContainerIDFile": "",
        "LogConfig": {"Type": LOG_DRIVER, "Config": {}},
        "NetworkMode": network_mode(pod),
        "PortBindings": port_bindings,
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": false,
        "VolumeDriver": "",
        "VolumesFrom": null,
        "ConsoleSize": [0, 0],
        "CapAdd": if caps.add_capabilities.is_empty() { Value::Null } else { json!(caps.add_capabilities) },
        "CapDrop": if caps.drop_capabilities.is_empty() { Value::Null } else { json!(caps.drop_capabilities) },
        "CgroupnsMode": "host",
        "Dns": dns.servers,
        "DnsOptions": dns.options,
        "DnsSearch": dns.searches,
        "ExtraHosts": null,
        "GroupAdd": null,
        "IpcMode": "private",
        "Cgroup": "",
        "Links": null,
        "OomScoreAdj": res.oom_score_adj,
        "PidMode": "",
        "Privileged": sc.privileged,
        "PublishAllPorts": false,
        "ReadonlyRootfs": sc.readonly_rootfs,
        "SecurityOpt": null,
        "UTSMode": "",
        "UsernsMode": "",
        "ShmSize": 67108864,
        "Runtime": if rec.runtime_handler.is_empty() { d.engine.config.runtime.default_handler.clone() } else { rec.runtime_handler.clone() },
        "Isolation": "",
        "CpuShares": res.cpu_shares,
        "Memory": res.memory_limit_in_bytes,
        "NanoCpus": 0,
        "CgroupParent": pod.and_then(|p| p.config.linux.as_ref()).map(|l| l.cgroup_parent.clone()).unwrap_or_default(),
        "BlkioWeight": 0,
        "CpuPeriod": res.cpu_period,
        "CpuQuota": res.cpu_quota,
        "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0,
        "CpusetCpus": res.cpuset_cpus,
        "CpusetMems": res.cpuset_mems,
        "Devices": [],
        "DeviceCgroupRules": null,
        "DeviceRequests": null,
        "MemoryReservation": 0,
        "MemorySwap": res.memory_swap_limit_in_bytes,
        "MemorySwappiness": null,
        "OomKillDisable": false,
        "PidsLimit": null,
        "Ulimits": [],
        "Mounts": null,
        "MaskedPaths": sc.masked_paths,
        "ReadonlyPaths": sc.readonly_paths,
        "Init": null,
    });
    // A Docker-made container reports what it was created with.
    if let Some(req) = &eff.request {
        if let Ok(Value::Object(given)) = serde_json::to_value(&req.host_config) {
            let obj = hc.as_object_mut().expect("object");
            for (k, v) in given {
                let empty = v.is_null()
                    || v.as_str() == Some("")
                    || (k == "NetworkMode" && v.as_str() == Some("default"));
                if !empty {
                    obj.insert(k, v);
                }
            }
            if req.host_config.network_mode.is_empty() || req.host_config.network_mode == "default"
            {
                obj.insert("NetworkMode".into(), json!(network_mode(pod)));
            }
            obj.insert("PortBindings".into(), json!(port_bindings_of(pod)));
            let log_opts = req
                .host_config
                .log_config
                .as_ref()
                .and_then(|l| l.config.clone())
                .unwrap_or_default();
            obj.insert(
                "LogConfig".into(),
                json!({"Type": LOG_DRIVER, "Config": log_opts}),
            );
        }
    }
    hc
}

fn port_bindings_of(pod: Option<&PodRecord>) -> Map<String, Value> {
    let mut out = Map::new();
    for pm in pod
        .map(|p| p.config.port_mappings.as_slice())
        .unwrap_or(&[])
    {
        let key = format!("{}/{}", pm.container_port, proto_name(pm.protocol));
        let entry = out.entry(key).or_insert_with(|| json!([]));
        if let Some(a) = entry.as_array_mut() {
            a.push(json!({"HostIp": pm.host_ip, "HostPort": pm.host_port.to_string()}));
        }
    }
    out
}

/// `docker inspect` of a container.
pub async fn inspect(d: &Shared, rec: &ContainerRecord, size: bool) -> Result<Value, ApiError> {
    let pod = d.engine.pod(&rec.pod_id).ok();
    let eff = effective(d, rec).await;
    let (path, args) = eff.path_args();
    let running = rec.state == ContainerState::Running;
    let name = d.engine.container_name(rec);
    let req = eff.request.clone().unwrap_or_default();
    let hostname = pod
        .as_ref()
        .map(|p| p.config.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let file = |f: Option<&std::path::PathBuf>| {
        f.map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let ip = pod
        .as_ref()
        .and_then(|p| p.ips.first().cloned())
        .unwrap_or_default();
    let mut ports = Map::new();
    for p in eff.exposed.keys() {
        ports.insert(p.clone(), Value::Null);
    }
    for (k, v) in port_bindings_of(pod.as_ref()) {
        ports.insert(k, v);
    }
    let error = if rec.reason == "StartError" || rec.reason == "Unknown" {
        rec.message.clone()
    } else {
        String::new()
    };
    let rootfs = rec.rootfs();
    let mut v = json!({
        "Id": rec.id,
        "Created": rfc3339(rec.created_at),
        "Path": path,
        "Args": args,
        "State": {
            "Status": state_word(rec),
            "Running": running,
            "Paused": rec.paused,
            "Restarting": false,
            "OOMKilled": rec.reason == "OOMKilled",
            "Dead": false,
            "Pid": if running { rec.pid.map(|p| p.pid).unwrap_or(0) } else { 0 },
            "ExitCode": if rec.state == ContainerState::Exited || rec.reason == "StartError" { rec.exit_code } else { 0 },
            "Error": error,
            "StartedAt": rfc3339(rec.started_at),
            "FinishedAt": rfc3339(rec.finished_at),
        },
        "Image": rec.image_id,
        "ResolvConfPath": file(pod.as_ref().and_then(|p| p.resolv_conf.as_ref())),
        "HostnamePath": file(pod.as_ref().and_then(|p| p.hostname_file.as_ref())),
        "HostsPath": file(pod.as_ref().and_then(|p| p.hosts.as_ref())),
        "LogPath": file(rec.log_path.as_ref()),
        "Name": format!("/{name}"),
        "RestartCount": rec.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": d.execs_of(&rec.id),
        "HostConfig": host_config(d, rec, pod.as_ref(), &eff),
        "GraphDriver": {
            "Name": "overlay2",
            "Data": {
                "MergedDir": rootfs,
                "UpperDir": rec.layer_dir.join("upper"),
                "WorkDir": rec.layer_dir.join("work"),
            },
        },
        "Mounts": mounts(d, rec),
        "Config": {
            "Hostname": hostname,
            "Domainname": req.domainname,
            "User": eff.user,
            "AttachStdin": req.attach_stdin,
            "AttachStdout": req.attach_stdout,
            "AttachStderr": req.attach_stderr,
            "ExposedPorts": if eff.exposed.is_empty() { Value::Null } else { json!(eff.exposed) },
            "Tty": rec.config.tty,
            "OpenStdin": rec.config.stdin,
            "StdinOnce": rec.config.stdin_once,
            "Env": eff.env,
            "Cmd": if eff.cmd.is_empty() { Value::Null } else { json!(eff.cmd) },
            "Image": rec.image_name,
            "Volumes": null,
            "WorkingDir": eff.working_dir,
            "Entrypoint": if eff.entrypoint.is_empty() { Value::Null } else { json!(eff.entrypoint) },
            "OnBuild": null,
            "Labels": eff.labels,
        },
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": rec.pod_id,
            "SandboxKey": file(pod.as_ref().and_then(|p| p.netns.as_ref())),
            "HairpinMode": false,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Ports": ports,
            "SecondaryIPAddresses": null,
            "SecondaryIPv6Addresses": null,
            "EndpointID": "",
            "Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": ip,
            "IPPrefixLen": 0,
            "IPv6Gateway": "",
            "MacAddress": "",
            "Networks": networks(d, rec, pod.as_ref()),
        },
    });
    if let Some(s) = &eff.stop_signal {
        v["Config"]["StopSignal"] = json!(s);
    }
    if let Some(h) = &rec.health {
        v["Config"]["Healthcheck"] = json!(h);
    }
    if let Some(h) = health_of(d, rec) {
        v["State"]["Health"] = health_json(&h);
    }
    if let Some(t) = req.stop_timeout {
        v["Config"]["StopTimeout"] = json!(t);
    }
    if size {
        add_sizes(d, rec, &mut v).await;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_go_units() {
        let s = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(45)), "45 seconds");
        assert_eq!(human_duration(s(90)), "About a minute");
        assert_eq!(human_duration(s(300)), "5 minutes");
        assert_eq!(human_duration(s(3700)), "About an hour");
        assert_eq!(human_duration(s(3 * 3600)), "3 hours");
        assert_eq!(human_duration(s(3 * 86_400)), "3 days");
        assert_eq!(human_duration(s(3 * 604_800)), "3 weeks");
    }
}
