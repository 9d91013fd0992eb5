//! Pod networking through CNI: network configs and the node's default
//! network (`config`, `state`), the plugin caller with its attachment cache
//! (`cni`, `exec`, `cache`), plugin results (`result`), and a pod's
//! attachment from its CRI config (`pod`), and the embedded DNS server of
//! user networks (`dns`).
//!
//! berth runs plugin binaries itself, as libcni does: the plugin config on
//! stdin, `CNI_*` variables in the environment, the result on stdout. The
//! namespace work happens inside the plugins, never on a daemon thread.

mod attach;
mod cache;
mod cni;
mod config;
pub mod dns;
mod error;
mod exec;
mod pod;
mod result;
mod state;
pub mod user;

#[cfg(test)]
mod cni_tests;
#[cfg(test)]
mod config_tests;
#[cfg(test)]
mod host_tests;
#[cfg(test)]
mod result_tests;
#[cfg(test)]
mod testutil;

use std::time::Duration;

pub use attach::Attachment;
pub use cache::CachedAttachment;
pub use cni::Cni;
pub use config::{
    builtin as builtin_network, find_plugin, load_default, load_default_or_builtin, load_named,
    NetworkConfigList, BUILTIN_PATH, NAMED_DIR, SUPPORTED_VERSIONS,
};
pub use error::{CniError, CniErrorKind};
pub use exec::CniCommand;
pub use pod::{bandwidth, EGRESS_BANDWIDTH, INGRESS_BANDWIDTH};
pub use result::{
    interface_config, pod_gateways, pod_ips, Cidr, CniResult, Dns, Interface, IpConfig, Route,
};
pub use state::{watch, NetworkState, Readiness, POLL_INTERVAL};

/// The interface a pod's network appears as.
pub const DEFAULT_IFNAME: &str = "eth0";

/// The deadline of one plugin call.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

impl CachedAttachment {
    /// The recorded result of a completed ADD.
    pub fn cni_result(&self) -> Option<CniResult> {
        CniResult::parse(self.result.clone()?).ok()
    }
}

/// Runs blocking file work off the async worker threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
