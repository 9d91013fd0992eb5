//! The engine owns the model — images, pod sandboxes, containers — and is the
//! only place that changes state. The CRI and Docker front doors call it.
//!
//! Start-up (as containerd does it): open the stores, reconcile the records
//! with what is really running, collect unreferenced content; only then are
//! the sockets opened.

pub mod container;
pub mod docker;
pub mod events;
pub mod exec;
pub mod oci;
mod orphans;
pub mod pod;
pub mod records;
pub mod rootfs;
pub mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::{info, warn};

use crate::config::Config;
use crate::image::pull::KeyedLocks;
use crate::image::{self, ImageService};
use crate::store::{Store, StoreError};
pub use crate::store::{CONTAINERS, PODS};
use oci_spec::runtime::Capabilities;

/// Errors of engine operations, classed for the wire.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("failed to {what}: {message}")]
    Runtime { what: String, message: String },
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Image(#[from] Box<image::Error>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid container spec: {0}")]
    Spec(#[from] Box<crate::runtime::SpecError>),
}

impl From<image::Error> for Error {
    fn from(e: image::Error) -> Self {
        Error::Image(Box::new(e))
    }
}

impl From<crate::runtime::SpecError> for Error {
    fn from(e: crate::runtime::SpecError) -> Self {
        Error::Spec(Box::new(e))
    }
}

impl Error {
    pub(crate) fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }
}

/// Facts about the host that shape container specs.
pub struct HostFacts {
    pub capabilities: Capabilities,
    /// berthd's own oom_score_adj: without CAP_SYS_RESOURCE nothing lower can be set.
    pub min_oom_score_adj: i32,
    pub swap_accounting: bool,
    /// The kernel has AppArmor enabled (Localhost profiles can be applied).
    pub apparmor: bool,
    /// berth's default AppArmor profile, when loaded: what RuntimeDefault means.
    pub apparmor_default_profile: Option<String>,
}

impl HostFacts {
    fn detect() -> Self {
        let capabilities = crate::runtime::caps::current_bounding_set().unwrap_or_default();
        let min_oom_score_adj = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let swap_accounting =
            std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
        let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|s| s.trim() == "Y");
        let apparmor_default_profile = if apparmor {
            crate::runtime::apparmor::ensure_default_profile()
        } else {
            None
        };
        HostFacts {
            capabilities,
            min_oom_score_adj,
            swap_accounting,
            apparmor,
            apparmor_default_profile,
        }
    }
}

/// Errors while bringing the engine up.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("failed to create {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Image(#[from] image::Error),
}

/// The daemon's state.
pub struct Engine {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub images: ImageService,
    pub host: HostFacts,
    /// The host's cgroup hierarchies, read at start-up.
    pub cgroups: Result<crate::cgroups::Hierarchy, crate::cgroups::CgroupError>,
    runtimes: BTreeMap<String, oci::OciRuntime>,
    /// CNI plugin invocation, with its on-disk cache of attachments.
    pub cni: crate::network::Cni,
    /// The default CNI network, re-read as the config directory changes.
    pub network: crate::network::NetworkState,
    /// One mutation at a time per pod or container id.
    locks: KeyedLocks,
    cpu_samples: stats::CpuSamples,
    /// Container and image events (Docker's `/events`).
    pub events: events::Events,
    /// Ids of containers (and pods' infra) whose monitor this daemon started
    /// has just exited: the exit is recorded.
    pub monitor_exits: tokio::sync::broadcast::Sender<String>,
    /// Monitors this daemon started, by container id: still watched (None)
    /// or how one ended that recorded no exit (killed, panicked) — the
    /// reason its container is then reported with.
    monitor_fates: container::MonitorFates,
}

impl Engine {
    /// Opens the metadata store and the image stores, then reconciles them:
    /// content a crash left unreferenced is collected before anything is served.
    pub async fn open(config: Arc<Config>) -> Result<Self, EngineError> {
        for dir in [&config.root, &config.state] {
            std::fs::create_dir_all(dir).map_err(|source| EngineError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let store = Arc::new(Store::open(&config.root.join("metadata.redb"))?);
        let images = ImageService::open(config.clone(), store.clone())?;
        // Containers keep their rootfs layers even if their image was removed.
        for (id, c) in store.list::<records::ContainerRecord>(CONTAINERS)? {
            images.hold_snapshots(&id, c.snapshots);
        }
        let gc = images.gc().await?;
        let runtimes = config
            .runtime
            .handlers
            .iter()
            .map(|(name, h)| {
                let flags = match config.runtime.cgroup_driver {
                    crate::config::CgroupDriver::Systemd => vec!["--systemd-cgroup".to_string()],
                    crate::config::CgroupDriver::Cgroupfs => vec![],
                };
                let rt = oci::OciRuntime {
                    binary: h.path.clone(),
                    root: config.state.join("runtime").join(name),
                    flags,
                };
                (name.clone(), rt)
            })
            .collect();
        let cni = crate::network::Cni::new(
            config.cni.conf_dir.clone(),
            config.cni.bin_dirs.clone(),
            config.root.join("cni").join("cache"),
        );
        let network =
            crate::network::watch(config.cni.conf_dir.clone(), config.cni.bin_dirs.clone());
        let engine = Engine {
            config,
            store,
            images,
            host: HostFacts::detect(),
            cgroups: crate::cgroups::detect(),
            runtimes,
            cni,
            network,
            locks: KeyedLocks::default(),
            cpu_samples: stats::CpuSamples::default(),
            events: events::Events::default(),
            monitor_exits: tokio::sync::broadcast::channel(256).0,
            monitor_fates: Default::default(),
        };
        if let Some(p) = engine.runtime_problem() {
            warn!("containers cannot run on this host: {p}");
        }
        if let Err(e) = engine.reconcile_pods() {
            warn!(error = %e, "failed to reconcile pod sandboxes");
        }
        engine.collect_orphans().await;
        engine.reconcile_started().await;
        engine.release_orphan_networks().await;
        engine.check_pod_networks().await;
        engine.remove_empty_docker_pods().await;
        let containers = engine.containers().map(|c| c.len()).unwrap_or_else(|e| {
            warn!(error = %e, "failed to reconcile containers");
            0
        });
        info!(
            images = engine.images.list()?.len(),
            containers,
            stale_blobs = gc.blobs,
            stale_snapshots = gc.snapshots,
            "engine recovered"
        );
        Ok(engine)
    }

    /// The OCI runtime of a handler ("" = the default).
    pub fn oci(&self, handler: &str) -> Result<&oci::OciRuntime, Error> {
        let name = if handler.is_empty() {
            self.config.runtime.default_handler.as_str()
        } else {
            handler
        };
        self.runtimes
            .get(name)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown runtime handler {name:?}")))
    }

    /// `linux.cgroupsPath` for a container under a pod's cgroup parent.
    pub fn cgroups_path(&self, parent: &str, id: &str) -> String {
        crate::cgroups::container_path(self.config.runtime.cgroup_driver, parent, id)
    }

    /// Files holding the cgroup's OOM-kill counter.
    pub fn oom_files(&self, cgroups_path: &str) -> Vec<PathBuf> {
        self.cgroups
            .as_ref()
            .map(|h| h.oom_files(cgroups_path))
            .unwrap_or_default()
    }

    /// Why containers cannot run on this host, if they cannot.
    pub fn runtime_problem(&self) -> Option<String> {
        match &self.cgroups {
            Ok(h) => h.problem(),
            Err(e) => Some(format!("failed to read the cgroup layout: {e}")),
        }
    }
}
