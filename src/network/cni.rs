//! The CNI caller: runs a network's plugin chain for ADD, DEL and CHECK as
//! the CNI spec orders it, and keeps the attachment cache that lets DEL and
//! CHECK repeat ADD's exact input after a restart or a config change.
//!
//! ```text
//! add:   write pending record ─> plugin 1 ADD ─> … ─> plugin n ADD ─> record result
//!            (any failure: DEL n…1 with the same input, then the error)
//! del:   records of the container (or the current default network)
//!            ─> plugin n DEL ─> … ─> plugin 1 DEL ─> remove record
//! check: record ─> plugin 1 CHECK ─> … ─> plugin n CHECK (prevResult = result)
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::{debug, info, warn};

use super::attach::{at_least_0_4, check_id, cni_args, plugin_config, usable_netns, Attachment};
use super::cache::{self, CachedAttachment};
use super::config::{find_plugin, load_default_or_builtin, NetworkConfigList};
use super::error::CniError;
use super::exec::{run_plugin, CniCommand, Invocation};
use super::result::CniResult;
use super::{blocking, DEFAULT_IFNAME, PLUGIN_TIMEOUT};

/// One run of a chain: everything but the command and the order.
struct Call<'a> {
    net: &'a NetworkConfigList,
    container_id: &'a str,
    ifname: &'a str,
    netns: String,
    args: String,
    capabilities: &'a Map<String, Value>,
}

/// The CNI caller of one node.
#[derive(Debug, Clone)]
pub struct Cni {
    /// Where network configs are read (for DEL without a cached attachment).
    pub conf_dir: PathBuf,
    /// Where plugin binaries are looked up, in order (`CNI_PATH`).
    pub bin_dirs: Vec<PathBuf>,
    /// Where attachments are cached; keep it across reboots (under `root`).
    pub cache_dir: PathBuf,
    /// The deadline of one plugin call.
    pub plugin_timeout: Duration,
    /// A command put before every plugin (tests run plugins in a netns).
    launcher: Vec<OsString>,
    /// The built-in network stands in while `conf_dir` has no file.
    builtin_network: bool,
}

impl Cni {
    /// A caller with the default 60 s plugin deadline.
    pub fn new(conf_dir: PathBuf, bin_dirs: Vec<PathBuf>, cache_dir: PathBuf) -> Self {
        Self {
            conf_dir,
            bin_dirs,
            cache_dir,
            plugin_timeout: PLUGIN_TIMEOUT,
            launcher: Vec::new(),
            builtin_network: false,
        }
    }

    /// Uses the built-in network while the config directory has no file.
    pub fn with_builtin_network(mut self, on: bool) -> Self {
        self.builtin_network = on;
        self
    }

    /// Runs every plugin through `launcher` (e.g. `ip netns exec NAME`).
    #[cfg(test)]
    pub(crate) fn with_launcher(mut self, launcher: &[&str]) -> Self {
        self.launcher = launcher.iter().map(OsString::from).collect();
        self
    }

    /// The default network of this caller's directories.
    pub async fn load_default(&self) -> Result<Option<NetworkConfigList>, CniError> {
        let (dir, bins, builtin) = (
            self.conf_dir.clone(),
            self.bin_dirs.clone(),
            self.builtin_network,
        );
        blocking(move || load_default_or_builtin(&dir, &bins, builtin)).await
    }

    /// Network `name` from `<dir>/<name>.conflist`, plugins checked (see
    /// [`load_named`](super::config::load_named)); `None` when there is none.
    pub async fn load_named(
        &self,
        dir: &Path,
        name: &str,
    ) -> Result<Option<NetworkConfigList>, CniError> {
        let (dir, name, bins) = (dir.to_path_buf(), name.to_string(), self.bin_dirs.clone());
        blocking(move || super::config::load_named(&dir, &name, &bins)).await
    }

    /// Attaches a container to `net`. On failure the plugins that may have
    /// done something are undone with DEL before the error is returned.
    pub async fn add(
        &self,
        net: &NetworkConfigList,
        att: &Attachment,
    ) -> Result<CniResult, CniError> {
        check_id(&att.container_id)?;
        if att.ifname.is_empty() || att.ifname.len() > 15 || att.ifname.contains('/') {
            return Err(CniError::InvalidArgument {
                what: "interface name",
                reason: format!("{:?} is not a usable interface name", att.ifname),
            });
        }
        if !att.netns.is_absolute() {
            return Err(CniError::InvalidArgument {
                what: "netns path",
                reason: format!("{} is not absolute", att.netns.display()),
            });
        }
        let args = cni_args(&att.args)?;
        for t in net.plugin_types() {
            find_plugin(t, &self.bin_dirs)?;
        }
        let mut rec = CachedAttachment {
            kind: cache::KIND.into(),
            container_id: att.container_id.clone(),
            network: net.name.clone(),
            if_name: att.ifname.clone(),
            netns: att.netns.clone(),
            cni_args: att.args.clone(),
            capabilities: att.capabilities.clone(),
            config: net.raw.clone(),
            result: None,
        };
        self.write_cache(&rec).await?;
        let call = Call {
            net,
            container_id: &att.container_id,
            ifname: &att.ifname,
            netns: att.netns.to_string_lossy().into_owned(),
            args,
            capabilities: &att.capabilities,
        };
        let added = async {
            let raw = self.run_chain(CniCommand::Add, &call, None).await?;
            let last = net.plugin_types().last().unwrap_or_default().to_string();
            let result = CniResult::parse(raw.clone()).map_err(|reason| CniError::BadResult {
                plugin: last,
                command: "ADD",
                reason,
            })?;
            rec.result = Some(raw);
            self.write_cache(&rec).await?;
            Ok(result)
        }
        .await;
        if let Err(e) = &added {
            info!(container = %att.container_id, network = %net.name,
                "cni ADD failed, undoing it with DEL: {e}");
            match self.run_chain(CniCommand::Del, &call, None).await {
                Ok(_) => self.remove_cache(&net.name, &att.container_id).await?,
                Err(del) => warn!(container = %att.container_id,
                    "cni DEL after a failed ADD failed too (the record is kept): {del}"),
            }
        }
        added
    }

