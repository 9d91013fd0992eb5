//! `berth.yaml`: the daemon's configuration.
//!
//! Every key has a default, so an empty file is valid. Unknown keys and bad values
//! are refused with the key's path (`cri.socket`, `registries."127.0.0.1:5000".insecure`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config{}: at {key}: {message}", file_note(.path))]
    Invalid {
        path: Option<PathBuf>,
        key: String,
        message: String,
    },
}

fn file_note(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Persistent state: blobs, snapshots, metadata, volumes.
    pub root: PathBuf,
    /// Runtime state: sockets, bundles, pinned namespaces.
    pub state: PathBuf,
    /// `error`, `warn`, `info`, `debug`, `trace` (RUST_LOG overrides).
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    pub cri: CriConfig,
    pub docker: DockerConfig,
    pub metrics: MetricsConfig,
    pub runtime: RuntimeConfig,
    pub cni: CniConfig,
    /// Per registry host (`docker.io`, `127.0.0.1:5000`).
    pub registries: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CriConfig {
    pub socket: PathBuf,
    pub streaming_address: String,
    /// A streaming session with no traffic for this long is closed; `0` never.
    pub stream_idle_timeout: crate::streaming::IdleTimeout,
    /// HTTPS for the streaming server: cert and key; with ca, client
    /// certificates signed by it are required. Off when all are null.
    pub streaming_tls: TlsConfig,
    /// Images reported as pinned (`Image.pinned`), which the kubelet's image
    /// GC never removes.
    pub pinned_images: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    pub socket: PathBuf,
    /// TCP listen address; refused unless `tls` has cert, key and ca.
    pub tcp: Option<String>,
    pub tls: TlsConfig,
    /// The static init `docker run --init` runs as PID 1 (Debian's tini).
    pub init: PathBuf,
    /// The index `docker search` asks for a term that names no registry
    /// (Docker's `/v1/search` API).
    pub search_index: String,
    /// The embedded DNS server of user networks (127.0.0.11).
    pub dns: DockerDnsConfig,
}

/// `docker.dns`: where the embedded DNS server of user networks sends the
/// names it does not know.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DockerDnsConfig {
    /// Upstream servers, `ip` (port 53) or `ip:port`; empty = the
    /// host's `/etc/resolv.conf` nameservers. A container's `--dns`
    /// servers replace these for that container.
    pub upstreams: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port`; empty disables the endpoint.
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    pub default_handler: String,
    /// CRI runtime_handler / RuntimeClass name → OCI runtime.
    pub handlers: BTreeMap<String, HandlerConfig>,
    pub cgroup_driver: CgroupDriver,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HandlerConfig {
    pub path: PathBuf,
    /// The platform images are pulled for when a PullImage names this
    /// handler (`os/arch[/variant]`, e.g. `linux/arm64`); unset: the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    #[default]
    Cgroupfs,
    Systemd,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
    /// While `conf_dir` holds no config file at all, pods use berth's built-in
    /// network (`config/cni/10-berth.conflist`: bridge `berth0`, 10.88.0.0/16).
    pub builtin_network: bool,
}

/// Settings for one registry host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Base URLs tried in order before the host itself; the repository path is kept.
    pub mirrors: Vec<String>,
    /// Allow plain http (and unverified TLS) for this host.
    pub insecure: bool,
    /// Pull only through `mirrors`: a miss on every mirror fails the pull
    /// instead of falling back to the host itself (air-gapped nodes).
    pub mirrors_only: bool,
    /// Credentials used when a pull request carries none.
    pub auth: Option<RegistryAuth>,
    /// Pushes upload a blob larger than this in chunks of this size
    /// (`PATCH` with `Content-Range`), smaller ones in one `PUT`; 0 means
    /// the default (16 MiB).
    pub push_chunk_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    /// base64 of `username:password`, as in Docker's config.json.
    pub auth: String,
    pub identity_token: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: "/var/lib/berth".into(),
            state: "/run/berth".into(),
            log_level: "info".into(),
            log_format: LogFormat::Text,
            cri: CriConfig::default(),
            docker: DockerConfig::default(),
            metrics: MetricsConfig::default(),
            runtime: RuntimeConfig::default(),
            cni: CniConfig::default(),
            registries: BTreeMap::new(),
        }
    }
}

impl Default for CriConfig {
    fn default() -> Self {
        CriConfig {
            socket: "/run/berth/berth.sock".into(),
            streaming_address: "127.0.0.1:10010".into(),
            stream_idle_timeout: crate::streaming::IdleTimeout::DEFAULT,
            streaming_tls: TlsConfig::default(),
            pinned_images: Vec::new(),
        }
    }
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            socket: "/run/berth/docker.sock".into(),
            tcp: None,
            tls: TlsConfig::default(),
            init: "/usr/bin/tini-static".into(),
            search_index: "https://index.docker.io".into(),
            dns: DockerDnsConfig::default(),
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            address: "127.0.0.1:9323".into(),
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let mut handlers = BTreeMap::new();
        handlers.insert(
            "crun".to_string(),
            HandlerConfig {
                path: "/usr/bin/crun".into(),
                platform: None,
            },
        );
        handlers.insert(
            "runc".to_string(),
            HandlerConfig {
                path: "/usr/sbin/runc".into(),
                platform: None,
            },
        );
        RuntimeConfig {
            default_handler: "crun".into(),
            handlers,
            cgroup_driver: CgroupDriver::Cgroupfs,
        }
    }
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: "/etc/cni/net.d".into(),
            bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
            builtin_network: true,
        }
    }
}

impl Config {
    /// Reads and validates a YAML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Invalid { key, message, .. } => ConfigError::Invalid {
                path: Some(path.to_path_buf()),
                key,
                message,
            },
            other => other,
        })
    }

    /// Parses and validates YAML text; empty text (or only comments) is the default.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
            invalid(
                e.location()
                    .map(|l| format!("line {} column {}", l.line(), l.column()))
                    .unwrap_or_else(|| "<document>".into()),
                e.to_string(),
            )
        })?;
        if value.is_null() {
            return Ok(Config::default());
        }
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." {
                "<top level>".to_string()
            } else {
                key
            };
            invalid(key, e.into_inner().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The full default configuration as YAML.
    pub fn default_yaml() -> String {
        serde_yaml::to_string(&Config::default()).expect("default config serialises")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(
            self.log_level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return Err(invalid(
                "log_level",
                format!(
                    "unknown level {:?}: want error, warn, info, debug or trace",
                    self.log_level
                ),
            ));
        }
        for (key, p) in [
            ("root", &self.root),
            ("state", &self.state),
            ("cri.socket", &self.cri.socket),
            ("docker.socket", &self.docker.socket),
            ("cni.conf_dir", &self.cni.conf_dir),
        ] {
            if !p.is_absolute() {
                return Err(invalid(
                    key,
                    format!("{} is not an absolute path", p.display()),
                ));
            }
        }
        for (key, s) in [
            ("cri.socket", &self.cri.socket),
            ("docker.socket", &self.docker.socket),
        ] {
            // sun_path holds 108 bytes including the terminating NUL.
            if s.as_os_str().len() > 107 {
                return Err(invalid(
                    key,
                    "unix socket path longer than 107 bytes".into(),
                ));
            }
        }
        parse_addr("cri.streaming_address", &self.cri.streaming_address)?;
        for (i, name) in self.cri.pinned_images.iter().enumerate() {
            if let Err(e) = crate::image::reference::Reference::parse(name) {
                return Err(invalid(format!("cri.pinned_images[{i}]"), e.to_string()));
            }
        }
        if !self.metrics.address.is_empty() {
            parse_addr("metrics.address", &self.metrics.address)?;
        }
        for (i, u) in self.docker.dns.upstreams.iter().enumerate() {
            if let Err(e) = crate::network::dns::parse_server(u) {
                return Err(invalid(format!("docker.dns.upstreams[{i}]"), e));
            }
        }
        if let Some(tcp) = &self.docker.tcp {
            parse_addr("docker.tcp", tcp)?;
            let tls = &self.docker.tls;
            if tls.cert.is_none() || tls.key.is_none() || tls.ca.is_none() {
                return Err(invalid(
                    "docker.tcp",
                    "a TCP listener needs docker.tls.cert, key and ca (client verification)".into(),
                ));
            }
        }
        if !self
            .runtime
            .handlers
            .contains_key(&self.runtime.default_handler)
        {
            return Err(invalid(
                "runtime.default_handler",
                format!(
                    "{:?} is not a key of runtime.handlers",
                    self.runtime.default_handler
                ),
            ));
        }
        for (name, h) in &self.runtime.handlers {
            if !h.path.is_absolute() {
                return Err(invalid(
                    format!("runtime.handlers.{name}.path"),
                    format!("{} is not an absolute path", h.path.display()),
                ));
            }
            if let Some(p) = &h.platform {
                crate::image::manifest::Platform::parse(p)
                    .map_err(|e| invalid(format!("runtime.handlers.{name}.platform"), e))?;
            }
        }
        for (host, r) in &self.registries {
            if r.mirrors_only && r.mirrors.is_empty() {
                return Err(invalid(
                    format!("registries.{host:?}.mirrors_only"),
                    "needs at least one entry in mirrors (nothing could be pulled from this host)"
                        .into(),
                ));
            }
            for (i, m) in r.mirrors.iter().enumerate() {
                let ok = reqwest::Url::parse(m)
                    .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    .unwrap_or(false);
                if !ok {
                    return Err(invalid(
                        format!("registries.{host:?}.mirrors[{i}]"),
                        format!("{m:?} is not an http(s) URL"),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn parse_addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|_| invalid(key, format!("{s:?} is not an ip:port address")))
}

fn invalid(key: impl Into<String>, message: String) -> ConfigError {
    ConfigError::Invalid {
        path: None,
        key: key.into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_comment_only_files_are_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(Config::parse("# nothing\n").unwrap(), Config::default());
    }

    #[test]
    fn shipped_config_file_is_the_default() {
        let shipped = include_str!("../config/berth.yaml");
        assert_eq!(Config::parse(shipped).unwrap(), Config::default());
    }

    #[test]
    fn default_yaml_round_trips() {
        let text = Config::default_yaml();
        assert_eq!(Config::parse(&text).unwrap(), Config::default());
    }

    #[test]
    fn the_design_example_parses() {
        let c = Config::parse(
            r#"
root: /var/lib/berth
cri:
  socket: /run/berth/berth.sock
  streaming_address: 127.0.0.1:10010
docker:
  tcp: null
  tls: { cert: null, key: null, ca: null }
runtime:
  default_handler: crun
  handlers:
    crun: { path: /usr/bin/crun }
  cgroup_driver: systemd
registries:
  docker.io:
    mirrors: ["https://mirror.example"]
  "127.0.0.1:5000":
    insecure: true
"#,
        )
        .unwrap();
        assert_eq!(c.runtime.cgroup_driver, CgroupDriver::Systemd);
        assert!(c.registries["127.0.0.1:5000"].insecure);
        assert_eq!(
            c.registries["docker.io"].mirrors,
            ["https://mirror.example"]
        );
    }

    fn key_of(text: &str) -> String {
        match Config::parse(text).unwrap_err() {
            ConfigError::Invalid { key, .. } => key,
            e => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn unknown_keys_name_their_path() {
        assert_eq!(key_of("cri:\n  sockett: /x\n"), "cri.sockett");
        assert_eq!(key_of("bogus: 1\n"), "bogus");
        assert_eq!(
            key_of("registries:\n  \"127.0.0.1:5000\":\n    insecur: true\n"),
            "registries.127.0.0.1:5000.insecur"
        );
    }

    #[test]
    fn bad_values_name_their_path() {
        assert_eq!(key_of("log_level: loud\n"), "log_level");
        assert_eq!(key_of("root: relative/dir\n"), "root");
        assert_eq!(
            key_of("cri:\n  streaming_address: nope\n"),
            "cri.streaming_address"
        );
        assert_eq!(
            key_of("runtime:\n  cgroup_driver: magic\n"),
            "runtime.cgroup_driver"
        );
        assert_eq!(
            key_of("runtime:\n  default_handler: kata\n"),
            "runtime.default_handler"
        );
        assert_eq!(key_of("docker:\n  tcp: 0.0.0.0:2376\n"), "docker.tcp");
        assert_eq!(
            key_of("docker:\n  dns:\n    upstreams: [\"192.0.2.1\", \"dns.example\"]\n"),
            "docker.dns.upstreams[1]"
        );
        assert_eq!(
            key_of("docker:\n  dns:\n    upstream: []\n"),
            "docker.dns.upstream"
        );
        let c = Config::parse("docker:\n  dns:\n    upstreams: [\"127.0.0.77:5353\"]\n").unwrap();
        assert_eq!(c.docker.dns.upstreams, ["127.0.0.77:5353"]);
        assert_eq!(
            key_of("registries:\n  gcr.io:\n    mirrors: [\"ftp://x\"]\n"),
            "registries.\"gcr.io\".mirrors[0]"
        );
        assert_eq!(
            key_of("registries:\n  gcr.io:\n    insecure: maybe\n"),
            "registries.gcr.io.insecure"
        );
        assert_eq!(
            key_of("registries:\n  gcr.io:\n    mirrors_only: true\n"),
            "registries.\"gcr.io\".mirrors_only"
        );
        let c = Config::parse(
            "registries:\n  gcr.io:\n    mirrors: [\"http://127.0.0.1:5000\"]\n    mirrors_only: true\n",
        )
        .unwrap();
        assert!(c.registries["gcr.io"].mirrors_only);
        assert_eq!(
            key_of("runtime:\n  handlers:\n    crun: { path: /usr/bin/crun, platform: arm64 }\n"),
            "runtime.handlers.crun.platform"
        );
        let c = Config::parse(
            "runtime:\n  handlers:\n    crun: { path: /usr/bin/crun }\n    arm: { path: /usr/bin/crun, platform: linux/arm64/v8 }\n",
        )
        .unwrap();
        assert_eq!(
            c.runtime.handlers["arm"].platform.as_deref(),
            Some("linux/arm64/v8")
        );
    }
}
