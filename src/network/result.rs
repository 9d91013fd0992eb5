//! CNI results: the 1.0 shape (`ips` without `version`), the 0.3/0.4 shape
//! (`ips` with `version`) and the old 0.2 `ip4`/`ip6` shape, all read into one
//! type; the raw JSON is kept so it can be handed back as `prevResult`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;
use serde_json::Value;

/// An address with its prefix length, as `10.88.0.5/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not an address/prefix"))?;
        let addr: IpAddr = addr.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let prefix_len: u8 = len.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(format!("{s:?}: prefix longer than {max}"));
        }
        Ok(Self { addr, prefix_len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// An interface the chain created or configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    /// The netns path for interfaces inside the container; empty on the host.
    pub sandbox: String,
    pub mtu: Option<u32>,
}

/// An address assigned by the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: Cidr,
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`].
    pub interface: Option<usize>,
}

/// A route the chain installed in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: Cidr,
    pub gw: Option<IpAddr>,
}

/// DNS settings a plugin suggests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: String,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// The final result of an ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
    /// The result exactly as the last plugin printed it.
    pub raw: Value,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawResult {
    cni_version: String,
    interfaces: Vec<Interface>,
    ips: Option<Vec<RawIp>>,
    routes: Vec<RawRoute>,
    dns: Dns,
    ip4: Option<RawOldIp>,
    ip6: Option<RawOldIp>,
}

#[derive(Deserialize)]
struct RawIp {
    address: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    interface: Option<usize>,
}

#[derive(Deserialize)]
struct RawRoute {
    dst: String,
    #[serde(default)]
    gw: Option<String>,
}

/// The 0.1/0.2 per-family block.
#[derive(Deserialize)]
struct RawOldIp {
    ip: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

fn opt_ip(s: Option<String>) -> Result<Option<IpAddr>, String> {
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|e| format!("{s:?}: {e}")),
    }
}

fn route(r: RawRoute) -> Result<Route, String> {
    Ok(Route {
        dst: r.dst.parse()?,
        gw: opt_ip(r.gw)?,
    })
}

impl CniResult {
    /// Reads a plugin's result object.
    pub fn parse(raw: Value) -> Result<Self, String> {
        if !raw.is_object() {
            return Err("the result is not a JSON object".into());
        }
        let r: RawResult = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
        let mut ips = Vec::new();
        let mut routes = Vec::new();
        match r.ips {
            Some(list) => {
                for ip in list {
                    ips.push(IpConfig {
                        address: ip.address.parse()?,
                        gateway: opt_ip(ip.gateway)?,
                        interface: ip.interface,
                    });
                }
            }
            None => {
                for old in [r.ip4, r.ip6].into_iter().flatten() {
                    ips.push(IpConfig {
                        address: old.ip.parse()?,
                        gateway: opt_ip(old.gateway)?,
                        interface: None,
                    });
                    for rt in old.routes {
                        routes.push(route(rt)?);
                    }
                }
            }
        }
        for rt in r.routes {
            routes.push(route(rt)?);
        }
        Ok(Self {
            cni_version: r.cni_version,
            interfaces: r.interfaces,
            ips,
            routes,
            dns: r.dns,
            raw,
        })
    }
}

/// The gateways of the pod's addresses (IPv4 first, no duplicates): the
/// host's address on the pod's network for a bridge.
pub fn pod_gateways(result: &CniResult) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for want_v4 in [true, false] {
        for g in result.ips.iter().filter_map(|ip| ip.gateway) {
            if g.is_ipv4() == want_v4 && !out.contains(&g) {
                out.push(g);
            }
        }
    }
    out
}

/// What an ADD gave interface `ifname` inside the sandbox: its addresses
/// (IPv4 first), the first address's gateway and the interface's MAC. An
/// address tied to no interface counts as this one's (a chain with one).
pub fn interface_config(result: &CniResult, ifname: &str) -> (Vec<Cidr>, Option<IpAddr>, String) {
    let ours = |i: Option<usize>| match i {
        None => true,
        Some(i) => result
            .interfaces
            .get(i)
            .is_some_and(|f| f.name == ifname && !f.sandbox.is_empty()),
    };
    let mut addrs: Vec<&IpConfig> = result.ips.iter().filter(|ip| ours(ip.interface)).collect();
    addrs.sort_by_key(|ip| !ip.address.addr.is_ipv4());
    let gateway = addrs.first().and_then(|ip| ip.gateway);
    let mac = result
        .interfaces
        .iter()
        .find(|f| f.name == ifname && !f.sandbox.is_empty())
        .map(|f| f.mac.clone())
        .unwrap_or_default();
    (addrs.iter().map(|ip| ip.address).collect(), gateway, mac)
}

/// The pod's addresses for PodSandboxStatus (`ip`, then `additional_ips`):
/// those on interfaces inside the sandbox (or not tied to an interface),
/// IPv4 first, then IPv6, without duplicates.
pub fn pod_ips(result: &CniResult) -> Vec<IpAddr> {
    let in_sandbox = |ip: &&IpConfig| match ip.interface {
        None => true,
        Some(i) => result
            .interfaces
            .get(i)
            .is_none_or(|iface| !iface.sandbox.is_empty()),
    };
    let mut chosen: Vec<&IpConfig> = result.ips.iter().filter(in_sandbox).collect();
    if chosen.is_empty() {
        chosen = result.ips.iter().collect();
    }
    let mut out: Vec<IpAddr> = Vec::new();
    for want_v4 in [true, false] {
        for ip in &chosen {
            let a = ip.address.addr;
            if a.is_ipv4() == want_v4 && !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}
