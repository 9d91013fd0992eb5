//! Docker volumes on disk: directories berth keeps at
//! `<root>/volumes/<name>/_data`, with their labels, driver options and
//! creation time in `meta.json` beside `_data` (written atomically). One left
//! by an older berth without `meta.json` takes its creation time from the
//! directory; a 64-hex name without metadata was a container's anonymous
//! volume.
//!
//! Only the `local` driver exists. Its options are Docker's: `type`, `o` and
//! `device` make the volume a mount (`type=tmpfs`, or `type=none o=bind
//! device=/host/dir`) put on `_data` by [`VolumeStore::mount`] and taken off
//! by [`VolumeStore::unmount`]; the engine decides when. Everything here
//! blocks.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

/// The label Docker puts on anonymous volumes.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Errors of volume operations, classed as the engine's are.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InUse(String),
    #[error("{0}")]
    Io(String),
}

/// What `meta.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
struct Meta {
    /// Unix nanoseconds.
    created_at: i64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// The local driver's options (`type`, `o`, `device`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    options: BTreeMap<String, String>,
}

/// One volume as found on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub name: String,
    pub mountpoint: PathBuf,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub labels: BTreeMap<String, String>,
    /// The local driver's options; empty for a plain directory.
    pub options: BTreeMap<String, String>,
}

impl Volume {
    /// Carries Docker's anonymous-volume label.
    pub fn anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }

    /// Its data is a mount of its own (driver options were given).
    pub fn is_mount(&self) -> bool {
        self.options.contains_key("type")
    }
}

