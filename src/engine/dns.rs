//! Keeping the embedded DNS server ([`crate::network::dns`]) in step with
//! the records: [`Engine::network_changed`] is the one entry point that
//! rebuilds a user network's table from the records of its running
//! containers and opens (or closes) the 127.0.0.11 sockets of its pods.
//! It runs on every container event that changes what a network's names
//! are (create, start, die, rename, destroy — see `emit_container`), when a
//! pod goes, and for every user network at daemon start, so containers
//! resolve again right after a restart.
//!
//! A container's place on a network comes from [`Engine::dns_attachments`]:
//! today one user network per Docker pod (the pod's network annotation),
//! with the aliases recorded at create ([`ALIASES_ANNOTATION`]). When pods
//! get several attachments, that function is the one to change.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use tracing::warn;

use super::docker::NETWORK_ANNOTATION;
use super::records::{ContainerRecord, ContainerState, PodRecord, PodState};
use super::{Engine, CONTAINERS, PODS};
use crate::network::dns::Endpoint;

/// Pod annotation: the container's aliases on its user network (a JSON
/// list: `--network-alias`, compose's service name).
pub const ALIASES_ANNOTATION: &str = "io.berth.network.aliases";

/// One network a pod is attached to, as the DNS server needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAttachment {
    pub network: String,
    pub ips: Vec<IpAddr>,
    pub aliases: Vec<String>,
}

/// The user network a pod's annotations name (not bridge/host/none).
pub fn user_network(annotations: &std::collections::HashMap<String, String>) -> Option<&str> {
    annotations
        .get(NETWORK_ANNOTATION)
        .map(String::as_str)
        .filter(|n| !matches!(*n, "" | "none" | "bridge" | "host" | "default"))
        .filter(|n| !n.starts_with("container:"))
}

impl Engine {
    /// The user networks of a pod with its addresses and aliases there.
    pub fn dns_attachments(&self, pod: &PodRecord) -> Vec<DnsAttachment> {
        // The pod's attachments (several after `network connect`); records
        // from before the list read as the one network of their annotation.
        pod.attachments()
            .into_iter()
            .filter(|a| {
                !matches!(
                    a.network.as_str(),
                    "" | "none" | "bridge" | "host" | "default"
                )
            })
            .map(|a| DnsAttachment {
                network: a.network,
                ips: a.ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
                aliases: a.aliases,
            })
            .collect()
    }

    /// Rebuilds the DNS table of user network `network` from the records
    /// (its running containers' names, aliases, short ids and hostnames),
    /// opens the embedded server's sockets in each of its ready pods that
    /// has none, and closes those of its pods that are gone or stopped.
    /// Idempotent; failures are logged (DNS never fails an operation).
    pub fn network_changed(&self, network: &str) {
        let (pods, containers) = match (
            self.store.list::<PodRecord>(PODS),
            self.store.list::<ContainerRecord>(CONTAINERS),
        ) {
            (Ok(p), Ok(c)) => (p, c),
            (Err(e), _) | (_, Err(e)) => {
                warn!(network = %network, error = %e, "failed to read the records for the DNS table");
                return;
            }
        };
        let mut endpoints = Vec::new();
        let mut ready = BTreeSet::new();
        for (_, pod) in &pods {
            let Some(att) = self
                .dns_attachments(pod)
                .into_iter()
                .find(|a| a.network == network)
            else {
                continue;
            };
            if self.listen_dns(pod) {
                ready.insert(pod.id.clone());
            }
            let mut running: Vec<&ContainerRecord> = containers
                .iter()
                .map(|(_, c)| c)
                .filter(|c| c.pod_id == pod.id && c.state == ContainerState::Running)
                .collect();
            running.sort_by_key(|c| c.created_at);
            for c in running {
                let names = Endpoint::dns_names(
                    &self.container_name(c),
                    &att.aliases,
                    &c.id,
                    &pod.config.hostname,
                );
                endpoints.push((
                    c.created_at,
                    Endpoint {
                        container_id: c.id.clone(),
                        ips: att.ips.clone(),
                        names,
                    },
                ));
            }
        }
        endpoints.sort_by(|a, b| (a.0, &a.1.container_id).cmp(&(b.0, &b.1.container_id)));
        let endpoints: Vec<Endpoint> = endpoints.into_iter().map(|(_, e)| e).collect();
        self.dns.set_table(network, &endpoints);
        // Pods that answered for this network and are no longer on it (or
        // gone): they keep answering for their other networks, if any.
        for (pod_id, nets) in self.dns.listening() {
            if !nets.iter().any(|n| n == network) || ready.contains(&pod_id) {
                continue;
            }
            let still = pods
                .iter()
                .find(|(id, _)| *id == pod_id)
                .is_some_and(|(_, p)| self.listen_dns(p));
            if !still {
                self.dns.close(&pod_id);
            }
        }
    }

    /// Opens (or updates) a ready pod's embedded DNS server for all its user
    /// networks; false when it has none or is not ready.
    fn listen_dns(&self, pod: &PodRecord) -> bool {
        let (PodState::Ready, Some(netns)) = (pod.state, &pod.netns) else {
            return false;
        };
        let networks: Vec<String> = self
            .dns_attachments(pod)
            .into_iter()
            .map(|a| a.network)
            .collect();
        if networks.is_empty() {
            return false;
        }
        if let Err(e) = self
            .dns
            .listen(&pod.id, networks, netns, pod_upstreams(pod))
        {
            warn!(pod = %pod.id, error = %e, "failed to open the embedded DNS server in the pod's namespace");
        }
        true
    }

    /// [`Engine::network_changed`] for each user network of a container's pod.
    pub(crate) fn container_networks_changed(&self, rec: &ContainerRecord) {
        let Ok(Some(pod)) = self.store.get::<PodRecord>(PODS, &rec.pod_id) else {
            return;
        };
        for att in self.dns_attachments(&pod) {
            self.network_changed(&att.network);
        }
    }

    /// Closes a pod's DNS sockets (its namespace is going).
    pub(crate) fn pod_dns_closed(&self, pod_id: &str) {
        self.dns.close(pod_id);
    }

    /// At daemon start: every user network's table and sockets again.
    pub(crate) fn restore_dns(&self) {
        let Ok(pods) = self.store.list::<PodRecord>(PODS) else {
            return;
        };
        let networks: BTreeSet<String> = pods
            .iter()
            .flat_map(|(_, p)| self.dns_attachments(p))
            .map(|a| a.network)
            .collect();
        for n in &networks {
            self.network_changed(n);
        }
        crate::network::dns::log_restored(self.dns.listening().len(), networks.len());
    }
}

/// A pod's own upstream servers (`--dns` on a user network: the embedded
/// server forwards to them, as Docker's does).
fn pod_upstreams(pod: &PodRecord) -> Vec<SocketAddr> {
    pod.config
        .dns_config
        .as_ref()
        .map(|d| {
            d.servers
                .iter()
                .filter_map(|s| s.parse::<IpAddr>().ok())
                // Itself: a loop, not a server.
                .filter(|ip| *ip != IpAddr::V4(crate::network::dns::DNS_ADDR))
                .map(|ip| SocketAddr::new(ip, 53))
                .collect()
        })
        .unwrap_or_default()
}
