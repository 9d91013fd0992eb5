//! The engine owns the model — images, pod sandboxes, containers — and is the
//! only place that changes state. The CRI and Docker front doors call it.
//!
//! Start-up (as containerd does it): open the stores, reconcile the records
//! with what is really running, collect unreferenced content; only then are
//! the sockets opened.

pub mod attach;
pub mod build;
pub mod checkpoint;
pub mod commit;
pub mod container;
pub mod dns;
pub mod docker;
pub mod events;
pub mod exec;
pub mod execs;
pub mod exits;
pub mod features;
pub mod health;
pub mod host;
#[cfg(test)]
mod host_fake;
#[cfg(test)]
mod host_tests;
pub mod images;
pub mod inspect;
pub mod joined;
pub mod logfiles;
mod migrate;
pub mod networks;
pub mod oci;
mod orphans;
pub mod pod;
pub mod process;
pub mod records;
pub mod rootfs;
pub mod sampler;
pub mod samples;
pub mod stats;
pub mod user_networks;
pub mod volumes;

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

/// What kind of failure an engine error is: the one thing each front door
/// maps onto its wire (gRPC code, HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    InvalidArgument,
    FailedPrecondition,
    AlreadyExists,
    /// Refused by a rule of the daemon's (Docker's 403).
    PermissionDenied,
    Unauthenticated,
    /// Content the caller supplied or pointed at is bad (digest mismatch,
    /// an unsafe tar, a bad manifest).
    BadContent,
    /// Something the daemon depends on is not there now (a registry).
    Unavailable,
    Internal,
}

