//! The parts of Docker's container create request berth acts on, and the
//! copy of it every Docker-made container keeps in its annotations.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::docker::CONFIG_ANNOTATION;

/// The parts of Docker's `ContainerCreateRequest` berth acts on; the whole
/// request is stored as given.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateRequest {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub exposed_ports: Option<HashMap<String, Value>>,
    /// Container paths that get an anonymous volume (`-v /data`).
    pub volumes: Option<HashMap<String, Value>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Option<Vec<String>>,
    pub cmd: Option<StrOrVec>,
    pub entrypoint: Option<StrOrVec>,
    pub image: String,
    pub labels: Option<HashMap<String, String>>,
    pub working_dir: String,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub network_disabled: bool,
    /// `--health-*` / `--no-healthcheck`; merged with the image's at create.
    pub healthcheck: Option<crate::engine::health::HealthConfig>,
    pub host_config: HostConfig,
    pub networking_config: NetworkingConfig,
}

/// `NetworkingConfig`: the networks to attach at create, by name or id,
/// with their aliases and addresses (API ≥ 1.44 sends every network of a
/// compose service here; older clients only the first).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkingConfig {
    pub endpoints_config: Option<
        std::collections::BTreeMap<String, Option<crate::docker::networks::EndpointSettings>>,
    >,
}

/// `Cmd`/`Entrypoint` may be a string (old clients) or a list.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum StrOrVec {
    One(String),
    Many(Vec<String>),
}

impl StrOrVec {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            StrOrVec::One(s) => vec![s.clone()],
            StrOrVec::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Option<Vec<String>>,
    pub port_bindings: Option<HashMap<String, Option<Vec<PortBinding>>>>,
    pub publish_all_ports: bool,
    pub auto_remove: bool,
    pub network_mode: String,
    pub mounts: Option<Vec<MountSpec>>,
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub cpu_quota: i64,
    pub cpu_period: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub extra_hosts: Option<Vec<String>>,
    pub dns: Option<Vec<String>>,
    pub dns_search: Option<Vec<String>>,
    pub dns_options: Option<Vec<String>>,
    pub sysctls: Option<HashMap<String, String>>,
    pub restart_policy: Option<RestartPolicy>,
    pub runtime: String,
    pub pid_mode: String,
    pub ipc_mode: String,
    pub group_add: Option<Vec<String>>,
    pub security_opt: Option<Vec<String>>,
    pub tmpfs: Option<HashMap<String, String>>,
    pub oom_score_adj: i64,
    pub log_config: Option<LogConfig>,
    pub init: Option<bool>,
}

/// `HostConfig.LogConfig`: berth writes one log format, reported to Docker
/// clients as `json-file` (what they read logs from).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    pub config: Option<HashMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountSpec {
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub bind_options: Option<BindOptions>,
    pub tmpfs_options: Option<TmpfsOptions>,
    pub volume_options: Option<VolumeOptions>,
}

/// `--mount type=volume` options berth acts on.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeOptions {
    /// `volume-nocopy`: do not fill a new volume from the image.
    pub no_copy: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TmpfsOptions {
    pub size_bytes: i64,
    /// The file mode, as a number (0o1777 = 1023).
    pub mode: u32,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BindOptions {
    pub propagation: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: i64,
}

/// A restart policy as Docker accepts it (`no`, `always`, `unless-stopped`,
/// `on-failure[:N]`; a retry count only with on-failure; none with AutoRemove).
pub fn check_restart_policy(
    p: &RestartPolicy,
    auto_remove: bool,
) -> Result<(), crate::docker::ApiError> {
    use crate::docker::ApiError;
    match p.name.as_str() {
        "" | "no" => {}
        "always" | "unless-stopped" | "on-failure" if auto_remove => {
            return Err(ApiError::bad_request(
                "Restart policy cannot be updated because AutoRemove is enabled for the container",
            ))
        }
        "always" | "unless-stopped" => {}
        "on-failure" => {}
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
            )))
        }
    }
    if p.maximum_retry_count < 0 {
        return Err(ApiError::bad_request(
            "invalid restart policy: maximum retry count can't be negative",
        ));
    }
    if p.maximum_retry_count > 0 && p.name != "on-failure" {
        return Err(ApiError::bad_request(format!(
            "invalid restart policy: maximum retry count can only be used with 'on-failure' ({})",
            p.name
        )));
    }
    Ok(())
}

/// The stored create request of a Docker-made container.
pub fn stored_request(rec: &crate::engine::records::ContainerRecord) -> Option<CreateRequest> {
    rec.config
        .annotations
        .get(CONFIG_ANNOTATION)
        .and_then(|s| serde_json::from_str(s).ok())
}
