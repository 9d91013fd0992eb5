//! `/networks`: Docker's networks over CNI. The predefined `bridge` is the
//! node's default CNI network, `host` and `none` are the pod namespace modes,
//! and user networks (driver `bridge`) are CNI configs berth writes (see
//! `store`). A container's first network is chosen at create: its pod
//! carries the network's name in [`NETWORK_ANNOTATION`] and the engine
//! attaches the pod with that network's config on `eth0`; `connect` (and
//! more `EndpointsConfig` entries at create) attach it to more networks on
//! `eth1`, … — the pod record's list of attachments is what is shown.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::error::{DockerJson, Query};
use super::filters::{check_filter_keys, label_matches, parse_filters};
use super::time::rfc3339;
use super::{ApiError, Shared};
use crate::engine::events::Event;
use crate::engine::networks::NetworkRequest;
use crate::engine::records::{now_nanos, NetworkAttachment, PodRecord};
use crate::engine::user_networks::{NewNetwork, UserNetwork as Meta};
use crate::network::user::Subnet;
use std::net::Ipv4Addr;

pub use crate::engine::docker::NETWORK_ID_ANNOTATION;

/// The networks every daemon has; they cannot be created or removed.
const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/prune", post(prune))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(disconnect))
}

/// The id of a predefined network: stable across restarts and daemons.
pub fn builtin_id(name: &str) -> String {
    hex::encode(Sha256::digest(format!("berth-network:{name}")))
}

/// The Docker network a pod is on: `host`, `none`, `bridge` or a user
/// network's name.
pub use crate::engine::user_networks::pod_network;

fn forbidden(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, m)
}

/// A network as Docker describes it.
#[derive(Debug, Clone)]
struct Net {
    id: String,
    name: String,
    driver: &'static str,
    created: i64,
    /// (subnet, gateway) pairs.
    ipam: Vec<(String, String)>,
    internal: bool,
    attachable: bool,
    labels: BTreeMap<String, String>,
    options: BTreeMap<String, String>,
}

impl Net {
    fn builtin(&self) -> bool {
        PREDEFINED.contains(&self.name.as_str())
    }

    fn user(m: &Meta) -> Net {
        Net {
            id: m.id.clone(),
            name: m.name.clone(),
            driver: "bridge",
            created: m.created,
            ipam: vec![(m.subnet.to_string(), m.gateway.to_string())],
            internal: m.internal,
            attachable: m.attachable,
            labels: m.labels.clone(),
            options: m.options.clone(),
        }
    }

    fn to_json(&self, containers: Value) -> Value {
        let config: Vec<Value> = self
            .ipam
            .iter()
            .map(|(s, g)| {
                let mut c = json!({"Subnet": s});
                if !g.is_empty() {
                    c["Gateway"] = json!(g);
                }
                c
            })
            .collect();
        json!({
            "Name": self.name,
            "Id": self.id,
            "Created": rfc3339(self.created),
            "Scope": "local",
            "Driver": self.driver,
            "EnableIPv4": self.driver != "null",
            "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": null, "Config": config},
            "Internal": self.internal,
            "Attachable": self.attachable,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": containers,
            "Options": self.options,
            "Labels": self.labels,
        })
    }
}

/// The predefined networks; `bridge` describes the default CNI network.
fn builtins(d: &Shared) -> Vec<Net> {
    let mut bridge = Net {
        id: builtin_id("bridge"),
        name: "bridge".into(),
        driver: "bridge",
        created: 0,
        ipam: vec![],
        internal: false,
        attachable: false,
        labels: BTreeMap::new(),
        options: BTreeMap::new(),
    };
    if let Ok(net) = d.engine.network.ready() {
        bridge.created = net
            .modified()
            .map_or(0, |t| super::time::unix_secs(t) * 1_000_000_000);
        for p in &net.plugins {
            if let Some(b) = p.get("bridge").and_then(Value::as_str) {
                bridge
                    .options
                    .insert("com.docker.network.bridge.name".into(), b.into());
            }
            if let Some(ipam) = p.get("ipam") {
                bridge.ipam.extend(ipam_ranges(ipam));
            }
        }
    }
    let other = |name: &str, driver| Net {
        id: builtin_id(name),
        name: name.into(),
        driver,
        created: 0,
        ipam: vec![],
        internal: false,
        attachable: false,
        labels: BTreeMap::new(),
        options: BTreeMap::new(),
    };
    vec![bridge, other("host", "host"), other("none", "null")]
}