    /// Detaches a container from every network it was attached to, with the
    /// input recorded at ADD; without a record, from the current default
    /// network. `netns` may be gone (plugins then get an empty CNI_NETNS).
    /// Calling it again is harmless.
    pub async fn del(&self, container_id: &str, netns: Option<&Path>) -> Result<(), CniError> {
        check_id(container_id)?;
        let netns = usable_netns(netns);
        let found = self.find_cache(container_id).await?;
        let mut handled = false;
        for (path, rec) in &found {
            let Some(rec) = rec else { continue };
            self.del_recorded(container_id, path.clone(), rec, netns.clone())
                .await?;
            handled = true;
        }
        if !handled {
            match self.load_default().await? {
                Some(net) => {
                    debug!(container = container_id, network = %net.name,
                        "no cached cni attachment, running DEL with the default network");
                    let caps = Map::new();
                    let call = Call {
                        net: &net,
                        container_id,
                        ifname: DEFAULT_IFNAME,
                        netns,
                        args: cni_args(&[])?,
                        capabilities: &caps,
                    };
                    self.run_chain(CniCommand::Del, &call, None).await?;
                }
                None => debug!(container = container_id, "no cni attachment to delete"),
            }
            for (path, _) in found {
                blocking(move || cache::remove(&path)).await?;
            }
        }
        Ok(())
    }

    /// Detaches a container from the one attachment on interface `ifname`
    /// (Docker's `network disconnect`), with the input recorded at ADD; the
    /// container's other attachments stay. Without a record nothing runs:
    /// that interface was never attached, or its DEL already completed.
    pub async fn del_interface(
        &self,
        container_id: &str,
        ifname: &str,
        netns: Option<&Path>,
    ) -> Result<(), CniError> {
        check_id(container_id)?;
        let netns = usable_netns(netns);
        for (path, rec) in self.find_cache(container_id).await? {
            let Some(rec) = rec.filter(|r| r.if_name == ifname) else {
                continue;
            };
            self.del_recorded(container_id, path, &rec, netns.clone())
                .await?;
        }
        Ok(())
    }

    /// DEL of one recorded attachment with the input recorded at its ADD,
    /// then its record (cache file at `path`) goes.
    async fn del_recorded(
        &self,
        container_id: &str,
        path: PathBuf,
        rec: &CachedAttachment,
        netns: String,
    ) -> Result<(), CniError> {
        let net = NetworkConfigList::from_value(rec.config.clone(), &path)?;
        let call = Call {
            net: &net,
            container_id,
            ifname: &rec.if_name,
            netns,
            args: cni_args(&rec.cni_args)?,
            capabilities: &rec.capabilities,
        };
        self.run_chain(CniCommand::Del, &call, rec.result.as_ref())
            .await?;
        blocking(move || cache::remove(&path)).await?;
        Ok(())
    }

    /// Checks that a container's attachments are still as ADD left them.
    pub async fn check(&self, container_id: &str, netns: &Path) -> Result<(), CniError> {
        check_id(container_id)?;
        let found = self.find_cache(container_id).await?;
        let not_attached = || CniError::NotAttached {
            container_id: container_id.to_string(),
        };
        let recs: Vec<_> = found
            .iter()
            .filter_map(|(p, r)| Some((p, r.as_ref()?)))
            .collect();
        if recs.is_empty() {
            return Err(not_attached());
        }
        for (path, rec) in recs {
            let net = NetworkConfigList::from_value(rec.config.clone(), path)?;
            if net.disable_check || !at_least_0_4(&net.cni_version) {
                continue;
            }
            let result = rec.result.as_ref().ok_or_else(not_attached)?;
            let call = Call {
                net: &net,
                container_id,
                ifname: &rec.if_name,
                netns: netns.to_string_lossy().into_owned(),
                args: cni_args(&rec.cni_args)?,
                capabilities: &rec.capabilities,
            };
            self.run_chain(CniCommand::Check, &call, Some(result))
                .await?;
        }
        Ok(())
    }

