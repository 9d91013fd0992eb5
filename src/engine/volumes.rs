//! Docker volumes as the engine keeps them: the store on disk
//! ([`crate::storage::volumes`]) plus what only the container records can
//! say — which containers use a volume, when a volume with driver options
//! is mounted, which anonymous volumes go with a container.
//!
//! A volume with driver options (`type=tmpfs`, `type=none o=bind`) is
//! mounted on its `_data` when the first container that uses it is created
//! (the runtime binds `_data` into the container at `crun create`, which
//! berth runs at container create, not at start), and unmounted when no
//! container record refers to it any more (container removal, a failed
//! create, start-up) or when the volume is removed. Docker unmounts at the
//! last user's *stop*; berth keeps the mount while a stopped user exists
//! because its restart re-runs `crun create` from the same bundle, and a
//! stop is seen on several paths (monitor exit, restart policy, daemon
//! restart) where a removal has one.
//!
//! A new, empty volume takes the image's content at its mount point when a
//! container is created with it (Docker's copy-up), unless the mount said
//! `nocopy` ([`NOCOPY_ANNOTATION`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use k8s_cri::v1 as cri;
use tracing::{info, warn};

use super::container::blocking;
use super::records::{new_id, ContainerRecord};
use super::{Engine, Error};
use crate::storage::volumes::{copy_up, VolumeError};
pub use crate::storage::volumes::{validate_name, Volume, ANONYMOUS_LABEL};

/// Container annotation: the container paths (JSON list) of volume mounts
/// that must not be filled from the image (`-v name:/p:nocopy`).
pub const NOCOPY_ANNOTATION: &str = "io.berth.volume.nocopy";

impl From<VolumeError> for Error {
    fn from(e: VolumeError) -> Self {
        match e {
            VolumeError::InvalidArgument(m) => Error::InvalidArgument(m),
            VolumeError::NotFound(m) => Error::NotFound(m),
            VolumeError::InUse(m) => Error::FailedPrecondition(m),
            VolumeError::Io(m) => Error::Internal(m),
        }
    }
}

/// A volume with what `docker system df` shows of it.
pub struct VolumeUsage {
    pub volume: Volume,
    /// Bytes of its data (0 for a bind or an unmounted tmpfs).
    pub size: u64,
    /// How many containers use it.
    pub ref_count: usize,
}