/// (subnet, gateway) of a CNI `ipam` section: host-local's `ranges` or the
/// older top-level `subnet`/`gateway`.
fn ipam_ranges(ipam: &Value) -> Vec<(String, String)> {
    let pair = |v: &Value| {
        v.get("subnet").and_then(Value::as_str).map(|s| {
            let g = v.get("gateway").and_then(Value::as_str).unwrap_or("");
            (s.to_string(), g.to_string())
        })
    };
    let mut out: Vec<(String, String)> = ipam
        .get("ranges")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(pair)
        .collect();
    out.extend(pair(ipam));
    out
}

/// Every network: the predefined ones, then user networks by name.
async fn all_networks(d: &Shared) -> Result<Vec<Net>, ApiError> {
    let mut out = builtins(d);
    let metas = d.engine.user_networks().await?;
    out.extend(metas.iter().map(Net::user));
    Ok(out)
}

/// Finds a network as Docker does: full id, then name, then unique id prefix.
fn find<'a>(all: &'a [Net], want: &str) -> Result<&'a Net, ApiError> {
    let not_found = || ApiError::not_found(format!("network {want} not found"));
    if want.is_empty() {
        return Err(not_found());
    }
    if let Some(n) = all.iter().find(|n| n.id == want) {
        return Ok(n);
    }
    if let Some(n) = all.iter().find(|n| n.name == want) {
        return Ok(n);
    }
    let hits: Vec<&Net> = all.iter().filter(|n| n.id.starts_with(want)).collect();
    match hits.as_slice() {
        [n] => Ok(n),
        [] => Err(not_found()),
        many => Err(ApiError::bad_request(format!(
            "network {want} is ambiguous ({} matches found based on ID prefix)",
            many.len()
        ))),
    }
}

/// The containers on each network (by network name): id → endpoint.
fn endpoints(d: &Shared) -> Result<HashMap<String, BTreeMap<String, Value>>, ApiError> {
    let pods: HashMap<String, PodRecord> = d
        .engine
        .pods()?
        .into_iter()
        .map(|p| (p.id.clone(), p))
        .collect();
    let mut out: HashMap<String, BTreeMap<String, Value>> = HashMap::new();
    for c in d.engine.containers()? {
        let Some(pod) = pods.get(&c.pod_id) else {
            continue;
        };
        for a in pod.attachments() {
            let v4 = a.ips.iter().find(|ip| ip.parse::<Ipv4Addr>().is_ok());
            let v6 = a
                .ips
                .iter()
                .find(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
            out.entry(a.network.clone()).or_default().insert(
                c.id.clone(),
                json!({
                    "Name": d.engine.container_name(&c),
                    "EndpointID": endpoint_id(&pod.id, &a.network),
                    "MacAddress": a.mac,
                    "IPv4Address": v4.map(|ip| format!("{ip}/{}", a.prefix_len)).unwrap_or_default(),
                    "IPv6Address": v6.map(|ip| format!("{ip}/64")).unwrap_or_default(),
                }),
            );
        }
    }
    Ok(out)
}

/// The Docker endpoint id of a pod's attachment to a network: stable, 64 hex.
pub fn endpoint_id(pod_id: &str, network: &str) -> String {
    hex::encode(Sha256::digest(format!("berth-endpoint:{pod_id}:{network}")))
}

/// The id of the network an attachment is on.
pub fn attachment_network_id(a: &NetworkAttachment) -> String {
    if a.network_id.is_empty() {
        builtin_id(&a.network)
    } else {
        a.network_id.clone()
    }
}

/// The names of networks some pod is on.
fn networks_in_use(d: &Shared) -> Result<HashMap<String, usize>, ApiError> {
    Ok(d.engine.networks_in_use()?)
}

#[derive(Deserialize)]
struct ListParams {
    filters: Option<String>,
}

fn labels_match(labels: &BTreeMap<String, String>, want: &str) -> bool {
    label_matches(|k| labels.get(k).map(String::as_str), want)
}

async fn list(
    State(d): State<Shared>,
    Query(p): Query<ListParams>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let f = parse_filters(p.filters.as_deref())?;
    for key in f.keys() {
        if !["driver", "id", "label", "name", "scope", "type", "dangling"].contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!("invalid filter '{key}'")));
        }
    }
    for t in f.get("type").into_iter().flatten() {
        if t != "custom" && t != "builtin" {
            return Err(ApiError::bad_request(format!(
                "invalid filter: 'type'='{t}'"
            )));
        }
    }
    let nets = all_networks(&d).await?;
    let used = networks_in_use(&d)?;
    let any = |key: &str, test: &dyn Fn(&str) -> bool| {
        f.get(key)
            .is_none_or(|v| v.is_empty() || v.iter().any(|x| test(x)))
    };
    let out = nets
        .iter()
        .filter(|n| {
            any("name", &|v| n.name.contains(v))
                && any("id", &|v| n.id.starts_with(v))
                && any("driver", &|v| n.driver == v)
                && any("scope", &|v| v == "local")
                && any("type", &|v| (v == "builtin") == n.builtin())
                && f.get("label")
                    .is_none_or(|v| v.iter().all(|l| labels_match(&n.labels, l)))
                && any("dangling", &|v| {
                    let dangling = !n.builtin() && !used.contains_key(&n.name);
                    matches!(v, "true" | "1") == dangling
                })
        })
        .map(|n| n.to_json(json!({})))
        .collect();
    Ok(Json(out))
}