    /// The ids of every container with a cached attachment (for start-up
    /// clean-up of attachments whose pod no longer exists).
    pub async fn attached_ids(&self) -> Result<Vec<String>, CniError> {
        let dir = self.cache_dir.clone();
        blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => {
                    return Err(CniError::Io {
                        op: "read cni cache directory",
                        path: dir.clone(),
                        source: e,
                    })
                }
            };
            let mut ids: Vec<String> = entries
                .filter_map(Result::ok)
                .filter_map(|e| std::fs::read(e.path()).ok())
                .filter_map(|b| serde_json::from_slice::<CachedAttachment>(&b).ok())
                .filter(|r| r.kind == cache::KIND)
                .map(|r| r.container_id)
                .collect();
            ids.sort();
            ids.dedup();
            Ok(ids)
        })
        .await
    }

    /// The attachments recorded for a container (completed ADDs first).
    pub async fn cached(&self, container_id: &str) -> Result<Vec<CachedAttachment>, CniError> {
        check_id(container_id)?;
        let mut recs: Vec<CachedAttachment> = self
            .find_cache(container_id)
            .await?
            .into_iter()
            .filter_map(|(_, r)| r)
            .collect();
        recs.sort_by_key(|r| r.result.is_none());
        Ok(recs)
    }

    /// The CNI versions a plugin says it supports (`CNI_COMMAND=VERSION`).
    pub async fn plugin_versions(&self, plugin: &str) -> Result<Vec<String>, CniError> {
        let path = find_plugin(plugin, &self.bin_dirs)?;
        let inv = Invocation {
            command: CniCommand::Version,
            container_id: "",
            netns: "",
            ifname: "",
            args: "",
            cni_path: &self.cni_path(),
        };
        let stdin = serde_json::to_vec(&serde_json::json!({"cniVersion": "1.0.0"}))
            .expect("json serializes");
        let out = run_plugin(
            plugin,
            &path,
            &inv,
            stdin,
            self.plugin_timeout,
            &self.launcher,
        )
        .await?
        .unwrap_or_default();
        Ok(out
            .get("supportedVersions")
            .and_then(Value::as_array)
            .map(|v| {
                v.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Runs the chain; ADD feeds each result to the next plugin and returns
    /// the last one, DEL goes in reverse, DEL and CHECK give every plugin `prev`.
    async fn run_chain(
        &self,
        command: CniCommand,
        call: &Call<'_>,
        prev: Option<&Value>,
    ) -> Result<Value, CniError> {
        let net = call.net;
        let mut order: Vec<usize> = (0..net.plugins.len()).collect();
        if command == CniCommand::Del {
            order.reverse();
        }
        let mut prev = match command {
            CniCommand::Add => None,
            _ if at_least_0_4(&net.cni_version) => prev.cloned(),
            _ => None,
        };
        let cni_path = self.cni_path();
        for i in order {
            let plugin = net.plugins[i]["type"].as_str().unwrap_or_default();
            let path = find_plugin(plugin, &self.bin_dirs)?;
            let conf = plugin_config(net, i, prev.as_ref(), call.capabilities);
            let inv = Invocation {
                command,
                container_id: call.container_id,
                netns: &call.netns,
                ifname: call.ifname,
                args: &call.args,
                cni_path: &cni_path,
            };
            let stdin = serde_json::to_vec(&conf).expect("json serializes");
            debug!(plugin, command = command.as_str(), container = call.container_id,
                network = %net.name, "running cni plugin");
            let out = run_plugin(
                plugin,
                &path,
                &inv,
                stdin,
                self.plugin_timeout,
                &self.launcher,
            )
            .await?;
            if command == CniCommand::Add {
                match out {
                    Some(v) if v.is_object() => prev = Some(v),
                    _ => {
                        return Err(CniError::BadResult {
                            plugin: plugin.into(),
                            command: "ADD",
                            reason: "no result object on stdout".into(),
                        })
                    }
                }
            }
        }
        if command != CniCommand::Check {
            info!(command = command.as_str(), container = call.container_id,
                network = %net.name, "cni {} done", command.as_str());
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    fn cni_path(&self) -> String {
        let dirs: Vec<_> = self.bin_dirs.iter().map(|d| d.to_string_lossy()).collect();
        dirs.join(":")
    }

    async fn write_cache(&self, rec: &CachedAttachment) -> Result<(), CniError> {
        let (dir, rec) = (self.cache_dir.clone(), rec.clone());
        blocking(move || cache::write(&dir, &rec).map(drop)).await
    }

    async fn remove_cache(&self, network: &str, container_id: &str) -> Result<(), CniError> {
        let path = cache::path(&self.cache_dir, network, container_id);
        blocking(move || cache::remove(&path)).await
    }

    async fn find_cache(
        &self,
        container_id: &str,
    ) -> Result<Vec<(PathBuf, Option<CachedAttachment>)>, CniError> {
        let (dir, id) = (self.cache_dir.clone(), container_id.to_string());
        blocking(move || cache::find(&dir, &id)).await
    }
}
