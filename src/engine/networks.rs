//! A pod's network attachments: one CNI ADD per network, each on its own
//! interface of the pod's netns (`eth0` at pod creation, `eth1`, … for
//! networks joined later: Docker's `network connect`), recorded in the pod
//! record's list; a disconnect runs DEL for that one attachment only.
//!
//! ```text
//! connect:    pod Ready ─> free ethN ─> CNI ADD (cache record first) ─> record list += attachment
//! disconnect: attachment ─> CNI DEL of that interface's cache record ─> record list -= attachment
//! stop/remove of the pod: CNI DEL of every cache record of the pod (see pod.rs)
//! ```
//!
//! Whenever the set of running endpoints of a network may have changed (an
//! attachment added or removed, a container started, stopped or renamed),
//! [`Engine::network_changed`] is called (the embedded DNS, `dns.rs`, then
//! rebuilds that network's table from the records).

use std::net::Ipv4Addr;

use k8s_cri::v1::PodSandboxConfig;
use serde_json::Value;
use tracing::info;

use super::records::{NetworkAttachment, PodRecord, PodState};
use super::{Engine, Error, PODS};
use crate::network::{Attachment, CniResult, NetworkConfigList, DEFAULT_IFNAME};

/// The Docker name of the node's default CNI network.
pub const DEFAULT_NETWORK: &str = "bridge";

/// A network to attach a pod to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkRequest {
    /// `bridge` (the node's default network) or a user network's name.
    pub network: String,
    /// The Docker network id (empty for `bridge`).
    pub network_id: String,
    /// Network-scoped names of the container.
    pub aliases: Vec<String>,
    /// The IPv4 address to give it (`--ip`), else host-local picks.
    pub ip: Option<Ipv4Addr>,
}

impl NetworkRequest {
    /// The request a pod's annotations make for its first network (Docker's
    /// create: network name and id, aliases, `--ip`).
    pub fn from_pod_config(config: &PodSandboxConfig) -> Result<Self, Error> {
        use super::docker::{
            NETWORK_ALIASES_ANNOTATION, NETWORK_ANNOTATION, NETWORK_ID_ANNOTATION,
            NETWORK_IP_ANNOTATION,
        };
        let ann = |k: &str| config.annotations.get(k).cloned().unwrap_or_default();
        let network = match ann(NETWORK_ANNOTATION).as_str() {
            "" | "default" | "bridge" => DEFAULT_NETWORK.to_string(),
            n => n.to_string(),
        };
        let aliases = match config.annotations.get(NETWORK_ALIASES_ANNOTATION) {
            Some(a) => serde_json::from_str(a).map_err(|e| {
                Error::InvalidArgument(format!("annotation {NETWORK_ALIASES_ANNOTATION}: {e}"))
            })?,
            None => vec![],
        };
        let ip = match config.annotations.get(NETWORK_IP_ANNOTATION) {
            Some(ip) => Some(ip.parse().map_err(|_| {
                Error::InvalidArgument(format!(
                    "annotation {NETWORK_IP_ANNOTATION}: {ip:?} is not an IPv4 address"
                ))
            })?),
            None => None,
        };
        Ok(Self {
            network,
            network_id: ann(NETWORK_ID_ANNOTATION),
            aliases,
            ip,
        })
    }
}

/// The lowest `ethN` none of `taken` uses.
fn free_ifname(taken: &[NetworkAttachment]) -> String {
    (0..)
        .map(|n| format!("eth{n}"))
        .find(|n| !taken.iter().any(|a| &a.ifname == n))
        .unwrap_or_else(|| DEFAULT_IFNAME.into())
}

/// The config for an interface other than `eth0`: without the IPAM
/// routes, so the default route stays on the first interface (Docker gives
/// a container one default gateway; a second default route would make the
/// plugin's ADD fail).
fn without_routes(net: &NetworkConfigList) -> Result<NetworkConfigList, Error> {
    let mut raw = net.raw.clone();
    if let Some(plugins) = raw.get_mut("plugins").and_then(Value::as_array_mut) {
        for p in plugins {
            if let Some(ipam) = p.get_mut("ipam").and_then(Value::as_object_mut) {
                ipam.remove("routes");
            }
        }
    }
    NetworkConfigList::from_value(raw, &net.path).map_err(super::pod::cni_err)
}