async fn inspect(State(d): State<Shared>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let nets = all_networks(&d).await?;
    let net = find(&nets, &id)?;
    let mut eps = endpoints(&d)?;
    let containers = eps.remove(&net.name).unwrap_or_default();
    Ok(Json(net.to_json(json!(containers))))
}

/// A field that clients may send as `null` (docker-py does for every
/// argument left unset): read as its default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The parts of Docker's `NetworkCreateRequest` berth acts on.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateRequest {
    #[serde(deserialize_with = "nullable")]
    name: String,
    #[serde(deserialize_with = "nullable")]
    driver: String,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    #[serde(deserialize_with = "nullable")]
    internal: bool,
    #[serde(deserialize_with = "nullable")]
    attachable: bool,
    #[serde(deserialize_with = "nullable")]
    ingress: bool,
    #[serde(deserialize_with = "nullable")]
    config_only: bool,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    #[serde(deserialize_with = "nullable")]
    driver: String,
    config: Option<Vec<IpamConfig>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    #[serde(deserialize_with = "nullable")]
    subnet: String,
    #[serde(rename = "IPRange", deserialize_with = "nullable")]
    ip_range: String,
    #[serde(deserialize_with = "nullable")]
    gateway: String,
    auxiliary_addresses: Option<BTreeMap<String, String>>,
}

/// The subnet and gateway a create asks for (`None`: pick a subnet).
fn requested_ipam(
    req: &CreateRequest,
) -> Result<Option<(Subnet, Option<std::net::Ipv4Addr>)>, ApiError> {
    let Some(ipam) = &req.ipam else {
        return Ok(None);
    };
    if !matches!(ipam.driver.as_str(), "" | "default") {
        return Err(ApiError::bad_request(format!(
            "IPAM driver {:?} is not supported (berth has only the default one)",
            ipam.driver
        )));
    }
    let configs = ipam.config.as_deref().unwrap_or_default();
    let [c] = configs else {
        if configs.is_empty() {
            return Ok(None);
        }
        return Err(ApiError::bad_request(
            "a network can have one IPv4 subnet in berth",
        ));
    };
    if !c.ip_range.is_empty()
        || c.auxiliary_addresses
            .as_ref()
            .is_some_and(|a| !a.is_empty())
    {
        return Err(ApiError::bad_request(
            "ip-range and aux-address are not supported",
        ));
    }
    if c.subnet.is_empty() {
        if !c.gateway.is_empty() {
            return Err(ApiError::bad_request("a gateway needs a subnet (--subnet)"));
        }
        return Ok(None);
    }
    let subnet = Subnet::parse(&c.subnet).map_err(ApiError::bad_request)?;
    let gateway = match c.gateway.as_str() {
        "" => None,
        g => {
            let ip: std::net::Ipv4Addr = g
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gateway address {g}")))?;
            if !subnet.is_host(ip) {
                return Err(ApiError::bad_request(format!(
                    "gateway {g} is not a host address of subnet {subnet}"
                )));
            }
            Some(ip)
        }
    };
    Ok(Some((subnet, gateway)))
}