fn is_hex64(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Engine {
    /// The host directory of a `-v /host:/ctr` bind, made when missing as
    /// Docker does for `-v` (a `--mount type=bind` source must exist).
    pub fn ensure_bind_source(&self, src: &str) -> Result<std::path::PathBuf, Error> {
        let p = std::path::Path::new(src);
        if !p.exists() {
            std::fs::create_dir_all(p).map_err(|e| {
                Error::InvalidArgument(format!("failed to create bind source {src}: {e}"))
            })?;
        }
        Ok(p.to_path_buf())
    }

    /// The volume `name`.
    pub fn volume(&self, name: &str) -> Result<Volume, Error> {
        self.volumes
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("get {name}: no such volume")))
    }

    /// Every volume, by name.
    pub fn list_volumes(&self) -> Vec<Volume> {
        self.volumes.list()
    }

    /// Creates a volume (`docker volume create`); an existing one of that
    /// name is returned as it is. `options` are the local driver's.
    pub async fn create_volume(
        &self,
        name: Option<String>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<Volume, Error> {
        let name = name.filter(|n| !n.is_empty()).unwrap_or_else(new_id);
        validate_name(&name).map_err(|e| Error::InvalidArgument(format!("create {name}: {e}")))?;
        let store = self.volumes.clone();
        let v = blocking(move || Ok(store.ensure(&name, labels, options)?)).await?;
        info!(volume = %v.name, "volume ready");
        Ok(v)
    }

    /// The volume a container's `-v name:/p` names, made on first use; a
    /// 64-hex name is a container's anonymous volume and is labelled so.
    pub fn ensure_volume(&self, name: &str) -> Result<Volume, Error> {
        let mut labels = BTreeMap::new();
        if is_hex64(name) {
            labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
        }
        self.volumes
            .ensure(name, labels, BTreeMap::new())
            .map_err(|e| match e {
                VolumeError::InvalidArgument(m) => {
                    Error::InvalidArgument(format!("create {name}: {m}"))
                }
                e => e.into(),
            })
    }

    /// A new anonymous volume (`-v /data`, an image's `VOLUME`).
    pub fn create_anonymous_volume(&self) -> Result<Volume, Error> {
        self.ensure_volume(&new_id())
    }

    /// The volume a container's mount source lies in, if any.
    pub fn volume_of(&self, host_path: &str) -> Option<String> {
        self.volumes.volume_of(Path::new(host_path))
    }

    /// Volume name → ids of the containers (running or not) mounting
    /// something under it, as Docker counts references.
    pub fn volume_users(&self) -> Result<HashMap<String, Vec<String>>, Error> {
        Ok(users_of(&self.volumes, &self.containers()?))
    }

    /// Removes a volume no container uses; a missing one is fine with `force`.
    pub async fn remove_volume(&self, name: &str, force: bool) -> Result<(), Error> {
        if self.volumes.get(name).is_none() {
            if force {
                return Ok(());
            }
            return Err(Error::NotFound(format!("get {name}: no such volume")));
        }
        let users = self.volume_users()?;
        let (store, name) = (self.volumes.clone(), name.to_string());
        blocking(move || {
            store.delete(&name, &|n| users.get(n).cloned())?;
            info!(volume = %name, "removed volume");
            Ok(())
        })
        .await
    }

    /// Removes the unused volumes `keep` selects; their names and the
    /// bytes freed.
    pub async fn prune_volumes(
        &self,
        keep: impl Fn(&Volume) -> bool + Send + 'static,
    ) -> Result<(Vec<String>, u64), Error> {
        let users = self.volume_users()?;
        let store = self.volumes.clone();
        blocking(move || {
            let mut deleted = vec![];
            let mut reclaimed = 0u64;
            for v in store.list() {
                if users.contains_key(&v.name) || !keep(&v) {
                    continue;
                }
                match store.delete(&v.name, &|n| users.get(n).cloned()) {
                    Ok(n) => {
                        reclaimed += n;
                        deleted.push(v.name);
                    }
                    Err(e) => warn!(volume = %v.name, "failed to prune volume: {e}"),
                }
            }
            Ok((deleted, reclaimed))
        })
        .await
    }

    /// Every volume with its size and reference count (`docker system df`).
    pub async fn volume_usage(&self) -> Result<Vec<VolumeUsage>, Error> {
        let users = self.volume_users()?;
        let store = self.volumes.clone();
        blocking(move || {
            Ok(store
                .list()
                .into_iter()
                .map(|v| VolumeUsage {
                    size: store.size(&v),
                    ref_count: users.get(&v.name).map_or(0, Vec::len),
                    volume: v,
                })
                .collect())
        })
        .await
    }

    /// Removes the anonymous volumes among a (removed, or never made)
    /// container's `mounts` that no other container uses (`docker rm -v`,
    /// `--rm`). Named volumes stay.
    pub async fn remove_anonymous_volumes(&self, mounts: &[cri::Mount]) {
        let mut names: Vec<String> = mounts
            .iter()
            .filter_map(|m| self.volume_of(&m.host_path))
            .collect();
        names.dedup();
        for name in names {
            if !self.volumes.get(&name).is_some_and(|v| v.anonymous()) {
                continue;
            }
            match self.remove_volume(&name, true).await {
                Ok(()) => {}
                Err(Error::FailedPrecondition(m)) => {
                    info!(volume = %name, "anonymous volume kept: {m}")
                }
                Err(e) => {
                    warn!(volume = %name, error = %e, "failed to remove an anonymous volume")
                }
            }
        }
    }

    /// Before a container's runtime binds its mounts: mounts the volumes
    /// with driver options among `mounts`, and with `rootfs` (the
    /// container's, at create) fills each empty volume from the image at
    /// its mount point unless that path is in `nocopy`. On a failure,
    /// volumes no container uses are unmounted again.
    pub(crate) async fn prepare_volumes(
        &self,
        mounts: &[cri::Mount],
        rootfs: Option<&Path>,
        nocopy: Vec<String>,
    ) -> Result<(), Error> {
        let mut work = vec![];
        for m in mounts {
            let Some(name) = self.volume_of(&m.host_path) else {
                continue;
            };
            let v = self.volume(&name)?;
            work.push((v, m.container_path.clone()));
        }
        if work.is_empty() {
            return Ok(());
        }
        let store = self.volumes.clone();
        let rootfs = rootfs.map(Path::to_path_buf);
        let done = blocking(move || {
            for (v, dest) in &work {
                store.mount(v)?;
                if let Some(r) = &rootfs {
                    if !nocopy.contains(dest) {
                        copy_up(r, dest, &v.mountpoint)?;
                    }
                }
            }
            Ok(())
        })
        .await;
        if done.is_err() {
            self.release_unused_volumes().await;
        }
        done
    }

    /// Unmounts the volumes with driver options that no container uses.
    pub(crate) async fn release_unused_volumes(&self) {
        let users = match self.volume_users() {
            Ok(u) => u,
            Err(e) => {
                warn!(error = %e, "failed to list the users of volumes");
                return;
            }
        };
        let store = self.volumes.clone();
        let r = blocking(move || {
            for v in store.list() {
                if v.is_mount() && !users.contains_key(&v.name) {
                    if let Err(e) = store.unmount(&v) {
                        warn!(volume = %v.name, error = %e, "failed to unmount an unused volume");
                    }
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = r {
            warn!(error = %e, "failed to release unused volumes");
        }
    }
}

/// Volume name → ids of the containers mounting something under it.
fn users_of(
    store: &crate::storage::volumes::VolumeStore,
    containers: &[ContainerRecord],
) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for c in containers {
        for m in &c.config.mounts {
            if let Some(name) = store.volume_of(Path::new(&m.host_path)) {
                let ids = out.entry(name).or_default();
                if !ids.contains(&c.id) {
                    ids.push(c.id.clone());
                }
            }
        }
    }
    out
}

/// The `nocopy` paths a container's annotations name.
pub(crate) fn nocopy_paths(annotations: &HashMap<String, String>) -> Vec<String> {
    annotations
        .get(NOCOPY_ANNOTATION)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}