impl Engine {
    /// The CNI config of Docker network `name` (`bridge`: the node's default).
    async fn network_config(&self, name: &str) -> Result<NetworkConfigList, Error> {
        if name == DEFAULT_NETWORK {
            return match self.network.ready() {
                Ok(n) => Ok(n),
                Err(_) => self.network.rescan().await.map_err(|reason| {
                    Error::FailedPrecondition(format!("the pod network is not ready: {reason}"))
                }),
            };
        }
        let dir = self.config.root.join(crate::network::NAMED_DIR);
        self.cni
            .load_named(&dir, name)
            .await
            .map_err(super::pod::cni_err)?
            .ok_or_else(|| Error::NotFound(format!("network {name} not found")))
    }

    /// Runs CNI ADD for one network on interface `ifname` of a pod's netns.
    /// The first interface carries the pod's own CNI arguments (published
    /// ports, bandwidth, DNS, the pod CIDR); later ones only the network.
    pub(crate) async fn add_attachment(
        &self,
        pod_id: &str,
        netns: &std::path::Path,
        config: &PodSandboxConfig,
        req: &NetworkRequest,
        ifname: &str,
    ) -> Result<(NetworkAttachment, CniResult), Error> {
        let mut net = self.network_config(&req.network).await?;
        let primary = ifname == DEFAULT_IFNAME;
        let mut att = if primary {
            let mut att =
                Attachment::for_pod(pod_id, netns, config).map_err(super::pod::cni_err)?;
            if let Some(cidr) = self.pod_cidr() {
                // host-local's `ipRanges` capability: the node's pod CIDR from the
                // kubelet (UpdateRuntimeConfig), only for plugins that declare it.
                att.capabilities
                    .insert("ipRanges".into(), serde_json::json!([[{ "subnet": cidr }]]));
            }
            att
        } else {
            net = without_routes(&net)?;
            let mut att = Attachment::new(pod_id, netns);
            att.ifname = ifname.to_string();
            att
        };
        if let Some(ip) = req.ip {
            // host-local reads an asked-for address from CNI_ARGS `IP`.
            att.args.push(("IP".into(), ip.to_string()));
        }
        let started = std::time::Instant::now();
        let res = self.ops.network.add(&self.cni, &net, &att).await;
        crate::metrics::global().observe_cni("add", res.is_ok(), started.elapsed());
        let res = res.map_err(super::pod::cni_err)?;
        let (addrs, gateway, mac) = crate::network::interface_config(&res, ifname);
        let attachment = NetworkAttachment {
            network: req.network.clone(),
            network_id: req.network_id.clone(),
            cni_network: net.name.clone(),
            ifname: ifname.to_string(),
            ips: addrs.iter().map(|a| a.addr.to_string()).collect(),
            prefix_len: addrs.first().map(|a| a.prefix_len).unwrap_or(0),
            gateway: gateway.map(|g| g.to_string()).unwrap_or_default(),
            mac,
            aliases: req.aliases.clone(),
            requested_ip: req.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        };
        Ok((attachment, res))
    }

    /// Attaches a ready pod to one more network (Docker's `network connect`)
    /// on its next free interface; returns the attachment as recorded.
    pub async fn connect_network(
        &self,
        pod_id: &str,
        req: NetworkRequest,
    ) -> Result<NetworkAttachment, Error> {
        let attached = {
            let _g = self.locks.lock(pod_id).await;
            let mut pod = self.pod(pod_id)?;
            let netns = ready_netns(&pod)?;
            let mut list = pod.attachments();
            if list.iter().any(|a| a.network == req.network) {
                return Err(Error::AlreadyExists(format!(
                    "pod sandbox {pod_id} is already attached to network {}",
                    req.network
                )));
            }
            let ifname = free_ifname(&list);
            let (att, _) = self
                .add_attachment(pod_id, &netns, &pod.config, &req, &ifname)
                .await?;
            list.push(att.clone());
            pod.set_attachments(list);
            if let Err(e) = self.store.write(|w| w.put(PODS, pod_id, &pod)) {
                // Not recorded: undo the ADD rather than leak its address.
                let _ = self
                    .ops
                    .network
                    .del_interface(&self.cni, pod_id, &ifname, Some(&netns))
                    .await;
                return Err(e.into());
            }
            info!(pod = %pod_id, network = %att.network, ifname = %att.ifname,
                ips = ?att.ips, "attached the pod to a network");
            att
        };
        self.network_changed(&attached.network);
        Ok(attached)
    }