async fn create(
    State(d): State<Shared>,
    DockerJson(req): DockerJson<CreateRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = req.name.clone();
    if name.is_empty() {
        return Err(ApiError::bad_request("network name must be given"));
    }
    if name == "default" || name.starts_with("container:") {
        return Err(forbidden(format!(
            "{name} is a pre-defined network and cannot be created"
        )));
    }
    if !super::create::valid_name(&name) || name.len() > 128 {
        return Err(ApiError::bad_request(format!(
            "invalid network name {name:?}: it must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 128 characters)"
        )));
    }
    if !matches!(req.driver.as_str(), "" | "bridge") {
        return Err(ApiError::bad_request(format!(
            "plugin {:?} not found (berth networks have the bridge driver only)",
            req.driver
        )));
    }
    if req.enable_ipv6 == Some(true) {
        return Err(ApiError::bad_request("IPv6 networks are not supported"));
    }
    if req.ingress || req.config_only {
        return Err(ApiError::bad_request(
            "ingress and config-only networks are not supported",
        ));
    }
    let wanted = requested_ipam(&req)?;
    let reserved = builtins(&d)
        .iter()
        .flat_map(|n| &n.ipam)
        .filter_map(|(s, _)| cidr(s))
        .collect();
    let meta = d
        .engine
        .create_user_network(NewNetwork {
            name,
            subnet: wanted,
            reserved,
            internal: req.internal,
            attachable: req.attachable,
            labels: req.labels.clone().unwrap_or_default(),
            options: req.options.clone().unwrap_or_default(),
        })
        .await?;
    let id = meta.id;
    Ok((StatusCode::CREATED, Json(json!({"Id": id, "Warning": ""}))))
}

/// A CNI subnet string as IPv4 prefix (IPv6 and host bits are ignored).
fn cidr(s: &str) -> Option<Subnet> {
    let (ip, len) = s.split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some(Subnet {
        addr: std::net::Ipv4Addr::from(u32::from(ip) & mask),
        len,
    })
}

