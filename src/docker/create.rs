//! `POST /containers/create`: a Docker create request becomes a one-container
//! pod sandbox (its network, hostname, DNS, published ports) and a CRI
//! container config (command, env, user, mounts, resources, security), made
//! by the same engine calls CRI uses. The request itself is kept in the
//! container's annotations, so inspect answers with what the client asked.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use k8s_cri::v1 as cri;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::warn;

use super::error::{DockerJson, Query};
use super::{ApiError, Shared};
use crate::engine::container::DockerCreate;
use crate::engine::docker::{
    CONFIG_ANNOTATION, NAME_ANNOTATION, NETWORK_ALIASES_ANNOTATION, NETWORK_ANNOTATION,
    NETWORK_ID_ANNOTATION, NETWORK_IP_ANNOTATION, OWNER_LABEL,
};
use crate::engine::health::HealthConfig;
use crate::engine::joined::JoinedNamespaces;
use crate::engine::networks::NetworkRequest;
use crate::engine::records::StopPolicy;
use crate::engine::records::{new_id, ExitPolicy, Restart};

mod joined;
mod log_opts;
mod mounts;
mod request;

use mounts::mounts;
use request::PortBinding;
pub use request::{check_restart_policy, stored_request, CreateRequest, RestartPolicy};

pub fn routes() -> Router<Shared> {
    Router::new().route("/containers/create", post(create))
}

#[derive(Deserialize)]
struct Params {
    name: Option<String>,
}

/// `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, as Docker allows.
pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A Docker-style `adjective_name` that no container has yet.
fn generate_name(taken: &dyn Fn(&str) -> bool) -> String {
    const ADJ: &[&str] = &[
        "brave", "calm", "eager", "fervent", "gallant", "happy", "jolly", "keen", "lucid",
        "modest", "nifty", "quirky", "serene", "stoic", "tender", "vigilant", "wizardly", "zen",
    ];
    const NAMES: &[&str] = &[
        "babbage", "curie", "darwin", "euler", "fermat", "galois", "hopper", "kepler", "lovelace",
        "noether", "pascal", "ritchie", "shannon", "thompson", "turing", "wozniak",
    ];
    let r = new_id();
    let n = |i: usize| usize::from_str_radix(&r[i..i + 4], 16).unwrap_or(0);
    let base = format!("{}_{}", ADJ[n(0) % ADJ.len()], NAMES[n(4) % NAMES.len()]);
    if !taken(&base) {
        return base;
    }
    (1..)
        .map(|i| format!("{base}{i}"))
        .find(|c| !taken(c))
        .expect("some suffix is free")
}

/// The container name → id of every container, for conflict checks.
pub fn names(d: &Shared) -> Result<HashMap<String, String>, ApiError> {
    Ok(d.engine
        .containers()?
        .iter()
        .map(|c| (d.engine.container_name(c), c.id.clone()))
        .collect())
}

