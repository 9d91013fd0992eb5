//! Device nodes for a container and the device-cgroup rules that let it use them.
//!
//! The spec needs each device's type and major/minor numbers, which only the
//! host knows; [`HostDevices`] is that one question to the host, so the rest
//! is testable with a fake.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use k8s_cri::v1::Device as CriDevice;
use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};

use super::SpecError;

/// Character or block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Char,
    Block,
}

/// A device node as found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    pub path: PathBuf,
    pub kind: DeviceKind,
    pub major: i64,
    pub minor: i64,
    /// Permission bits of the node.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Reads device nodes on the host.
pub trait HostDevices {
    /// The device at `path` (symlinks followed), or every device below it
    /// when `path` is a directory.
    fn lookup(&self, path: &Path) -> io::Result<Vec<HostDevice>>;
    /// Every device under the host's `/dev` that a privileged container gets.
    fn all(&self) -> io::Result<Vec<HostDevice>>;
}

/// [`HostDevices`] backed by the real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostDevFs;

/// Directories under `/dev` a privileged container must not inherit: its own
/// ptys, shm and mqueue are mounted fresh; the rest are other tools' state.
const SKIPPED_DEV_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

fn device_from(path: &Path, meta: &std::fs::Metadata) -> Option<HostDevice> {
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        DeviceKind::Char
    } else if ft.is_block_device() {
        DeviceKind::Block
    } else {
        return None;
    };
    let rdev = meta.rdev();
    Some(HostDevice {
        path: path.to_path_buf(),
        kind,
        major: nix::sys::stat::major(rdev) as i64,
        minor: nix::sys::stat::minor(rdev) as i64,
        mode: meta.mode() & 0o777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// Collects device nodes below `dir` without following symlinks.
fn walk(dir: &Path, top: bool, out: &mut Vec<HostDevice>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            let name = entry.file_name();
            if top && SKIPPED_DEV_DIRS.iter().any(|s| name == *s) {
                continue;
            }
            walk(&path, false, out)?;
        } else if let Some(dev) = device_from(&path, &meta) {
            // The console is the runtime's to provide, tied to the container's tty.
            if !(top && entry.file_name() == "console") {
                out.push(dev);
            }
        }
    }
    Ok(())
}

impl HostDevices for HostDevFs {
    fn lookup(&self, path: &Path) -> io::Result<Vec<HostDevice>> {
        let meta = std::fs::metadata(path)?;
        if meta.is_dir() {
            let mut out = Vec::new();
            walk(path, false, &mut out)?;
            return Ok(out);
        }
        device_from(path, &meta)
            .map(|d| vec![d])
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a device node"))
    }

    fn all(&self) -> io::Result<Vec<HostDevice>> {
        let mut out = Vec::new();
        walk(Path::new("/dev"), true, &mut out)?;
        Ok(out)
    }
}

/// Device nodes and device-cgroup rules of a container.
#[derive(Debug)]
pub(crate) struct DevicePlan {
    pub devices: Vec<LinuxDevice>,
    pub rules: Vec<LinuxDeviceCgroup>,
}

fn oci_type(kind: DeviceKind) -> LinuxDeviceType {
    match kind {
        DeviceKind::Char => LinuxDeviceType::C,
        DeviceKind::Block => LinuxDeviceType::B,
    }
}

fn node(path: &Path, dev: &HostDevice) -> Result<LinuxDevice, SpecError> {
    Ok(LinuxDeviceBuilder::default()
        .path(path)
        .typ(oci_type(dev.kind))
        .major(dev.major)
        .minor(dev.minor)
        .file_mode(dev.mode)
        .uid(dev.uid)
        .gid(dev.gid)
        .build()?)
}

fn rule(
    allow: bool,
    dev: Option<&HostDevice>,
    access: &str,
) -> Result<LinuxDeviceCgroup, SpecError> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .access(access);
    if let Some(dev) = dev {
        b = b.typ(oci_type(dev.kind)).major(dev.major).minor(dev.minor);
    }
    Ok(b.build()?)
}

fn invalid(container_path: &str, reason: impl Into<String>) -> SpecError {
    SpecError::InvalidDevice {
        container_path: container_path.to_string(),
        reason: reason.into(),
    }
}