async fn remove(State(d): State<Shared>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let nets = all_networks(&d).await?;
    let net = find(&nets, &id)?;
    if net.builtin() {
        return Err(forbidden(format!(
            "{} is a pre-defined network and cannot be removed",
            net.name
        )));
    }
    let meta = d
        .engine
        .user_networks()
        .await?
        .into_iter()
        .find(|m| m.id == net.id)
        .ok_or_else(|| ApiError::not_found(format!("network {id} not found")))?;
    d.engine.remove_user_network(&meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct PruneParams {
    filters: Option<String>,
}

async fn prune(
    State(d): State<Shared>,
    Query(p): Query<PruneParams>,
) -> Result<Json<Value>, ApiError> {
    let f = parse_filters(p.filters.as_deref())?;
    check_filter_keys(&f, &["label", "label!", "until"])?;
    let now = now_nanos();
    let until = match f.get("until").and_then(|v| v.first()) {
        Some(u) => Some(
            super::time::parse_point(u, now)
                .map_err(|e| ApiError::bad_request(format!("invalid filter 'until={u}': {e}")))?,
        ),
        None => None,
    };
    let deleted = d
        .engine
        .prune_user_networks(|m| {
            let net = Net::user(m);
            !(until.is_some_and(|u| net.created >= u)
                || !f
                    .get("label")
                    .is_none_or(|v| v.iter().all(|l| labels_match(&net.labels, l)))
                || f.get("label!")
                    .is_some_and(|v| v.iter().any(|l| labels_match(&net.labels, l))))
        })
        .await?;
    Ok(Json(json!({ "NetworksDeleted": deleted })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectRequest {
    container: String,
    endpoint_config: Option<EndpointSettings>,
}

/// The parts of Docker's `EndpointSettings` berth acts on (connect, and
/// `NetworkingConfig.EndpointsConfig` at create).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointSettings {
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpam>,
    pub aliases: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct EndpointIpam {
    #[serde(rename = "IPv4Address", deserialize_with = "nullable")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address", deserialize_with = "nullable")]
    pub ipv6_address: String,
}

/// Docker's refusal to mix the host's network with others.
const HOST_CONFLICT: &str =
    "container cannot be disconnected from host network or connected to host network";
/// Docker's refusal to add networks to a container of network mode `none`.
const NONE_CONFLICT: &str =
    "container cannot be connected to multiple networks with one of the networks in private (none) mode";

/// What attaching to network `name_or_id` with `ep` asks of the engine,
/// checked as Docker checks it: aliases and `--ip` only on user networks,
/// the address inside the network's subnet.
pub async fn endpoint_request(
    d: &Shared,
    name_or_id: &str,
    ep: Option<&EndpointSettings>,
) -> Result<NetworkRequest, ApiError> {
    let nets = all_networks(d).await?;
    let want = if name_or_id == "default" {
        "bridge"
    } else {
        name_or_id
    };
    let net = find(&nets, want)?;
    match net.name.as_str() {
        "host" => return Err(ApiError::bad_request(HOST_CONFLICT)),
        "none" => return Err(ApiError::bad_request(NONE_CONFLICT)),
        _ => {}
    }
    let aliases: Vec<String> = ep
        .and_then(|e| e.aliases.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !a.is_empty())
        .collect();
    for a in &aliases {
        if a.len() > 255 || a.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ApiError::bad_request(format!(
                "invalid network alias {a:?}"
            )));
        }
    }
    let ip = ep
        .and_then(|e| e.ipam_config.as_ref())
        .map(|i| i.ipv4_address.as_str())
        .filter(|s| !s.is_empty());
    if ep
        .and_then(|e| e.ipam_config.as_ref())
        .is_some_and(|i| !i.ipv6_address.is_empty())
    {
        return Err(ApiError::bad_request("IPv6 addresses are not supported"));
    }
    if net.builtin() {
        if !aliases.is_empty() {
            return Err(ApiError::bad_request(
                "network-scoped alias is supported only for containers in user defined networks",
            ));
        }
        if ip.is_some() {
            return Err(ApiError::bad_request(
                "user specified IP address is supported on user defined networks only",
            ));
        }
    }
    let ip = match ip {
        None => None,
        Some(s) => {
            let ip: Ipv4Addr = s
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid IPv4 address: {s}")))?;
            let inside = net
                .ipam
                .iter()
                .filter_map(|(s, _)| cidr(s))
                .any(|sub| sub.is_host(ip));
            if !inside {
                return Err(ApiError::bad_request(format!(
                    "no configured subnet or ip-range contain the IP address {ip}"
                )));
            }
            Some(ip)
        }
    };
    Ok(NetworkRequest {
        network: net.name.clone(),
        network_id: if net.builtin() {
            String::new()
        } else {
            net.id.clone()
        },
        aliases,
        ip,
    })
}

/// `POST /networks/{id}/connect`: one more attachment of the container's
/// pod (created, running or exited: a Docker container's pod keeps its
/// netns until the container is removed), on its next free interface.
async fn connect(
    State(d): State<Shared>,
    Path(id): Path<String>,
    DockerJson(req): DockerJson<ConnectRequest>,
) -> Result<StatusCode, ApiError> {
    let nreq = endpoint_request(&d, &id, req.endpoint_config.as_ref()).await?;
    let c = d.container(&req.container)?;
    let pod = d.engine.pod(&c.pod_id)?;
    match pod_network(&pod).as_str() {
        "host" => return Err(ApiError::bad_request(HOST_CONFLICT)),
        "none" => return Err(ApiError::bad_request(NONE_CONFLICT)),
        m if m.starts_with("container:") => {
            return Err(ApiError::bad_request(
                "container sharing network namespace with another container or host cannot be connected to any other network",
            ))
        }
        _ => {}
    }
    let name = d.engine.container_name(&c);
    if pod.attachments().iter().any(|a| a.network == nreq.network) {
        return Err(forbidden(format!(
            "endpoint with name {name} already exists in network {}",
            nreq.network
        )));
    }
    let network = nreq.network.clone();
    d.engine.connect_network(&c.pod_id, nreq).await?;
    d.engine.events.emit(
        Event::new("network", "connect", &id_of(&d, &network).await)
            .with("container", &c.id)
            .with("name", &network)
            .with("type", "bridge"),
    );
    Ok(StatusCode::OK)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DisconnectRequest {
    container: String,
}

/// `POST /networks/{id}/disconnect`: CNI DEL of that one attachment.
async fn disconnect(
    State(d): State<Shared>,
    Path(id): Path<String>,
    DockerJson(req): DockerJson<DisconnectRequest>,
) -> Result<StatusCode, ApiError> {
    let nets = all_networks(&d).await?;
    let net = find(&nets, &id)?.clone();
    let c = d.container(&req.container)?;
    let pod = d.engine.pod(&c.pod_id)?;
    let mode = pod_network(&pod);
    if net.name == "host" || mode == "host" {
        return Err(ApiError::bad_request(HOST_CONFLICT));
    }
    if !pod.attachments().iter().any(|a| a.network == net.name) {
        return Err(forbidden(format!(
            "container {} is not connected to network {}",
            c.id, net.name
        )));
    }
    d.engine.disconnect_network(&c.pod_id, &net.name).await?;
    d.engine.events.emit(
        Event::new("network", "disconnect", &net.id)
            .with("container", &c.id)
            .with("name", &net.name)
            .with("type", "bridge"),
    );
    Ok(StatusCode::OK)
}

/// The id of a network by name, for events (empty when it is gone).
async fn id_of(d: &Shared, name: &str) -> String {
    all_networks(d)
        .await
        .ok()
        .and_then(|n| n.iter().find(|n| n.name == name).map(|n| n.id.clone()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_ids_are_stable_hex() {
        let id = builtin_id("bridge");
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, builtin_id("bridge"));
        assert_ne!(id, builtin_id("host"));
    }

    #[test]
    fn ipam_ranges_read_both_host_local_forms() {
        let v = json!({"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}], [{"subnet": "fd00::/64"}]]});
        assert_eq!(
            ipam_ranges(&v),
            [
                ("10.88.0.0/16".to_string(), "10.88.0.1".to_string()),
                ("fd00::/64".to_string(), String::new())
            ]
        );
        let old = json!({"type": "host-local", "subnet": "10.1.0.0/24"});
        assert_eq!(
            ipam_ranges(&old),
            [("10.1.0.0/24".to_string(), String::new())]
        );
    }

    fn net(name: &str, id: &str) -> Net {
        Net {
            id: id.into(),
            name: name.into(),
            driver: "bridge",
            created: 0,
            ipam: vec![],
            internal: false,
            attachable: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
        }
    }

    #[test]
    fn networks_are_found_by_id_name_then_prefix() {
        let all = [net("a", "abc1"), net("abc1x", "def0"), net("c", "abd2")];
        assert_eq!(find(&all, "abc1").unwrap().name, "a");
        assert_eq!(find(&all, "abc1x").unwrap().name, "abc1x");
        assert_eq!(find(&all, "de").unwrap().name, "abc1x");
        assert_eq!(
            find(&all, "ab").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let e = find(&all, "zz").unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (StatusCode::NOT_FOUND, "network zz not found")
        );
    }

    #[test]
    fn create_requests_are_checked() {
        let req: CreateRequest = serde_json::from_value(json!({
            "Name": "n", "Driver": "bridge",
            "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": "10.89.77.0/24", "Gateway": "10.89.77.254"}]},
            "Options": {}, "Labels": {"a": "b"}, "EnableIPv6": null, "ConfigFrom": null
        }))
        .unwrap();
        let (s, g) = requested_ipam(&req).unwrap().unwrap();
        assert_eq!(
            (s.to_string(), g.unwrap().to_string()),
            ("10.89.77.0/24".into(), "10.89.77.254".into())
        );
        let bad: CreateRequest = serde_json::from_value(json!({
            "IPAM": {"Config": [{"Subnet": "10.89.77.0/24", "Gateway": "10.89.78.1"}]}
        }))
        .unwrap();
        assert_eq!(
            requested_ipam(&bad).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        // docker-py (compose 1.29) sends every unset field as null.
        let nulls: CreateRequest = serde_json::from_value(json!({
            "Name": "p_default", "Driver": null, "Internal": null, "Attachable": null,
            "IPAM": {"Driver": null, "Config": [{"Subnet": "10.89.91.0/24", "IPRange": null, "Gateway": null, "AuxiliaryAddresses": null}], "Options": null}
        }))
        .unwrap();
        let (s, g) = requested_ipam(&nulls).unwrap().unwrap();
        assert_eq!((s.to_string(), g), ("10.89.91.0/24".into(), None));
        let none: CreateRequest = serde_json::from_value(json!({"IPAM": {"Config": []}})).unwrap();
        assert!(requested_ipam(&none).unwrap().is_none());
    }
}