async fn create(
    State(d): State<Shared>,
    Query(p): Query<Params>,
    DockerJson(mut body): DockerJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: CreateRequest = serde_json::from_value(body.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid container config: {e}")))?;
    if req.image.is_empty() {
        return Err(ApiError::bad_request("config must name an Image"));
    }
    if let Some(p) = &req.host_config.restart_policy {
        check_restart_policy(p, false)?;
    }
    let log_rotation = log_opts::rotation(req.host_config.log_config.as_ref())?;
    let taken = names(&d)?;
    let name = match p.name.as_deref().map(|n| n.trim_start_matches('/')) {
        Some(n) if !n.is_empty() => {
            if !valid_name(n) {
                return Err(ApiError::bad_request(format!(
                    "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
            if let Some(id) = taken.get(n) {
                return Err(ApiError::conflict(format!(
                    "Conflict. The container name \"/{n}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            n.to_string()
        }
        _ => generate_name(&|c| taken.contains_key(c)),
    };
    let image = d
        .engine
        .images
        .resolve(&req.image)?
        .ok_or_else(|| ApiError::not_found(format!("No such image: {}", req.image)))?;
    let image_config = d.engine.images.config(&image).await?;
    if let Some(h) = &req.healthcheck {
        h.validate()?;
    }
    let health = HealthConfig::merge(
        req.healthcheck.clone(),
        d.engine.image_healthcheck(&image).await?.as_ref(),
    );
    let id = new_id();
    let log_dir = d.engine.config.root.join("docker").join("logs").join(&id);
    let shared = joined::joined_namespaces(&d, &req, &mut body)?;
    let (primary, extra_networks) = network_requests(&d, &req).await?;
    let (mut pod_cfg, mut warnings) = pod_config(&req, &name, &id, &log_dir, primary.as_ref())?;
    if let Some(target) = &shared.network {
        pod_cfg.annotations.insert(
            NETWORK_ANNOTATION.to_string(),
            format!("container:{target}"),
        );
    }
    let ctr_cfg = container_config(&d, &req, &name, &body, &image_config)?;
    let mounts = ctr_cfg.mounts.clone();
    let made = create_in_pod(
        &d,
        &req,
        (pod_cfg, shared),
        ctr_cfg,
        extra_networks,
        &id,
        DockerCreate {
            health,
            exit_policy: exit_policy(&req),
            log_rotation,
            stop: StopPolicy {
                signal: req.stop_signal.clone().filter(|s| !s.is_empty()),
                timeout_secs: req.stop_timeout,
            },
        },
    );
    if let Err(e) = made.await {
        // The anonymous volumes made for it go with it.
        d.engine.remove_anonymous_volumes(&mounts).await;
        return Err(e);
    }
    if req.host_config.memory > 0
        && !d.engine.host.swap_accounting
        && req.host_config.memory_swap > 0
    {
        warnings.push("Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.".into());
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": id, "Warnings": warnings})),
    ))
}

/// The pod sandbox of a Docker container, its networks and hosts, then the
/// container; the pod is removed again when a step fails.
async fn create_in_pod(
    d: &Shared,
    req: &CreateRequest,
    (pod_cfg, shared): (cri::PodSandboxConfig, JoinedNamespaces),
    ctr_cfg: cri::ContainerConfig,
    extra_networks: Vec<NetworkRequest>,
    id: &str,
    extras: DockerCreate,
) -> Result<(), ApiError> {
    let handler = req.host_config.runtime.clone();
    let pod_id = d
        .engine
        .run_pod_sandbox_joined(pod_cfg, &handler, shared)
        .await?;
    for net in extra_networks {
        if let Err(e) = d.engine.connect_network(&pod_id, net).await {
            let _ = d.engine.remove_pod_sandbox(&pod_id).await;
            return Err(e.into());
        }
    }
    if let Some(hosts) = req
        .host_config
        .extra_hosts
        .as_ref()
        .filter(|h| !h.is_empty())
    {
        if let Err(e) = add_hosts(d, &pod_id, hosts) {
            let _ = d.engine.remove_pod_sandbox(&pod_id).await;
            return Err(e);
        }
    }
    if let Err(e) = d
        .engine
        .create_docker_container(&pod_id, ctr_cfg, id.to_string(), extras)
        .await
    {
        if let Err(re) = d.engine.remove_pod_sandbox(&pod_id).await {
            warn!(pod = %pod_id, error = %re, "failed to remove the pod of a failed create");
        }
        return Err(e.into());
    }
    Ok(())
}

/// What the engine does when the container exits: its restart policy
/// (checked already) or its removal.
fn exit_policy(req: &CreateRequest) -> ExitPolicy {
    let p = req.host_config.restart_policy.clone().unwrap_or_default();
    ExitPolicy {
        restart: restart_of(&p),
        auto_remove: req.host_config.auto_remove,
    }
}

/// The engine's form of a (checked) Docker restart policy.
pub fn restart_of(p: &RestartPolicy) -> Restart {
    let max = u32::try_from(p.maximum_retry_count).unwrap_or(u32::MAX);
    Restart::from_docker(&p.name, max).unwrap_or_default()
}

/// `ExtraHosts` (`host:ip` or `host=ip`) appended to the pod's /etc/hosts.
/// `host-gateway` is the host's address on the container's network (the
/// gateway CNI gave it: a bridge's address); with the host's network,
/// 127.0.0.1.
fn add_hosts(d: &Shared, pod_id: &str, hosts: &[String]) -> Result<(), ApiError> {
    let mut lines = String::new();
    for h in hosts {
        let (name, ip) = h
            .split_once('=')
            .or_else(|| h.split_once(':'))
            .ok_or_else(|| {
                ApiError::bad_request(format!("invalid extra host {h:?}: want host:ip"))
            })?;
        let ip = if ip == "host-gateway" {
            host_gateway(d, pod_id)?
        } else {
            ip.to_string()
        };
        ip.parse::<std::net::IpAddr>().map_err(|_| {
            ApiError::bad_request(format!("invalid IP address in extra host {h:?}"))
        })?;
        lines.push_str(&format!("{ip}\t{name}\n"));
    }
    d.engine.append_pod_hosts(pod_id, &lines)?;
    Ok(())
}

/// What `host-gateway` means for a pod (see [`add_hosts`]).
fn host_gateway(d: &Shared, pod_id: &str) -> Result<String, ApiError> {
    let pod = d.engine.pod(pod_id)?;
    if let Some(g) = pod.gateways.first() {
        return Ok(g.clone());
    }
    let host_net = pod
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|n| n.network() == cri::NamespaceMode::Node);
    if host_net {
        return Ok("127.0.0.1".into());
    }
    Err(ApiError::bad_request(
        "host-gateway: the container's network has no gateway to the host (its CNI result names none)",
    ))
}

/// A free TCP port on `ip` for a binding without a host port.
fn free_port(ip: &str) -> Result<i32, ApiError> {
    let ip = if ip.is_empty() { "0.0.0.0" } else { ip };
    let l = TcpListener::bind((ip, 0))
        .map_err(|e| ApiError::internal(format!("failed to find a free port on {ip}: {e}")))?;
    Ok(l.local_addr().map(|a| a.port() as i32).unwrap_or(0))
}

/// `80/tcp` → (80, TCP).
fn parse_port(spec: &str) -> Result<(i32, cri::Protocol), ApiError> {
    let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = match proto {
        "tcp" => cri::Protocol::Tcp,
        "udp" => cri::Protocol::Udp,
        "sctp" => cri::Protocol::Sctp,
        other => return Err(ApiError::bad_request(format!("invalid proto: {other}"))),
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| ApiError::bad_request(format!("invalid port: {spec}")))?;
    Ok((i32::from(port), proto))
}

/// The published ports, with free ports chosen where the client left them
/// empty; returns the resolved bindings too (kept for inspect).
pub fn port_mappings(req: &CreateRequest) -> Result<Vec<cri::PortMapping>, ApiError> {
    let mut out = vec![];
    let hc = &req.host_config;
    let mut specs: Vec<(String, Vec<PortBinding>)> = hc
        .port_bindings
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
        .collect();
    if hc.publish_all_ports {
        for k in req.exposed_ports.iter().flatten().map(|(k, _)| k) {
            if !specs.iter().any(|(s, _)| s == k) {
                specs.push((k.clone(), vec![PortBinding::default()]));
            }
        }
    }
    specs.sort_by(|a, b| a.0.cmp(&b.0));
    for (spec, bindings) in specs {
        let (container_port, proto) = parse_port(&spec)?;
        for b in bindings {
            let host_port = if b.host_port.is_empty() {
                free_port(&b.host_ip)?
            } else {
                let (lo, _) = b.host_port.split_once('-').unwrap_or((&b.host_port, ""));
                lo.parse::<u16>().map(i32::from).map_err(|_| {
                    ApiError::bad_request(format!("invalid host port: {}", b.host_port))
                })?
            };
            let host_ip = if b.host_ip == "0.0.0.0" {
                String::new()
            } else {
                b.host_ip.clone()
            };
            out.push(cri::PortMapping {
                protocol: proto as i32,
                container_port,
                host_port,
                host_ip,
            });
        }
    }
    Ok(out)
}

/// The networks a create attaches: the first (`HostConfig.NetworkMode`,
/// with its `EndpointsConfig` entry; `None` for `host`/`none`), then every
/// other `EndpointsConfig` entry, attached on `eth1`, … in name order.
async fn network_requests(
    d: &Shared,
    req: &CreateRequest,
) -> Result<(Option<NetworkRequest>, Vec<NetworkRequest>), ApiError> {
    let mode = req.host_config.network_mode.as_str();
    let endpoints = req
        .networking_config
        .endpoints_config
        .clone()
        .unwrap_or_default();
    // `container:` (checked by `joined`): the target's network, none of its own.
    if req.network_disabled || joined::target(mode).is_some() {
        return Ok((None, vec![]));
    }
    if matches!(mode, "host" | "none") {
        if endpoints.keys().any(|k| k != mode) {
            let why = if mode == "host" {
                "container cannot be disconnected from host network or connected to host network"
            } else {
                "container cannot be connected to multiple networks with one of the networks in private (none) mode"
            };
            return Err(ApiError::bad_request(why));
        }
        return Ok((None, vec![]));
    }
    let mut asked = Vec::new();
    for (key, ep) in &endpoints {
        asked.push(super::networks::endpoint_request(d, key, ep.as_ref()).await?);
    }
    // Without a NetworkMode the first network asked for is the first one
    // (what a client sending only EndpointsConfig means), else `bridge`.
    let first_name = match mode {
        "" | "default" => asked
            .first()
            .filter(|_| !asked.iter().any(|r| r.network == "bridge"))
            .map_or("bridge", |r| r.network.as_str())
            .to_string(),
        m => m.to_string(),
    };
    let first = super::networks::endpoint_request(d, &first_name, None).await?;
    let first = match asked.iter().position(|r| r.network == first.network) {
        Some(i) => asked.remove(i),
        None => first,
    };
    let mut extra: Vec<NetworkRequest> = Vec::new();
    for r in asked {
        if !extra.iter().any(|e| e.network == r.network) {
            extra.push(r);
        }
    }
    Ok((Some(first), extra))
}

fn pod_config(
    req: &CreateRequest,
    name: &str,
    id: &str,
    log_dir: &Path,
    primary: Option<&NetworkRequest>,
) -> Result<(cri::PodSandboxConfig, Vec<String>), ApiError> {
    let hc = &req.host_config;
    let warnings = vec![];
    let network = match hc.network_mode.as_str() {
        "host" => cri::NamespaceMode::Node,
        _ => cri::NamespaceMode::Pod,
    };
    let joins_net = joined::target(&hc.network_mode).is_some();
    let no_cni = hc.network_mode == "none" || req.network_disabled || joins_net;
    let pid = match hc.pid_mode.as_str() {
        // `container:` is the engine's to join (see `joined`).
        "" => cri::NamespaceMode::Container,
        m if joined::target(m).is_some() => cri::NamespaceMode::Container,
        "host" => cri::NamespaceMode::Node,
        other => {
            return Err(ApiError::bad_request(format!(
                "pid mode {other:?} is not supported"
            )))
        }
    };
    let ipc = match hc.ipc_mode.as_str() {
        "" | "private" | "shareable" => cri::NamespaceMode::Pod,
        m if joined::target(m).is_some() => cri::NamespaceMode::Pod,
        "host" => cri::NamespaceMode::Node,
        other => {
            return Err(ApiError::bad_request(format!(
                "ipc mode {other:?} is not supported"
            )))
        }
    };
    let hostname = if network == cri::NamespaceMode::Node || joins_net {
        String::new()
    } else if req.hostname.is_empty() {
        id[..12].to_string()
    } else {
        req.hostname.clone()
    };
    let dns =
        (hc.dns.is_some() || hc.dns_search.is_some() || hc.dns_options.is_some()).then(|| {
            cri::DnsConfig {
                servers: hc.dns.clone().unwrap_or_default(),
                searches: hc.dns_search.clone().unwrap_or_default(),
                options: hc.dns_options.clone().unwrap_or_default(),
            }
        });
    let ports = if network == cri::NamespaceMode::Node || no_cni {
        vec![]
    } else {
        port_mappings(req)?
    };
    let mut annotations = HashMap::new();
    if no_cni {
        annotations.insert(NETWORK_ANNOTATION.to_string(), "none".to_string());
    } else if let Some(net) = primary {
        if net.network != "bridge" {
            annotations.insert(NETWORK_ANNOTATION.to_string(), net.network.clone());
            annotations.insert(NETWORK_ID_ANNOTATION.to_string(), net.network_id.clone());
        }
        if !net.aliases.is_empty() {
            annotations.insert(
                NETWORK_ALIASES_ANNOTATION.to_string(),
                serde_json::to_string(&net.aliases)
                    .map_err(|e| ApiError::internal(format!("failed to encode aliases: {e}")))?,
            );
        }
        if let Some(ip) = net.ip {
            annotations.insert(NETWORK_IP_ANNOTATION.to_string(), ip.to_string());
        }
    }
    Ok((
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.to_string(),
                uid: id.to_string(),
                namespace: "docker".into(),
                attempt: 0,
            }),
            hostname,
            log_directory: log_dir.to_string_lossy().into_owned(),
            dns_config: dns,
            port_mappings: ports,
            labels: HashMap::from([(OWNER_LABEL.to_string(), "docker".to_string())]),
            annotations,
            linux: Some(cri::LinuxPodSandboxConfig {
                sysctls: hc.sysctls.clone().unwrap_or_default(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: network as i32,
                        pid: pid as i32,
                        ipc: ipc as i32,
                        ..Default::default()
                    }),
                    privileged: hc.privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        warnings,
    ))
}

fn container_config(
    d: &Shared,
    req: &CreateRequest,
    name: &str,
    body: &Value,
    image: &oci_spec::image::ImageConfiguration,
) -> Result<cri::ContainerConfig, ApiError> {
    let hc = &req.host_config;
    // Docker: an explicit entrypoint drops the image's Cmd; `--entrypoint ""`
    // clears the image's entrypoint and runs Cmd.
    let (command, args) = match req.entrypoint.as_ref().map(|e| e.to_vec()) {
        Some(ep) if ep.iter().all(|s| s.is_empty()) => {
            let cmd = req.cmd.as_ref().map(|c| c.to_vec()).unwrap_or_else(|| {
                image
                    .config()
                    .as_ref()
                    .and_then(|c| c.cmd().clone())
                    .unwrap_or_default()
            });
            (cmd, vec![])
        }
        Some(ep) => (ep, req.cmd.as_ref().map(|c| c.to_vec()).unwrap_or_default()),
        None => (
            vec![],
            req.cmd.as_ref().map(|c| c.to_vec()).unwrap_or_default(),
        ),
    };
    let envs = req
        .env
        .iter()
        .flatten()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| cri::KeyValue {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect();
    let mut sc = cri::LinuxContainerSecurityContext {
        privileged: hc.privileged,
        readonly_rootfs: hc.readonly_rootfs,
        capabilities: Some(cri::Capability {
            add_capabilities: hc.cap_add.clone().unwrap_or_default(),
            drop_capabilities: hc.cap_drop.clone().unwrap_or_default(),
            ..Default::default()
        }),
        seccomp: Some(cri::SecurityProfile {
            profile_type: if hc.privileged {
                cri::security_profile::ProfileType::Unconfined
            } else {
                cri::security_profile::ProfileType::RuntimeDefault
            } as i32,
            ..Default::default()
        }),
        supplemental_groups: hc
            .group_add
            .iter()
            .flatten()
            .map(|g| {
                g.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("group names in GroupAdd are not supported: {g}"))
                })
            })
            .collect::<Result<_, _>>()?,
        ..Default::default()
    };
    for o in hc.security_opt.iter().flatten() {
        match o.as_str() {
            "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true" => {
                sc.no_new_privs = true
            }
            "seccomp=unconfined" | "seccomp:unconfined" => {
                sc.seccomp = Some(cri::SecurityProfile {
                    profile_type: cri::security_profile::ProfileType::Unconfined as i32,
                    ..Default::default()
                })
            }
            "apparmor=unconfined" | "apparmor:unconfined" | "label=disable" | "label:disable" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "security option {other:?} is not supported"
                )))
            }
        }
    }
    crate::runtime::user::apply_image_user(&req.user, "User", &mut sc)
        .map_err(ApiError::bad_request)?;
    let (mut cpu_period, mut cpu_quota) = (hc.cpu_period, hc.cpu_quota);
    if hc.nano_cpus > 0 {
        if hc.cpu_quota > 0 || hc.cpu_period > 0 {
            return Err(ApiError::bad_request(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set",
            ));
        }
        cpu_period = 100_000;
        cpu_quota = hc.nano_cpus * cpu_period / 1_000_000_000;
    }
    let resources = cri::LinuxContainerResources {
        cpu_period,
        cpu_quota,
        cpu_shares: hc.cpu_shares,
        memory_limit_in_bytes: hc.memory,
        memory_swap_limit_in_bytes: hc.memory_swap,
        cpuset_cpus: hc.cpuset_cpus.clone(),
        cpuset_mems: hc.cpuset_mems.clone(),
        oom_score_adj: hc.oom_score_adj,
        ..Default::default()
    };
    let mut annotations = HashMap::from([
        (NAME_ANNOTATION.to_string(), name.to_string()),
        (CONFIG_ANNOTATION.to_string(), body.to_string()),
    ]);
    if req.host_config.init == Some(true) {
        let init = d.engine.docker_init()?;
        annotations.insert(
            crate::runtime::init::INIT_ANNOTATION.into(),
            init.display().to_string(),
        );
    }
    let tmpfs = mounts::tmpfs(req)?;
    if !tmpfs.is_empty() {
        annotations.insert(
            crate::runtime::tmpfs::TMPFS_ANNOTATION.into(),
            serde_json::to_string(&tmpfs)
                .map_err(|e| ApiError::internal(format!("failed to encode tmpfs mounts: {e}")))?,
        );
    }
    let image_volumes: Vec<String> = image
        .config()
        .as_ref()
        .and_then(|c| c.volumes().clone())
        .unwrap_or_default();
    let mounts = mounts(d, req, &image_volumes)?;
    if !mounts.nocopy.is_empty() {
        annotations.insert(
            crate::engine::volumes::NOCOPY_ANNOTATION.into(),
            serde_json::to_string(&mounts.nocopy)
                .map_err(|e| ApiError::internal(format!("failed to encode nocopy mounts: {e}")))?,
        );
    }
    Ok(cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: req.image.clone(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: req.working_dir.clone(),
        envs,
        mounts: mounts.mounts,
        labels: req.labels.clone().unwrap_or_default(),
        annotations,
        log_path: "container.log".into(),
        stdin: req.open_stdin,
        stdin_once: req.stdin_once,
        tty: req.tty,
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(sc),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::user::apply_image_user;

    #[test]
    fn names_follow_docker_rules() {
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name("-web"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
        let n = generate_name(&|_| false);
        assert!(valid_name(&n) && n.contains('_'), "{n}");
        let taken = n.clone();
        assert_ne!(generate_name(&|c| c == taken), "");
    }

    #[test]
    fn ports_and_users() {
        assert_eq!(parse_port("80/tcp").unwrap(), (80, cri::Protocol::Tcp));
        assert_eq!(parse_port("53/udp").unwrap(), (53, cri::Protocol::Udp));
        assert!(parse_port("x/tcp").is_err());
        let req: CreateRequest = serde_json::from_value(json!({
            "Image": "busybox",
            "ExposedPorts": {"80/tcp": {}},
            "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}}
        }))
        .unwrap();
        let m = port_mappings(&req).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].container_port, m[0].host_port, m[0].host_ip.as_str()),
            (80, 8080, "127.0.0.1")
        );
        let mut sc = cri::LinuxContainerSecurityContext::default();
        apply_image_user("1000:50", "User", &mut sc).unwrap();
        assert_eq!(sc.run_as_user.unwrap().value, 1000);
        assert_eq!(sc.run_as_group.unwrap().value, 50);
        let mut sc = cri::LinuxContainerSecurityContext::default();
        apply_image_user("nobody", "User", &mut sc).unwrap();
        assert_eq!(sc.run_as_username, "nobody");
        assert!(apply_image_user("1:wheel", "User", &mut sc).is_err());
    }

    #[test]
    fn cmd_may_be_a_string() {
        let req: CreateRequest =
            serde_json::from_value(json!({"Image": "x", "Cmd": "echo hi", "Entrypoint": null}))
                .unwrap();
        assert_eq!(req.cmd.unwrap().to_vec(), vec!["echo hi"]);
        assert!(req.entrypoint.is_none());
    }
}
