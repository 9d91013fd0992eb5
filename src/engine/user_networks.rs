//! User networks (Docker's `network create`): the engine owns them — their
//! files ([`crate::network::user`]), the lock that keeps names and subnets
//! unique and a removal from racing an attach, the in-use check against the
//! pods, the bridge's removal and the events.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use tracing::info;

use super::docker::NETWORK_ANNOTATION;
use super::events::Event;
use super::records::{new_id, now_nanos, PodRecord, PodState};
use super::{Engine, Error};
use crate::network::user::{self, Meta, Subnet};

/// A user network as stored.
pub type UserNetwork = Meta;

/// What a `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewNetwork {
    pub name: String,
    /// The subnet asked for, with its gateway if one was named.
    pub subnet: Option<(Subnet, Option<Ipv4Addr>)>,
    /// Subnets taken besides the user networks' (the predefined bridge's).
    pub reserved: Vec<Subnet>,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// The Docker network a pod's first attachment is on: `host` for a pod on
/// the node's network, the user network it was made on, else `bridge`.
pub fn pod_network(pod: &PodRecord) -> String {
    let host = pod
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|n| n.network == k8s_cri::v1::NamespaceMode::Node as i32);
    if host {
        return "host".into();
    }
    match pod.config.annotations.get(NETWORK_ANNOTATION) {
        Some(n) if !n.is_empty() && n != "default" => n.clone(),
        _ => "bridge".into(),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("network task failed: {e}")))?
        .map_err(Error::Internal)
}

impl Engine {
    fn user_networks_dir(&self) -> PathBuf {
        self.config.root.join(crate::network::NAMED_DIR)
    }

    /// Every user network.
    pub async fn user_networks(&self) -> Result<Vec<UserNetwork>, Error> {
        let dir = self.user_networks_dir();
        blocking(move || user::list(&dir)).await
    }

    /// How many pods are on each network, by name (a stopped pod keeps
    /// its first network's name for the DEL at its removal).
    pub fn networks_in_use(&self) -> Result<HashMap<String, usize>, Error> {
        let mut out = HashMap::new();
        for p in self.pods()? {
            let mut names: Vec<String> = p.attachments().into_iter().map(|a| a.network).collect();
            if names.is_empty() && p.state == PodState::NotReady {
                names.push(pod_network(&p));
            }
            for n in names {
                *out.entry(n).or_default() += 1;
            }
        }
        Ok(out)
    }

    /// Creates a user network: a unique name, the subnet asked for if it
    /// overlaps no other (else `Forbidden`, Docker's 403), or the first
    /// free /24 of 10.89.0.0/16 that no host route covers.
    pub async fn create_user_network(&self, new: NewNetwork) -> Result<UserNetwork, Error> {
        let _g = self.network_changes.lock().await;
        let nets = self.user_networks().await?;
        if nets.iter().any(|n| n.name == new.name) {
            return Err(Error::AlreadyExists(format!(
                "network with name {} already exists",
                new.name
            )));
        }
        let mut taken = new.reserved.clone();
        taken.extend(nets.iter().map(|n| n.subnet));
        let subnet = match new.subnet {
            Some((s, _)) => {
                if taken.iter().any(|t| t.overlaps(&s)) {
                    return Err(Error::Forbidden(format!(
                        "invalid pool request: Pool overlaps with other one on this address space ({s})"
                    )));
                }
                s
            }
            None => {
                taken.extend(
                    tokio::task::spawn_blocking(user::host_routes)
                        .await
                        .unwrap_or_default(),
                );
                user::pick_subnet(&taken).ok_or_else(|| {
                    Error::Forbidden("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into())
                })?
            }
        };
        let id = new_id();
        let meta = Meta {
            bridge: Meta::bridge_for(&id),
            id: id.clone(),
            name: new.name.clone(),
            created: now_nanos(),
            subnet,
            gateway: new
                .subnet
                .and_then(|(_, g)| g)
                .unwrap_or(subnet.first_host()),
            internal: new.internal,
            attachable: new.attachable,
            labels: new.labels,
            options: new.options,
        };
        let (dir, m) = (self.user_networks_dir(), meta.clone());
        blocking(move || user::create(&dir, &m)).await?;
        self.events.emit(
            Event::new("network", "create", &id)
                .with("name", &meta.name)
                .with("type", "bridge"),
        );
        info!(network = %meta.name, id = %id, subnet = %meta.subnet, "created network");
        Ok(meta)
    }

    /// Removes a user network no pod is on (else `Forbidden`): its bridge,
    /// then its files.
    pub async fn remove_user_network(&self, net: &UserNetwork) -> Result<(), Error> {
        let _g = self.network_changes.lock().await;
        self.remove_user_network_locked(net).await
    }

    /// Removes the user networks no pod is on that `remove` picks; their names.
    pub async fn prune_user_networks(
        &self,
        remove: impl Fn(&UserNetwork) -> bool,
    ) -> Result<Vec<String>, Error> {
        let _g = self.network_changes.lock().await;
        let used = self.networks_in_use()?;
        let mut gone = Vec::new();
        for net in self.user_networks().await? {
            if !used.contains_key(&net.name) && remove(&net) {
                self.remove_user_network_locked(&net).await?;
                gone.push(net.name);
            }
        }
        Ok(gone)
    }

    async fn remove_user_network_locked(&self, net: &UserNetwork) -> Result<(), Error> {
        if self.networks_in_use()?.contains_key(&net.name) {
            return Err(Error::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                net.name, net.id
            )));
        }
        // The bridge plugin leaves its bridge when the last pod goes.
        crate::network::user::delete_bridge(&Meta::bridge_for(&net.id))
            .await
            .map_err(|e| Error::internal(format!("error while removing network: {e}")))?;
        let (dir, name) = (self.user_networks_dir(), net.name.clone());
        blocking(move || user::remove(&dir, &name)).await?;
        self.events.emit(
            Event::new("network", "destroy", &net.id)
                .with("name", &net.name)
                .with("type", "bridge"),
        );
        info!(network = %net.name, id = %net.id, "removed network");
        Ok(())
    }
}
