//! The infra container: `berthd pause` as init of a pod's shared PID
//! namespace, run by the OCI runtime from a bundle written here.
//!
//! Its rootfs is an empty directory: berthd and the shared libraries it
//! needs (found with `ldd`) are bind-mounted read-only at their usual paths,
//! so the pod sees nothing else of the host through `/proc/1/root`. It runs
//! as 65535:65535 (the pause image's user) with no capabilities,
//! `no_new_privs`, a read-only root, a new PID and mount namespace, and the
//! pod's pinned net/IPC/UTS namespaces.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder,
    Spec, SpecBuilder, UserBuilder,
};

use super::{PinnedNamespaces, SandboxError};
use crate::runtime::spec::{annotations, OCI_VERSION};

/// Where berthd appears inside the infra container.
pub const INFRA_BINARY: &str = "/berthd";
/// The infra process's user and group (the pause image's `65535:65535`).
pub const INFRA_ID: u32 = 65535;

/// Writes an OCI bundle (`dir/config.json`, `dir/rootfs`) for the infra
/// process of a pod and returns the bundle path (`dir`). `hostname` is set
/// only when the pod has a pinned UTS namespace. Blocking (runs `ldd` once).
pub fn infra_bundle(
    dir: &Path,
    pinned: &PinnedNamespaces,
    cgroups_path: &str,
    hostname: &str,
) -> Result<PathBuf, SandboxError> {
    let mut exe =
        std::env::current_exe().map_err(|e| SandboxError::io("resolve", "/proc/self/exe", e))?;
    if !exe.exists() {
        // Replaced on disk since we started: bind the running image itself.
        exe = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
    }
    infra_bundle_with(&exe, dir, pinned, cgroups_path, hostname)
}

/// [`infra_bundle`] with `binary` (berthd, or the small `berth-monitor`,
/// which also answers `pause`) as the infra process.
pub fn infra_bundle_with(
    binary: &Path,
    dir: &Path,
    pinned: &PinnedNamespaces,
    cgroups_path: &str,
    hostname: &str,
) -> Result<PathBuf, SandboxError> {
    // ldd runs once per binary.
    type Known = std::sync::Mutex<Vec<(PathBuf, Vec<PathBuf>)>>;
    static LIBS: OnceLock<Known> = OnceLock::new();
    let cache = LIBS.get_or_init(Default::default);
    let known = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .find(|(b, _)| b == binary)
        .map(|(_, l)| l.clone());
    let libs = match known {
        Some(l) => l,
        None => {
            let found = shared_libraries(binary)?;
            cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((binary.to_path_buf(), found.clone()));
            found
        }
    };
    infra_bundle_for(binary, &libs, dir, pinned, cgroups_path, hostname)
}

pub(crate) fn infra_bundle_for(
    binary: &Path,
    libs: &[PathBuf],
    dir: &Path,
    pinned: &PinnedNamespaces,
    cgroups_path: &str,
    hostname: &str,
) -> Result<PathBuf, SandboxError> {
    let rootfs = dir.join("rootfs");
    let mut mounts = vec![MountBuilder::default()
        .destination("/dev")
        .typ("tmpfs")
        .source("tmpfs")
        .options(opts(&[
            "nosuid",
            "noexec",
            "strictatime",
            "mode=755",
            "size=64k",
        ]))
        .build()?];
    make_mount_point(&rootfs, Path::new("/dev"), true)?;
    // runc (unlike crun) needs /proc inside the container to finish setting
    // it up; the infra has its own PID namespace, so this shows only itself.
    mounts.push(
        MountBuilder::default()
            .destination("/proc")
            .typ("proc")
            .source("proc")
            .options(opts(&["nosuid", "noexec", "nodev"]))
            .build()?,
    );
    make_mount_point(&rootfs, Path::new("/proc"), true)?;
    for (source, dest) in std::iter::once((binary, Path::new(INFRA_BINARY)))
        .chain(libs.iter().map(|l| (l.as_path(), l.as_path())))
    {
        let source = if source.starts_with("/proc") {
            source.to_path_buf()
        } else {
            source
                .canonicalize()
                .map_err(|e| SandboxError::io("resolve", source, e))?
        };
        make_mount_point(&rootfs, dest, false)?;
        mounts.push(read_only_bind(&source, dest)?);
    }
    let spec = infra_spec(pinned, cgroups_path, hostname, mounts)?;
    let config = dir.join("config.json");
    spec.save(&config)?;
    Ok(dir.to_path_buf())
}

fn opts(o: &[&str]) -> Vec<String> {
    o.iter().map(|s| s.to_string()).collect()
}

fn read_only_bind(source: &Path, dest: &Path) -> Result<Mount, SandboxError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(opts(&["bind", "ro", "nosuid", "nodev"]))
        .build()?)
}

/// Creates the directory or empty file a mount lands on inside `rootfs`, so
/// that nothing has to be created once the root is read-only.
fn make_mount_point(rootfs: &Path, dest: &Path, is_dir: bool) -> Result<(), SandboxError> {
    let target = rootfs.join(dest.strip_prefix("/").unwrap_or(dest));
    let parent = if is_dir {
        target.as_path()
    } else {
        target.parent().unwrap_or(rootfs)
    };
    std::fs::create_dir_all(parent).map_err(|e| SandboxError::io("create", parent, e))?;
    if !is_dir {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&target)
            .map_err(|e| SandboxError::io("create", &target, e))?;
    }
    Ok(())
}

