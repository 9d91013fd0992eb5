//! What one attachment hands the plugins: the container side of an ADD
//! (`Attachment`), each plugin's stdin (`plugin_config`) and `CNI_ARGS`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tracing::debug;

use super::config::{valid_name, NetworkConfigList};
use super::error::CniError;
use super::DEFAULT_IFNAME;

/// What to attach: the container side of one ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// The pod sandbox id (`CNI_CONTAINERID`).
    pub container_id: String,
    /// The pinned network namespace (`CNI_NETNS`).
    pub netns: PathBuf,
    /// The interface inside the namespace (`CNI_IFNAME`), normally `eth0`.
    pub ifname: String,
    /// `CNI_ARGS` pairs; `IgnoreUnknown=1` is added when missing.
    pub args: Vec<(String, String)>,
    /// Capability arguments (`portMappings`, `bandwidth`, `dns`, …); each
    /// plugin gets in `runtimeConfig` only those it declares.
    pub capabilities: Map<String, Value>,
}

impl Attachment {
    /// An attachment on `eth0` with no pod arguments and no capabilities.
    pub fn new(container_id: impl Into<String>, netns: impl Into<PathBuf>) -> Self {
        Self {
            container_id: container_id.into(),
            netns: netns.into(),
            ifname: DEFAULT_IFNAME.into(),
            args: vec![("IgnoreUnknown".into(), "1".into())],
            capabilities: Map::new(),
        }
    }
}

/// Plugin `i`'s stdin: its own config plus the network's `name` and
/// `cniVersion`, `prevResult`, and `runtimeConfig` holding only the
/// capabilities the plugin declares (`"capabilities": {"portMappings": true}`).
pub(crate) fn plugin_config(
    net: &NetworkConfigList,
    i: usize,
    prev: Option<&Value>,
    capabilities: &Map<String, Value>,
) -> Value {
    let mut conf = net.plugins[i].clone();
    let Some(obj) = conf.as_object_mut() else {
        return conf;
    };
    obj.insert("name".into(), Value::String(net.name.clone()));
    obj.insert("cniVersion".into(), Value::String(net.cni_version.clone()));
    match prev {
        Some(p) => obj.insert("prevResult".into(), p.clone()),
        None => obj.remove("prevResult"),
    };
    let declared = obj.get("capabilities").and_then(Value::as_object);
    let runtime: Map<String, Value> = capabilities
        .iter()
        .filter(|(k, _)| declared.and_then(|d| d.get(*k)) == Some(&Value::Bool(true)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !runtime.is_empty() {
        obj.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    conf
}

/// `CNI_ARGS` from pairs, with `IgnoreUnknown=1` first when it is missing.
pub(crate) fn cni_args(args: &[(String, String)]) -> Result<String, CniError> {
    let mut parts = Vec::with_capacity(args.len() + 1);
    if !args.iter().any(|(k, _)| k == "IgnoreUnknown") {
        parts.push("IgnoreUnknown=1".to_string());
    }
    for (k, v) in args {
        if k.is_empty() || k.contains(['=', ';']) || v.contains(';') {
            return Err(CniError::InvalidArgument {
                what: "cni argument",
                reason: format!("{k:?}={v:?} cannot be passed in CNI_ARGS"),
            });
        }
        parts.push(format!("{k}={v}"));
    }
    Ok(parts.join(";"))
}

/// Versions from 0.4.0 on give DEL and CHECK the ADD result; 0.3.x do not.
pub(crate) fn at_least_0_4(version: &str) -> bool {
    !matches!(version, "0.3.0" | "0.3.1")
}

pub(crate) fn check_id(id: &str) -> Result<(), CniError> {
    if valid_name(id) {
        Ok(())
    } else {
        Err(CniError::InvalidArgument {
            what: "container id",
            reason: format!("{id:?} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"),
        })
    }
}

/// The CNI_NETNS to give DEL: the path when it still is a network namespace,
/// else empty, which the spec allows and tells plugins it is gone.
pub(crate) fn usable_netns(netns: Option<&Path>) -> String {
    let Some(p) = netns else {
        return String::new();
    };
    match nix::sys::statfs::statfs(p) {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC => {
            p.to_string_lossy().into_owned()
        }
        _ => {
            debug!(netns = %p.display(), "netns is gone, DEL runs without it");
            String::new()
        }
    }
}