/// Errors of engine operations. The cause of a failure is kept as the
/// error's source (not flattened into the text), so each front door can log
/// the whole chain once and classify by [`Error::kind`].
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
    /// Refused by a rule of the daemon's (a subnet that overlaps, a network
    /// still in use): Docker's 403.
    #[error("{0}")]
    Forbidden(String),
    #[error("failed to {what}: {message}")]
    Runtime { what: String, message: String },
    #[error("{0}")]
    Internal(String),
    /// A host operation failed: what was being done, and the OS's error.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
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

    /// A failed host operation, its OS error kept as the source.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The class of this error, for mapping onto gRPC codes and HTTP statuses.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::InvalidArgument(_) | Error::Spec(_) => ErrorKind::InvalidArgument,
            Error::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            Error::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Error::Forbidden(_) => ErrorKind::PermissionDenied,
            Error::Image(i) => match i.kind() {
                image::Kind::NotFound => ErrorKind::NotFound,
                image::Kind::InvalidArgument => ErrorKind::InvalidArgument,
                image::Kind::Unauthenticated => ErrorKind::Unauthenticated,
                image::Kind::PermissionDenied => ErrorKind::PermissionDenied,
                image::Kind::BadContent => ErrorKind::BadContent,
                image::Kind::Unavailable => ErrorKind::Unavailable,
                image::Kind::Internal => ErrorKind::Internal,
            },
            Error::Runtime { .. } | Error::Internal(_) | Error::Io { .. } | Error::Store(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// The error and its causes, `a: b: c`, each said once: what the front
    /// doors send and log.
    pub fn chain(&self) -> String {
        crate::cri::chain(self)
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

/// The small `berth-monitor` binary next to berthd, when it is there.
fn small_binary() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("berth-monitor"))
        .filter(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The small `berth-monitor` binary next to berthd when it is there (a
/// fraction of berthd's memory per container), else berthd itself as
/// `berthd monitor` through /proc/self/exe (the running image, valid even if
/// the file was replaced since start-up).
fn monitor_program(small: Option<&PathBuf>) -> (PathBuf, &'static str) {
    match small {
        Some(p) => {
            info!(monitor = %p.display(), "monitors and pods' infra processes run as berth-monitor");
            (p.clone(), "berth-monitor")
        }
        None => (PathBuf::from("/proc/self/exe"), "berthd"),
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
    #[error("failed to migrate the records: {0}")]
    Migrate(#[source] Error),
}

/// The daemon's state.
pub struct Engine {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub images: ImageService,
    /// Docker volumes (`<root>/volumes`).
    pub(crate) volumes: Arc<crate::storage::volumes::VolumeStore>,
    pub host: HostFacts,
    /// The host's cgroup hierarchies, read at start-up.
    pub cgroups: Result<crate::cgroups::Hierarchy, crate::cgroups::CgroupError>,
    /// What [`Engine::runtime_problem`] found last, to log each change once.
    runtime_problem_seen: std::sync::Mutex<Option<String>>,
    runtimes: BTreeMap<String, oci::OciRuntime>,
    /// The life-cycle calls of each handler's runtime (see [`host::Runtime`]).
    lifecycle: BTreeMap<String, Arc<dyn host::Runtime>>,
    /// The host operations the life cycle makes (see [`host`]).
    pub(crate) ops: host::HostOps,
    /// What each runtime handler can do (`Status.runtime_handlers`).
    pub handler_features: BTreeMap<String, features::HandlerFeatures>,
    /// CNI plugin invocation, with its on-disk cache of attachments.
    pub cni: crate::network::Cni,
    /// The default CNI network, re-read as the config directory changes.
    pub network: crate::network::NetworkState,
    /// One mutation at a time per pod or container id.
    locks: KeyedLocks,
    cpu_samples: stats::CpuSamples,
    /// Container and image events (Docker's `/events`).
    pub events: events::Events,
    /// Background parts of container removals, by pod id (see
    /// [`Engine::remove_container`]).
    removals: std::sync::Mutex<std::collections::HashMap<String, Vec<tokio::task::JoinHandle<()>>>>,
    /// Containers whose `crun start` is running (see [`Engine::start_container`]).
    starting: std::sync::Mutex<std::collections::HashSet<String>>,
    /// `berth-monitor` next to berthd: it also runs as pods' infra process.
    pub(crate) small_binary: Option<PathBuf>,
    /// The program monitors run as, and its argv[0] (see [`monitor_program`]).
    pub(crate) monitor_program: (PathBuf, &'static str),
    /// The node's pod CIDR(s) from UpdateRuntimeConfig, comma-separated as
    /// the kubelet sends them.
    pod_cidr: std::sync::Mutex<Option<String>>,
    /// Ids of containers (and pods' infra) whose monitor this daemon started
    /// has just exited: the exit is recorded.
    pub monitor_exits: tokio::sync::broadcast::Sender<String>,
    /// Monitors this daemon started, by container id: still watched (None)
    /// or how one ended that recorded no exit (killed, panicked) — the
    /// reason its container is then reported with.
    monitor_fates: container::MonitorFates,
    /// Serialises user network creates and removals (unique names and
    /// subnets, the in-use check against a removal).
    network_changes: tokio::sync::Mutex<()>,
    /// Held while an exit is recorded and its `die` published, so that an
    /// operation that finds the container exited publishes after `die`.
    exit_order: std::sync::Mutex<()>,
    /// Attaches waiting for a container's next monitor (see [`attach`]).
    attach_waiters: attach::AttachWaiters,
    /// Exec instances of both doors (see [`execs`]).
    execs: execs::ExecInstances,
    /// The embedded DNS server of user networks (see [`dns`]).
    pub(crate) dns: crate::network::dns::Dns,
}

impl Engine {
    /// Opens the metadata store and the image stores, then reconciles them:
    /// content a crash left unreferenced is collected before anything is served.
    pub async fn open(config: Arc<Config>) -> Result<Self, EngineError> {
        Self::open_with(config, host::HostOps::real()).await
    }

    /// [`Engine::open`] on the host operations `ops` (fakes in unit tests).
    pub(crate) async fn open_with(
        config: Arc<Config>,
        ops: host::HostOps,
    ) -> Result<Self, EngineError> {
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
            images.hold_snapshots(&id, c.held_snapshots());
        }
        let gc = images.gc().await?;
        let runtimes: BTreeMap<String, oci::OciRuntime> = config
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
        let handler_features = ops.probe.features(&runtimes).await;
        let lifecycle = runtimes
            .iter()
            .map(|(name, rt)| (name.clone(), ops.runtime_of(rt)))
            .collect();
        let cni = crate::network::Cni::new(
            config.cni.conf_dir.clone(),
            config.cni.bin_dirs.clone(),
            config.root.join("cni").join("cache"),
        )
        .with_builtin_network(config.cni.builtin_network);
        let network = crate::network::watch(
            config.cni.conf_dir.clone(),
            config.cni.bin_dirs.clone(),
            config.cni.builtin_network,
        );
        let small = small_binary();
        let dns = crate::network::dns::Dns::new(&config.docker.dns.upstreams);
        let volumes = Arc::new(crate::storage::volumes::VolumeStore::new(&config.root));
        volumes.sweep();
        let engine = Engine {
            volumes,
            config,
            store,
            images,
            host: ops.probe.facts(),
            cgroups: crate::cgroups::detect(),
            runtime_problem_seen: std::sync::Mutex::new(None),
            monitor_program: monitor_program(small.as_ref()),
            small_binary: small,
            removals: Default::default(),
            starting: Default::default(),
            runtimes,
            lifecycle,
            ops,
            handler_features,
            cni,
            network,
            locks: KeyedLocks::default(),
            cpu_samples: stats::CpuSamples::default(),
            events: events::Events::default(),
            monitor_exits: tokio::sync::broadcast::channel(256).0,
            pod_cidr: std::sync::Mutex::new(None),
            monitor_fates: Default::default(),
            network_changes: Default::default(),
            exit_order: Default::default(),
            attach_waiters: Default::default(),
            execs: Default::default(),
            dns,
        };
        engine.migrate_records().map_err(EngineError::Migrate)?;
        // Logs the problem, if there is one.
        engine.runtime_problem();
        if let Err(e) = engine.reconcile_pods() {
            warn!(error = %e, "failed to reconcile pod sandboxes");
        }
        engine.collect_orphans().await;
        engine.reconcile_started().await;
        engine.release_orphan_networks().await;
        engine.check_pod_networks().await;
        engine.remove_empty_docker_pods().await;
        engine.restore_dns();
        engine.release_unused_volumes().await;
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

    /// A runtime handler's name ("" = the default handler).
    pub(crate) fn handler_name<'a>(&'a self, handler: &'a str) -> &'a str {
        if handler.is_empty() {
            self.config.runtime.default_handler.as_str()
        } else {
            handler
        }
    }

    /// The OCI runtime of a handler ("" = the default).
    pub fn oci(&self, handler: &str) -> Result<&oci::OciRuntime, Error> {
        let name = self.handler_name(handler);
        self.runtimes
            .get(name)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown runtime handler {name:?}")))
    }

    /// The platform PullImage fetches for a runtime handler ("" = the
    /// default): the handler's configured `platform`, else the host's.
    pub fn pull_platform(&self, handler: &str) -> Result<crate::image::manifest::Platform, Error> {
        let name = self.handler_name(handler);
        let h =
            self.config.runtime.handlers.get(name).ok_or_else(|| {
                Error::InvalidArgument(format!("unknown runtime handler {name:?}"))
            })?;
        match &h.platform {
            // Validated when the config was read.
            Some(p) => crate::image::manifest::Platform::parse(p).map_err(Error::InvalidArgument),
            None => Ok(crate::image::manifest::host_platform()),
        }
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

    /// Records the node's pod CIDR (UpdateRuntimeConfig): each CIDR must
    /// parse; pods made from now on hand the first to CNI as `ipRanges`.
    pub fn set_pod_cidr(&self, cidr: &str) -> Result<(), Error> {
        let cidr = cidr.trim();
        for part in cidr.split(',').filter(|_| !cidr.is_empty()) {
            if !valid_cidr(part.trim()) {
                return Err(Error::InvalidArgument(format!("bad pod CIDR {part:?}")));
            }
        }
        let mut cur = self.pod_cidr.lock().unwrap_or_else(|p| p.into_inner());
        let new = (!cidr.is_empty()).then(|| cidr.to_string());
        if *cur != new {
            info!(pod_cidr = %cidr, "pod CIDR set by the kubelet");
        }
        *cur = new;
        Ok(())
    }

    /// The first pod CIDR the kubelet gave, if any.
    pub fn pod_cidr(&self) -> Option<String> {
        let cur = self.pod_cidr.lock().unwrap_or_else(|p| p.into_inner());
        cur.as_deref()
            .and_then(|c| c.split(',').next())
            .map(|c| c.trim().to_string())
    }

    /// Why containers cannot run on this host, if they cannot. The layout is
    /// read afresh each time (a few small /proc files), so a host fixed while
    /// berthd runs (e.g. hugetlb mounted as v1) turns RuntimeReady without a
    /// restart; each change is logged once.
    pub fn runtime_problem(&self) -> Option<String> {
        let now = match crate::cgroups::detect() {
            Ok(h) => h.problem(),
            Err(e) => Some(format!("failed to read the cgroup layout: {e}")),
        };
        let mut seen = self
            .runtime_problem_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *seen != now {
            match &now {
                Some(p) => warn!("containers cannot run on this host: {p}"),
                None if seen.is_some() => info!("the cgroup layout is usable now"),
                None => {}
            }
            seen.clone_from(&now);
        }
        now
    }
}

/// Asks every handler's runtime what it can do, all at once, off the async workers.
async fn detect_features(
    runtimes: &BTreeMap<String, oci::OciRuntime>,
) -> BTreeMap<String, features::HandlerFeatures> {
    let kernel = features::Kernel::detect();
    let probes: Vec<_> = runtimes
        .iter()
        .map(|(name, rt)| {
            let (name, binary) = (name.clone(), rt.binary.clone());
            tokio::task::spawn_blocking(move || (name, features::detect(&binary, kernel)))
        })
        .collect();
    let mut out = BTreeMap::new();
    for p in probes {
        if let Ok((name, f)) = p.await {
            info!(handler = %name, features = ?f, "runtime handler features");
            out.insert(name, f);
        }
    }
    out
}

/// `10.244.1.0/24`, `fd00::/64`.
fn valid_cidr(s: &str) -> bool {
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(len) = len.parse::<u8>() else {
        return false;
    };
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => len <= 32,
        Ok(std::net::IpAddr::V6(_)) => len <= 128,
        Err(_) => false,
    }
}

#[cfg(test)]
mod cidr_tests {
    #[test]
    fn cidrs() {
        assert!(super::valid_cidr("10.244.1.0/24"));
        assert!(super::valid_cidr("fd00::/64"));
        assert!(!super::valid_cidr("10.244.1.0/33"));
        assert!(!super::valid_cidr("10.244.1.0"));
        assert!(!super::valid_cidr("nonsense/8"));
    }
}