fn infra_spec(
    pinned: &PinnedNamespaces,
    cgroups_path: &str,
    hostname: &str,
    mounts: Vec<Mount>,
) -> Result<Spec, SandboxError> {
    let none = HashSet::new();
    let process = ProcessBuilder::default()
        .args(vec![INFRA_BINARY.to_string(), "pause".to_string()])
        .env(Vec::<String>::new())
        .cwd("/")
        .user(UserBuilder::default().uid(INFRA_ID).gid(INFRA_ID).build()?)
        .no_new_privileges(true)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(none.clone())
                .effective(none.clone())
                .inheritable(none.clone())
                .permitted(none.clone())
                .ambient(none)
                .build()?,
        )
        .build()?;

    let ns = |typ, path: Option<&PathBuf>| {
        let mut b = LinuxNamespaceBuilder::default().typ(typ);
        if let Some(p) = path {
            b = b.path(p.clone());
        }
        b.build()
    };
    let mut namespaces = vec![
        ns(LinuxNamespaceType::Pid, None)?,
        ns(LinuxNamespaceType::Mount, None)?,
    ];
    for (typ, path) in [
        (LinuxNamespaceType::Network, &pinned.net),
        (LinuxNamespaceType::Ipc, &pinned.ipc),
        (LinuxNamespaceType::Uts, &pinned.uts),
    ] {
        if let Some(p) = path {
            namespaces.push(ns(typ, Some(p))?);
        }
    }
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()?;
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(
            LinuxResourcesBuilder::default()
                .devices(vec![deny_all])
                .build()?,
        )
        .build()?;
    linux
        .set_cgroups_path((!cgroups_path.is_empty()).then(|| PathBuf::from(cgroups_path)))
        .set_masked_paths(None)
        .set_readonly_paths(None)
        .set_uid_mappings(None)
        .set_gid_mappings(None);

    let mut spec = SpecBuilder::default()
        .version(OCI_VERSION)
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(true)
                .build()?,
        )
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .annotations(
            [(
                annotations::CONTAINER_TYPE.to_string(),
                "sandbox".to_string(),
            )]
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()?;
    spec.set_hostname(pinned.uts.as_ref().map(|_| hostname.to_string()));
    Ok(spec)
}

/// The shared objects `binary` loads, interpreter included, as `ldd` lists
/// them. Empty for a static binary.
pub(crate) fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    let out = match Command::new("ldd").arg(binary).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SandboxError::Unsupported {
                what: "ldd",
                reason: "needed to find the libraries berthd loads inside the infra container"
                    .into(),
            })
        }
        Err(source) => {
            return Err(SandboxError::Spawn {
                program: "ldd".into(),
                source,
            })
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let said = format!("{stdout}{stderr}");
        if said.contains("not a dynamic executable") || said.contains("statically linked") {
            return Ok(Vec::new());
        }
        return Err(SandboxError::Helper {
            helper: "ldd",
            detail: format!("{}: {}", out.status, said.trim()),
        });
    }
    parse_ldd(&stdout)
}

fn parse_ldd(text: &str) -> Result<Vec<PathBuf>, SandboxError> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim) {
        let target = line.split_once("=>").map_or(line, |(_, t)| t.trim());
        if target.starts_with("not found") {
            return Err(SandboxError::Helper {
                helper: "ldd",
                detail: format!("missing library: {line}"),
            });
        }
        if let Some(path) = target
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f2f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2e)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f2f)\n";
        let libs = parse_ldd(text).unwrap();
        assert_eq!(
            libs,
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }

    #[test]
    fn spec_joins_pinned_namespaces_and_drops_privileges() {
        let tmp = tempfile::tempdir().unwrap();
        let pinned = PinnedNamespaces {
            net: Some("/run/x/net".into()),
            ipc: None,
            uts: Some("/run/x/uts".into()),
        };
        let exe = std::env::current_exe().unwrap();
        let bundle = infra_bundle_for(&exe, &[], tmp.path(), &pinned, "/pod/infra", "p1").unwrap();
        let spec = Spec::load(bundle.join("config.json")).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(bundle.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(
            v["process"]["args"],
            serde_json::json!(["/berthd", "pause"])
        );
        assert_eq!(v["process"]["user"]["uid"], 65535);
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(
            v["process"]["capabilities"]["bounding"],
            serde_json::json!([])
        );
        assert_eq!(v["root"]["readonly"], true);
        assert_eq!(v["hostname"], "p1");
        assert_eq!(v["linux"]["cgroupsPath"], "/pod/infra");
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        let find = |t| ns.iter().find(|n| n.typ() == t).map(|n| n.path().clone());
        assert_eq!(find(LinuxNamespaceType::Pid), Some(None));
        assert_eq!(
            find(LinuxNamespaceType::Network),
            Some(Some("/run/x/net".into()))
        );
        assert_eq!(find(LinuxNamespaceType::Ipc), None, "host ipc: not listed");
        assert!(tmp.path().join("rootfs/berthd").is_file());

        // Without a UTS namespace there is no hostname to set.
        let host_uts = PinnedNamespaces::default();
        infra_bundle_for(&exe, &[], tmp.path(), &host_uts, "", "p1").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(tmp.path().join("config.json")).unwrap())
                .unwrap();
        assert!(v.get("hostname").is_none_or(|h| h.is_null()));
        assert!(v["linux"].get("cgroupsPath").is_none_or(|h| h.is_null()));
    }
}