/// `[a-zA-Z0-9][a-zA-Z0-9_.-]+`: the names Docker's local driver accepts.
pub fn validate_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if !ok {
        return Err(format!(
            "\"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        ));
    }
    if b.len() < 2 {
        return Err(
            "volume name is too short, names should be at least two alphanumeric characters".into(),
        );
    }
    Ok(())
}

fn is_hex64(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Mount flags named in `o`, and what is left for the file system's data.
fn split_o(o: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = vec![];
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        let (set, clear) = match opt {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            other => {
                data.push(other);
                continue;
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, data.join(","))
}

/// The file systems the kernel knows (`/proc/filesystems`).
fn kernel_filesystems() -> Vec<String> {
    std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

/// Checks the local driver's options as Docker's does at create: only
/// `type`, `o` and `device`; `type` and `device` together; a type the kernel
/// knows (or `none` with a bind); a bind's device an existing absolute path.
pub fn validate_options(opts: &BTreeMap<String, String>) -> Result<(), String> {
    for k in opts.keys() {
        if !matches!(k.as_str(), "type" | "o" | "device") {
            return Err(format!(
                "invalid option key: {k:?} (the local driver takes type, o and device)"
            ));
        }
    }
    if opts.is_empty() {
        return Ok(());
    }
    let typ = opts.get("type").map(String::as_str).unwrap_or("");
    let device = opts.get("device").map(String::as_str).unwrap_or("");
    let o = opts.get("o").map(String::as_str).unwrap_or("");
    if typ.is_empty() {
        return Err("missing required option: \"type\"".into());
    }
    if device.is_empty() {
        return Err("missing required option: \"device\"".into());
    }
    let (flags, _) = split_o(o);
    if flags.contains(MsFlags::MS_BIND) {
        let p = Path::new(device);
        if !p.is_absolute() {
            return Err(format!(
                "invalid bind device {device:?}: it must be an absolute host path"
            ));
        }
        if !p.exists() {
            return Err(format!(
                "failed to mount local volume: mount {device}: no such file or directory"
            ));
        }
    } else if typ == "none" {
        return Err("type \"none\" needs o=bind (or rbind)".into());
    } else if !kernel_filesystems().iter().any(|f| f == typ) {
        return Err(format!(
            "failed to mount local volume: unknown filesystem type {typ:?}"
        ));
    }
    Ok(())
}

/// The volumes under one `<root>/volumes` directory.
pub struct VolumeStore {
    dir: PathBuf,
    /// Serializes creation, removal, mounting and pruning, so that a prune
    /// never deletes a volume another request is creating at that moment.
    lock: Mutex<()>,
}

impl VolumeStore {
    pub fn new(root: &Path) -> VolumeStore {
        VolumeStore {
            dir: root.join("volumes"),
            lock: Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `<root>/volumes`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn vol_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The volume a host path lies in, if any.
    pub fn volume_of(&self, host: &Path) -> Option<String> {
        let rest = host.strip_prefix(&self.dir).ok()?;
        let first = rest.components().next()?;
        Some(first.as_os_str().to_str()?.to_string())
    }

    /// The volume called `name`, if it exists (an invalid name never does).
    pub fn get(&self, name: &str) -> Option<Volume> {
        validate_name(name).ok()?;
        let dir = self.vol_dir(name);
        let data = dir.join("_data");
        let md = std::fs::metadata(&data).ok().filter(|m| m.is_dir())?;
        let meta = std::fs::read(dir.join("meta.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
            .unwrap_or_else(|| {
                let created_at = md
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos() as i64)
                    .unwrap_or(0);
                let mut labels = BTreeMap::new();
                if is_hex64(name) {
                    labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
                }
                Meta {
                    created_at,
                    labels,
                    options: BTreeMap::new(),
                }
            });
        Some(Volume {
            name: name.to_string(),
            mountpoint: data,
            created_at: meta.created_at,
            labels: meta.labels,
            options: meta.options,
        })
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<Volume> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        let mut out: Vec<Volume> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| self.get(n)))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Returns the volume `name`, creating it with `labels` and `options`
    /// when missing (the options checked first).
    pub fn ensure(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<Volume, VolumeError> {
        validate_name(name).map_err(VolumeError::InvalidArgument)?;
        let _g = self.lock();
        if let Some(v) = self.get(name) {
            return Ok(v);
        }
        validate_options(&options)
            .map_err(|e| VolumeError::InvalidArgument(format!("create {name}: {e}")))?;
        let dir = self.vol_dir(name);
        std::fs::create_dir_all(dir.join("_data"))
            .map_err(|e| VolumeError::Io(format!("failed to create volume directory: {e}")))?;
        let meta = Meta {
            created_at: now_nanos(),
            labels,
            options,
        };
        let json = serde_json::to_vec(&meta)
            .map_err(|e| VolumeError::Io(format!("failed to encode volume metadata: {e}")))?;
        write_atomic(&dir.join("meta.json"), &json)
            .map_err(|e| VolumeError::Io(format!("failed to write volume metadata: {e}")))?;
        self.get(name)
            .ok_or_else(|| VolumeError::Io("volume vanished while being created".into()))
    }

    /// Puts a volume with driver options on its `_data` (nothing for a plain
    /// one, or one mounted already).
    pub fn mount(&self, v: &Volume) -> Result<(), VolumeError> {
        let _g = self.lock();
        if !v.is_mount() || super::is_mounted(&v.mountpoint) {
            return Ok(());
        }
        validate_options(&v.options)
            .map_err(|e| VolumeError::InvalidArgument(format!("volume {}: {e}", v.name)))?;
        let get = |k: &str| v.options.get(k).map(String::as_str).unwrap_or("");
        let (flags, data) = split_o(get("o"));
        let typ = get("type");
        let data = (!data.is_empty()).then_some(data.as_str());
        let r = if flags.contains(MsFlags::MS_BIND) {
            // A bind takes its flags only on a remount.
            mount(
                Some(get("device")),
                &v.mountpoint,
                None::<&str>,
                flags & (MsFlags::MS_BIND | MsFlags::MS_REC),
                None::<&str>,
            )
            .and_then(|()| {
                let rest = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
                if rest.is_empty() {
                    return Ok(());
                }
                mount(
                    None::<&str>,
                    &v.mountpoint,
                    None::<&str>,
                    MsFlags::MS_REMOUNT | MsFlags::MS_BIND | rest,
                    None::<&str>,
                )
                .inspect_err(|_| {
                    let _ = umount2(&v.mountpoint, MntFlags::MNT_DETACH);
                })
            })
        } else {
            mount(Some(get("device")), &v.mountpoint, Some(typ), flags, data)
        };
        r.map_err(|e| {
            VolumeError::InvalidArgument(format!(
                "failed to mount local volume {}: mount {}:{} (type {typ}, options {:?}): {e}",
                v.name,
                get("device"),
                v.mountpoint.display(),
                get("o"),
            ))
        })
    }

    /// Takes a volume's own mount off its `_data`.
    pub fn unmount(&self, v: &Volume) -> Result<(), VolumeError> {
        let _g = self.lock();
        self.unmount_locked(v)
    }

    fn unmount_locked(&self, v: &Volume) -> Result<(), VolumeError> {
        while super::is_mounted(&v.mountpoint) {
            umount2(&v.mountpoint, MntFlags::empty()).map_err(|e| {
                VolumeError::InUse(format!("failed to unmount volume {}: {e}", v.name))
            })?;
        }
        Ok(())
    }

    /// Deletes a volume (unmounted first, so a bind's host files are never
    /// touched); the bytes its data held. `in_use` is asked under the lock.
    pub fn delete(
        &self,
        name: &str,
        in_use: &dyn Fn(&str) -> Option<Vec<String>>,
    ) -> Result<u64, VolumeError> {
        let _g = self.lock();
        let v = self
            .get(name)
            .ok_or_else(|| VolumeError::NotFound(format!("get {name}: no such volume")))?;
        if let Some(ids) = in_use(name) {
            return Err(VolumeError::InUse(format!(
                "remove {name}: volume is in use - [{}]",
                ids.join(" ")
            )));
        }
        self.unmount_locked(&v)?;
        let size = if v.is_mount() {
            0
        } else {
            super::usage::dir_usage(&v.mountpoint).apparent_bytes
        };
        let dir = self.vol_dir(name);
        // Out of sight first: a crash mid-delete leaves no half volume.
        let gone = self.dir.join(format!(".removing-{name}"));
        std::fs::rename(&dir, &gone)
            .and_then(|()| std::fs::remove_dir_all(&gone))
            .map_err(|e| VolumeError::Io(format!("remove {name}: {e}")))?;
        Ok(size)
    }

    /// Bytes a volume holds (0 for one mounted from elsewhere: its bytes are
    /// not berth's).
    pub fn size(&self, v: &Volume) -> u64 {
        if v.is_mount() && !super::is_mounted(&v.mountpoint) {
            return 0;
        }
        if v.options
            .get("o")
            .is_some_and(|o| split_o(o).0.contains(MsFlags::MS_BIND))
        {
            return 0;
        }
        super::usage::dir_usage(&v.mountpoint).apparent_bytes
    }

    /// Sweeps removals a crash interrupted.
    pub fn sweep(&self) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(".removing-")
                && !super::is_mounted(&e.path().join("_data"))
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Copies what the image holds at `dest` (a path in the container) from
/// `rootfs` into an empty volume's `data`, with owners and modes, as Docker
/// populates a new volume; the directory's own owner and mode too. A path
/// missing from the image copies nothing; a non-empty volume is left alone.
pub fn copy_up(rootfs: &Path, dest: &str, data: &Path) -> Result<(), VolumeError> {
    let io = |e: std::io::Error| {
        VolumeError::Io(format!(
            "failed to copy {dest} of the image into volume {}: {e}",
            data.display()
        ))
    };
    let parts = match super::resolve::split_entry_path(dest.trim_start_matches('/').as_bytes()) {
        Ok(p) => p,
        Err(_) => return Ok(()),
    };
    let Ok(src) = super::resolve::resolve_dir(rootfs, &parts, false) else {
        return Ok(());
    };
    if !src.is_dir() || std::fs::read_dir(data).map_err(io)?.next().is_some() {
        return Ok(());
    }
    copy_tree(&src, data).map_err(io)?;
    copy_owner_mode(&src, data).map_err(io)
}

fn copy_owner_mode(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::symlink_metadata(src)?;
    std::os::unix::fs::lchown(dst, Some(md.uid()), Some(md.gid()))?;
    if !md.file_type().is_symlink() {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    Ok(())
}

/// Copies the entries of `src` into the existing directory `dst`: regular
/// files, directories and symlinks (other kinds are skipped).
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    let mut stack = vec![(src.to_path_buf(), dst.to_path_buf())];
    while let Some((from, to)) = stack.pop() {
        for e in std::fs::read_dir(&from)? {
            let e = e?;
            let (s, d) = (e.path(), to.join(e.file_name()));
            let ft = e.file_type()?;
            if ft.is_dir() {
                std::fs::create_dir(&d)?;
                stack.push((s.clone(), d.clone()));
            } else if ft.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&s)?, &d)?;
            } else if ft.is_file() {
                std::fs::copy(&s, &d)?;
            } else {
                continue;
            }
            copy_owner_mode(&s, &d)?;
        }
    }
    Ok(())
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Writes `path` through a temporary file and a rename, so readers see the
/// old content or the new, never a torn one.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_are_validated_like_docker() {
        for ok in ["v1", "my-vol_2.x", "0a", &"f".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-v", ".a", "a/b", "../x", "a b", "é1", "v:1"] {
            let e = validate_name(bad).unwrap_err();
            assert!(e.contains("includes invalid characters"), "{bad}: {e}");
        }
        assert!(validate_name("a").unwrap_err().contains("too short"));
    }

    #[test]
    fn options_are_checked() {
        assert!(validate_options(&opts(&[])).is_ok());
        assert!(validate_options(&opts(&[("type", "tmpfs"), ("device", "tmpfs")])).is_ok());
        assert!(
            validate_options(&opts(&[("type", "none"), ("o", "bind"), ("device", "/")])).is_ok()
        );
        let e = validate_options(&opts(&[("size", "1")])).unwrap_err();
        assert!(e.contains("invalid option key"), "{e}");
        let e = validate_options(&opts(&[("type", "tmpfs")])).unwrap_err();
        assert!(e.contains("\"device\""), "{e}");
        let e = validate_options(&opts(&[("type", "nosuchfs"), ("device", "x")])).unwrap_err();
        assert!(e.contains("unknown filesystem type"), "{e}");
        let e = validate_options(&opts(&[
            ("type", "none"),
            ("o", "bind"),
            ("device", "/no/such/dir"),
        ]))
        .unwrap_err();
        assert!(e.contains("no such file"), "{e}");
        let e = validate_options(&opts(&[("type", "none"), ("device", "/")])).unwrap_err();
        assert!(e.contains("o=bind"), "{e}");
    }

    #[test]
    fn o_splits_into_flags_and_data() {
        let (f, d) = split_o("size=10m,uid=1000,ro,noexec");
        assert_eq!(f, MsFlags::MS_RDONLY | MsFlags::MS_NOEXEC);
        assert_eq!(d, "size=10m,uid=1000");
        let (f, d) = split_o("bind,ro,rw");
        assert_eq!(f, MsFlags::MS_BIND);
        assert_eq!(d, "");
    }

    #[test]
    fn store_creates_lists_and_reads_old_volumes() {
        let root = tempfile::tempdir().unwrap();
        let s = VolumeStore::new(root.path());
        assert!(s.list().is_empty());
        let labels: BTreeMap<_, _> = [("a".to_string(), "b".to_string())].into();
        let v = s.ensure("v1", labels.clone(), BTreeMap::new()).unwrap();
        assert_eq!(v.labels, labels);
        assert_eq!(v.mountpoint, root.path().join("volumes/v1/_data"));
        assert!(v.mountpoint.is_dir() && !v.is_mount());
        // Creating again returns the first one unchanged.
        assert_eq!(s.ensure("v1", BTreeMap::new(), BTreeMap::new()).unwrap(), v);
        assert!(s.ensure("../x", BTreeMap::new(), BTreeMap::new()).is_err());
        let bad = s.ensure("v2", BTreeMap::new(), opts(&[("type", "tmpfs")]));
        assert!(matches!(bad, Err(VolumeError::InvalidArgument(_))));
        assert!(s.get("v2").is_none(), "a refused volume is not made");
        let t = s
            .ensure(
                "v3",
                BTreeMap::new(),
                opts(&[("type", "tmpfs"), ("device", "tmpfs")]),
            )
            .unwrap();
        assert!(t.is_mount());
        assert_eq!(s.get("v3").unwrap().options["type"], "tmpfs");
        // A volume directory without metadata (an older berth's).
        let hex = "0123456789abcdef".repeat(4);
        std::fs::create_dir_all(root.path().join("volumes").join(&hex).join("_data")).unwrap();
        std::fs::create_dir_all(root.path().join("volumes/stray")).unwrap();
        let all = s.list();
        assert_eq!(
            all.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            [hex.as_str(), "v1", "v3"]
        );
        assert!(all[0].anonymous() && all[0].created_at > 0);
        assert!(!all[1].anonymous());
        let e = s.delete("v1", &|_| Some(vec!["c1".into()])).unwrap_err();
        assert!(e.to_string().contains("in use - [c1]"), "{e}");
        s.delete("v1", &|_| None).unwrap();
        assert!(s.get("v1").is_none());
        assert!(!root.path().join("volumes/v1").exists());
        assert!(matches!(
            s.delete("v1", &|_| None),
            Err(VolumeError::NotFound(_))
        ));
    }

    #[test]
    fn host_paths_map_to_volumes() {
        let s = VolumeStore::new(Path::new("/r"));
        assert_eq!(
            s.volume_of(Path::new("/r/volumes/v1/_data")).as_deref(),
            Some("v1")
        );
        assert_eq!(s.volume_of(Path::new("/r/volumesx/v1")), None);
        assert_eq!(s.volume_of(Path::new("/tmp/v1")), None);
    }

    #[test]
    fn copy_up_fills_only_an_empty_volume() {
        let root = tempfile::tempdir().unwrap();
        let rootfs = root.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("data/sub")).unwrap();
        std::fs::write(rootfs.join("data/sub/f"), "hello").unwrap();
        std::os::unix::fs::symlink("sub/f", rootfs.join("data/link")).unwrap();
        let vol = root.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        copy_up(&rootfs, "/data", &vol).unwrap();
        assert_eq!(std::fs::read_to_string(vol.join("sub/f")).unwrap(), "hello");
        assert_eq!(
            std::fs::read_link(vol.join("link")).unwrap(),
            Path::new("sub/f")
        );
        // Not empty any more: a second copy changes nothing.
        std::fs::write(rootfs.join("data/new"), "x").unwrap();
        copy_up(&rootfs, "/data", &vol).unwrap();
        assert!(!vol.join("new").exists());
        // A path the image lacks copies nothing.
        let other = root.path().join("other");
        std::fs::create_dir(&other).unwrap();
        copy_up(&rootfs, "/missing", &other).unwrap();
        assert!(std::fs::read_dir(&other).unwrap().next().is_none());
    }
}