    /// Detaches a pod from one network (Docker's `network disconnect`): CNI
    /// DEL of that attachment only, with the input its ADD recorded.
    pub async fn disconnect_network(&self, pod_id: &str, network: &str) -> Result<(), Error> {
        {
            let _g = self.locks.lock(pod_id).await;
            let mut pod = self.pod(pod_id)?;
            let mut list = pod.attachments();
            let Some(i) = list.iter().position(|a| a.network == network) else {
                return Err(Error::NotFound(format!(
                    "pod sandbox {pod_id} is not attached to network {network}"
                )));
            };
            let att = list.remove(i);
            let started = std::time::Instant::now();
            let res = self
                .ops
                .network
                .del_interface(&self.cni, pod_id, &att.ifname, pod.netns.as_deref())
                .await;
            crate::metrics::global().observe_cni("del", res.is_ok(), started.elapsed());
            res.map_err(super::pod::cni_err)?;
            pod.set_attachments(list);
            self.store.write(|w| w.put(PODS, pod_id, &pod))?;
            info!(pod = %pod_id, network, ifname = %att.ifname, "detached the pod from a network");
        }
        self.network_changed(network);
        Ok(())
    }
}

/// The pinned netns of a pod that can take an attachment.
fn ready_netns(pod: &PodRecord) -> Result<std::path::PathBuf, Error> {
    if pod.state != PodState::Ready {
        return Err(Error::FailedPrecondition(format!(
            "pod sandbox {} is not ready",
            pod.id
        )));
    }
    pod.netns.clone().ok_or_else(|| {
        Error::InvalidArgument(format!(
            "pod sandbox {} uses the host's network: it cannot join other networks",
            pod.id
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(network: &str, ifname: &str) -> NetworkAttachment {
        NetworkAttachment {
            network: network.into(),
            ifname: ifname.into(),
            ..Default::default()
        }
    }

    #[test]
    fn interfaces_are_the_lowest_free_eth() {
        assert_eq!(free_ifname(&[]), "eth0");
        assert_eq!(free_ifname(&[att("a", "eth0")]), "eth1");
        assert_eq!(free_ifname(&[att("a", "eth1")]), "eth0");
        assert_eq!(
            free_ifname(&[att("a", "eth0"), att("b", "eth2"), att("c", "eth1")]),
            "eth3"
        );
    }

    #[test]
    fn later_interfaces_get_no_routes() {
        let raw = serde_json::json!({
            "cniVersion": "1.0.0", "name": "n",
            "plugins": [
                {"type": "bridge", "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        let net = NetworkConfigList::from_value(raw, std::path::Path::new("n.conflist")).unwrap();
        let bare = without_routes(&net).unwrap();
        assert!(bare.plugins[0]["ipam"].get("routes").is_none());
        assert_eq!(bare.plugins[0]["ipam"]["type"], "host-local");
        assert_eq!(bare.raw["plugins"][1], net.raw["plugins"][1]);
        assert_eq!(bare.name, "n");
    }

    #[test]
    fn create_annotations_make_the_first_request() {
        use super::super::docker::*;
        let mut cfg = PodSandboxConfig::default();
        assert_eq!(
            NetworkRequest::from_pod_config(&cfg).unwrap(),
            NetworkRequest {
                network: "bridge".into(),
                ..Default::default()
            }
        );
        cfg.annotations.extend([
            (NETWORK_ANNOTATION.to_string(), "front".to_string()),
            (NETWORK_ID_ANNOTATION.to_string(), "abc".to_string()),
            (
                NETWORK_ALIASES_ANNOTATION.to_string(),
                r#"["web","www"]"#.to_string(),
            ),
            (NETWORK_IP_ANNOTATION.to_string(), "10.89.3.7".to_string()),
        ]);
        let r = NetworkRequest::from_pod_config(&cfg).unwrap();
        assert_eq!(r.network, "front");
        assert_eq!(r.network_id, "abc");
        assert_eq!(r.aliases, ["web", "www"]);
        assert_eq!(r.ip, Some(Ipv4Addr::new(10, 89, 3, 7)));
        cfg.annotations
            .insert(NETWORK_IP_ANNOTATION.into(), "nope".into());
        assert!(matches!(
            NetworkRequest::from_pod_config(&cfg),
            Err(Error::InvalidArgument(_))
        ));
    }
}