/// Builds device nodes and cgroup rules.
///
/// The rules start by denying everything; the OCI runtime adds its own
/// allowances for the standard nodes it always creates (`/dev/null`, `/dev/zero`,
/// ptys...). A privileged container instead gets every host device and an
/// allow-all rule. Each CRI device is allowed with its requested permissions
/// (`rwm` when empty); a directory brings every device below it.
pub(crate) fn build_devices(
    cri: &[CriDevice],
    host: &dyn HostDevices,
    privileged: bool,
) -> Result<DevicePlan, SpecError> {
    let mut devices: Vec<LinuxDevice> = Vec::new();
    let mut rules = vec![rule(false, None, "rwm")?];
    if privileged {
        rules.push(rule(true, None, "rwm")?);
        let all = host.all().map_err(|source| SpecError::DeviceLookup {
            host_path: PathBuf::from("/dev"),
            source,
        })?;
        for dev in &all {
            devices.push(node(&dev.path, dev)?);
        }
    }

    for d in cri {
        let cp = d.container_path.as_str();
        if !cp.starts_with('/') {
            return Err(invalid(cp, "container path must be absolute"));
        }
        if !d.host_path.starts_with('/') {
            return Err(invalid(
                cp,
                format!("host path {:?} must be absolute", d.host_path),
            ));
        }
        let access = if d.permissions.is_empty() {
            "rwm"
        } else {
            d.permissions.as_str()
        };
        if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(invalid(
                cp,
                format!("permissions {access:?} must be a combination of r, w and m"),
            ));
        }
        let host_path = Path::new(&d.host_path);
        let found = host
            .lookup(host_path)
            .map_err(|source| SpecError::DeviceLookup {
                host_path: host_path.to_path_buf(),
                source,
            })?;
        for dev in &found {
            // A directory maps its contents below the container path.
            let path = match dev.path.strip_prefix(host_path) {
                Ok(rel) if !rel.as_os_str().is_empty() => Path::new(cp).join(rel),
                _ => PathBuf::from(cp),
            };
            devices.retain(|existing| existing.path() != &path);
            devices.push(node(&path, dev)?);
            rules.push(rule(true, Some(dev), access)?);
        }
    }
    Ok(DevicePlan { devices, rules })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A made-up host /dev.
    #[derive(Default)]
    pub(crate) struct FakeDevices {
        pub nodes: HashMap<PathBuf, Vec<HostDevice>>,
    }

    pub(crate) fn dev(path: &str, kind: DeviceKind, major: i64, minor: i64) -> HostDevice {
        HostDevice {
            path: path.into(),
            kind,
            major,
            minor,
            mode: 0o660,
            uid: 0,
            gid: 6,
        }
    }

    impl FakeDevices {
        pub(crate) fn standard() -> Self {
            let mut f = FakeDevices::default();
            f.nodes.insert(
                "/dev/fuse".into(),
                vec![dev("/dev/fuse", DeviceKind::Char, 10, 229)],
            );
            f.nodes.insert(
                "/dev/sda".into(),
                vec![dev("/dev/sda", DeviceKind::Block, 8, 0)],
            );
            f.nodes.insert(
                "/dev/snd".into(),
                vec![
                    dev("/dev/snd/timer", DeviceKind::Char, 116, 33),
                    dev("/dev/snd/pcmC0D0p", DeviceKind::Char, 116, 16),
                ],
            );
            f
        }
    }

    impl HostDevices for FakeDevices {
        fn lookup(&self, path: &Path) -> io::Result<Vec<HostDevice>> {
            self.nodes
                .get(path)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
        fn all(&self) -> io::Result<Vec<HostDevice>> {
            let mut v: Vec<HostDevice> = self.nodes.values().flatten().cloned().collect();
            v.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(v)
        }
    }

    fn cri(container: &str, host: &str, perms: &str) -> CriDevice {
        CriDevice {
            container_path: container.into(),
            host_path: host.into(),
            permissions: perms.into(),
        }
    }

    #[test]
    fn unprivileged_denies_all_then_allows_requested() {
        let fake = FakeDevices::standard();
        let plan = build_devices(&[cri("/dev/myfuse", "/dev/fuse", "rw")], &fake, false).unwrap();
        assert_eq!(plan.devices.len(), 1);
        let d = &plan.devices[0];
        assert_eq!(d.path(), Path::new("/dev/myfuse"));
        assert_eq!(
            (d.typ(), d.major(), d.minor()),
            (LinuxDeviceType::C, 10, 229)
        );
        assert_eq!((d.file_mode(), d.gid()), (Some(0o660), Some(6)));
        assert_eq!(plan.rules.len(), 2);
        assert!(!plan.rules[0].allow());
        assert_eq!(plan.rules[0].access().as_deref(), Some("rwm"));
        assert!(plan.rules[1].allow());
        assert_eq!(plan.rules[1].to_string(), "c 10:229 rw");
    }

    #[test]
    fn directory_maps_children_and_default_permissions() {
        let fake = FakeDevices::standard();
        let plan = build_devices(&[cri("/dev/sound", "/dev/snd", "")], &fake, false).unwrap();
        let paths: Vec<_> = plan.devices.iter().map(|d| d.path().clone()).collect();
        assert_eq!(
            paths,
            [
                PathBuf::from("/dev/sound/timer"),
                PathBuf::from("/dev/sound/pcmC0D0p")
            ]
        );
        assert_eq!(plan.rules[1].access().as_deref(), Some("rwm"));
    }

    #[test]
    fn privileged_gets_host_devices_and_allow_all() {
        let fake = FakeDevices::standard();
        let plan = build_devices(&[cri("/dev/sda", "/dev/sda", "r")], &fake, true).unwrap();
        assert_eq!(plan.devices.len(), 4);
        assert!(plan.rules[1].allow());
        assert_eq!(plan.rules[1].to_string(), "a *:* rwm");
        // The CRI request replaced the host node at the same path.
        assert_eq!(
            plan.devices
                .iter()
                .filter(|d| d.path() == Path::new("/dev/sda"))
                .count(),
            1
        );
    }

    #[test]
    fn invalid_devices() {
        let fake = FakeDevices::standard();
        for (d, msg) in [
            (
                cri("dev/x", "/dev/fuse", ""),
                "container path must be absolute",
            ),
            (cri("/dev/x", "fuse", ""), "must be absolute"),
            (
                cri("/dev/x", "/dev/fuse", "rwx"),
                "combination of r, w and m",
            ),
        ] {
            let err = build_devices(&[d], &fake, false).unwrap_err();
            assert!(err.to_string().contains(msg), "{err}");
        }
        let err = build_devices(&[cri("/dev/x", "/dev/nope", "")], &fake, false).unwrap_err();
        assert!(matches!(err, SpecError::DeviceLookup { .. }));
        assert!(err
            .to_string()
            .starts_with("failed to look up host device /dev/nope"));
    }

    #[test]
    fn real_host_lookup() {
        let found = HostDevFs.lookup(Path::new("/dev/null")).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].kind, found[0].major, found[0].minor),
            (DeviceKind::Char, 1, 3)
        );
        let err = HostDevFs
            .lookup(Path::new("/proc/self/status"))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
