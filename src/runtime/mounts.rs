//! The container's mount table: the Linux defaults every container needs,
//! the pod's shared files (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`,
//! `/dev/shm`) and the CRI volume mounts.
//!
//! Order matters: the runtime mounts in list order, so defaults come first and
//! the binds follow sorted by depth, parents before children.

use std::path::{Component, Path, PathBuf};

use k8s_cri::v1::{Mount as CriMount, MountPropagation};
use oci_spec::runtime::{Mount, MountBuilder};

use super::SpecError;

/// Host files the pod shares with each of its containers.
#[derive(Debug, Default, Clone, Copy)]
pub struct SandboxFiles<'a> {
    /// Bound at `/etc/hosts`.
    pub hosts: Option<&'a Path>,
    /// Bound at `/etc/resolv.conf`.
    pub resolv_conf: Option<&'a Path>,
    /// Bound at `/etc/hostname`.
    pub hostname: Option<&'a Path>,
    /// The pod's `/dev/shm` tmpfs. Unused with host IPC, where the host's is bound.
    pub shm: Option<&'a Path>,
}

/// What [`build_mounts`] needs to know about the container.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MountOptions {
    pub privileged: bool,
    pub host_ipc: bool,
    pub readonly_rootfs: bool,
}

/// The mount list and the rootfs propagation it requires.
#[derive(Debug)]
pub(crate) struct MountPlan {
    pub mounts: Vec<Mount>,
    /// `rslave` or `rshared` when a volume needs that propagation.
    pub rootfs_propagation: Option<String>,
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// The filesystems a Linux container expects. `/sys` and the cgroup tree are
/// read-only unless the container is privileged.
fn default_mounts(privileged: bool) -> Result<Vec<Mount>, SpecError> {
    let ro: &[&str] = if privileged { &[] } else { &["ro"] };
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &[&["nosuid", "noexec", "nodev"], ro].concat(),
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &[&["nosuid", "noexec", "nodev", "relatime"], ro].concat(),
        )?,
    ])
}

/// `path` without `.`, duplicate or trailing slashes; `..` is kept for the
/// runtime to resolve inside the rootfs.
fn clean(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => out.push(".."),
            _ => {}
        }
    }
    out
}

fn invalid(container_path: &str, reason: &str) -> SpecError {
    SpecError::InvalidMount {
        container_path: container_path.to_string(),
        reason: reason.to_string(),
    }
}

/// A bind mount of `source` at `dest` with the given propagation.
fn bind(
    dest: &Path,
    source: &Path,
    propagation: &str,
    readonly: bool,
    recursive_readonly: bool,
) -> Result<Mount, SpecError> {
    let mut options = vec!["rbind".to_string(), propagation.to_string()];
    options.push(if readonly { "ro" } else { "rw" }.to_string());
    if recursive_readonly {
        options.push("rro".to_string());
    }
    Ok(MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(options)
        .build()?)
}

/// Checks one CRI mount and turns it into a bind. Returns the propagation it
/// needs from the rootfs.
fn convert(m: &CriMount) -> Result<(Mount, Option<&'static str>), SpecError> {
    let cp = m.container_path.as_str();
    if cp.is_empty() || !cp.starts_with('/') {
        return Err(invalid(cp, "container path must be absolute"));
    }
    if m.host_path.is_empty() {
        let reason = match &m.image {
            Some(img) if !img.image.is_empty() => "image volume mounts are not supported",
            _ => "host path is empty",
        };
        return Err(invalid(cp, reason));
    }
    if !m.host_path.starts_with('/') {
        return Err(invalid(cp, "host path must be absolute"));
    }
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        return Err(invalid(cp, "idmapped mounts are not supported"));
    }
    let propagation = m.propagation();
    if m.recursive_read_only {
        if !m.readonly {
            return Err(invalid(cp, "recursive_read_only requires readonly"));
        }
        if propagation != MountPropagation::PropagationPrivate {
            return Err(invalid(
                cp,
                "recursive_read_only requires private propagation",
            ));
        }
    }
    // selinux_relabel is ignored: berth does not manage SELinux labels.
    let (option, rootfs) = match propagation {
        MountPropagation::PropagationPrivate => ("rprivate", None),
        MountPropagation::PropagationHostToContainer => ("rslave", Some("rslave")),
        MountPropagation::PropagationBidirectional => ("rshared", Some("rshared")),
    };
    let mount = bind(
        &clean(cp),
        Path::new(&m.host_path),
        option,
        m.readonly,
        m.recursive_read_only,
    )?;
    Ok((mount, rootfs))
}

/// Builds the whole mount table.
///
/// A CRI mount replaces a default at the same destination, and a CRI mount of
/// `/dev` replaces every default below it. The pod's `/etc` files are bound
/// read-only when the rootfs is read-only, and skipped when a CRI mount
/// already covers them (the kubelet manages `/etc/hosts` itself for most pods).
pub(crate) fn build_mounts(
    cri: &[CriMount],
    files: &SandboxFiles<'_>,
    opts: MountOptions,
) -> Result<MountPlan, SpecError> {
    let mut binds = Vec::with_capacity(cri.len() + 4);
    let mut rootfs_propagation: Option<&str> = None;
    for m in cri {
        let (mount, needs) = convert(m)?;
        match (rootfs_propagation, needs) {
            (_, Some("rshared")) => rootfs_propagation = Some("rshared"),
            (None, Some(p)) => rootfs_propagation = Some(p),
            _ => {}
        }
        binds.push(mount);
    }
    let covered =
        |binds: &[Mount], dest: &str| binds.iter().any(|b| b.destination() == Path::new(dest));

    let etc_files = [
        ("/etc/hostname", files.hostname),
        ("/etc/hosts", files.hosts),
        ("/etc/resolv.conf", files.resolv_conf),
    ];
    for (dest, source) in etc_files {
        if let Some(source) = source {
            if !covered(&binds, dest) {
                binds.push(bind(
                    Path::new(dest),
                    source,
                    "rprivate",
                    opts.readonly_rootfs,
                    false,
                )?);
            }
        }
    }
    if !covered(&binds, "/dev/shm") {
        let shm = if opts.host_ipc {
            Some(Path::new("/dev/shm"))
        } else {
            files.shm
        };
        if let Some(source) = shm {
            binds.push(bind(
                Path::new("/dev/shm"),
                source,
                "rprivate",
                false,
                false,
            )?);
        }
    }
    // Parents before children: /data before /data/cache, whatever the request order.
    binds.sort_by_key(|m| m.destination().components().count());

    let dev_replaced = covered(&binds, "/dev");
    let mut mounts: Vec<Mount> = default_mounts(opts.privileged)?
        .into_iter()
        .filter(|d| !covered(&binds, &d.destination().to_string_lossy()))
        .filter(|d| !(dev_replaced && d.destination().starts_with("/dev")))
        .collect();
    mounts.extend(binds);
    Ok(MountPlan {
        mounts,
        rootfs_propagation: rootfs_propagation.map(String::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: MountOptions = MountOptions {
        privileged: false,
        host_ipc: false,
        readonly_rootfs: false,
    };

    fn cri(container: &str, host: &str) -> CriMount {
        CriMount {
            container_path: container.into(),
            host_path: host.into(),
            ..Default::default()
        }
    }

    fn find<'a>(plan: &'a MountPlan, dest: &str) -> Vec<&'a Mount> {
        plan.mounts
            .iter()
            .filter(|m| m.destination() == Path::new(dest))
            .collect()
    }

    fn options(m: &Mount) -> Vec<String> {
        m.options().clone().unwrap_or_default()
    }

    fn dests(plan: &MountPlan) -> Vec<String> {
        plan.mounts
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect()
    }

    #[test]
    fn defaults_for_an_unprivileged_container() {
        let plan = build_mounts(&[], &SandboxFiles::default(), OPTS).unwrap();
        assert_eq!(
            dests(&plan),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup"
            ]
        );
        assert!(options(find(&plan, "/sys")[0]).contains(&"ro".to_string()));
        assert!(options(find(&plan, "/sys/fs/cgroup")[0]).contains(&"ro".to_string()));
        assert_eq!(find(&plan, "/dev/shm")[0].typ().as_deref(), Some("tmpfs"));
        assert_eq!(plan.rootfs_propagation, None);
    }

    #[test]
    fn privileged_gets_writable_sys() {
        let opts = MountOptions {
            privileged: true,
            ..OPTS
        };
        let plan = build_mounts(&[], &SandboxFiles::default(), opts).unwrap();
        assert!(!options(find(&plan, "/sys")[0]).contains(&"ro".to_string()));
        assert!(!options(find(&plan, "/sys/fs/cgroup")[0]).contains(&"ro".to_string()));
    }

    #[test]
    fn cri_mounts_become_sorted_binds() {
        let mut ro = cri("/data/cache/", "/host/cache");
        ro.readonly = true;
        let mut slave = cri("/data", "/host/data");
        slave.propagation = MountPropagation::PropagationHostToContainer as i32;
        let plan = build_mounts(&[ro, slave], &SandboxFiles::default(), OPTS).unwrap();
        let d = dests(&plan);
        assert_eq!(&d[d.len() - 2..], ["/data", "/data/cache"]);
        let data = find(&plan, "/data")[0];
        assert_eq!(data.typ().as_deref(), Some("bind"));
        assert_eq!(data.source().as_deref(), Some(Path::new("/host/data")));
        assert_eq!(options(data), ["rbind", "rslave", "rw"]);
        assert_eq!(
            options(find(&plan, "/data/cache")[0]),
            ["rbind", "rprivate", "ro"]
        );
        assert_eq!(plan.rootfs_propagation.as_deref(), Some("rslave"));
    }

    #[test]
    fn bidirectional_makes_the_rootfs_shared() {
        let mut a = cri("/a", "/ha");
        a.propagation = MountPropagation::PropagationBidirectional as i32;
        let mut b = cri("/b", "/hb");
        b.propagation = MountPropagation::PropagationHostToContainer as i32;
        let plan = build_mounts(&[a, b], &SandboxFiles::default(), OPTS).unwrap();
        assert_eq!(plan.rootfs_propagation.as_deref(), Some("rshared"));
        assert_eq!(options(find(&plan, "/a")[0])[1], "rshared");
    }

    #[test]
    fn recursive_read_only() {
        let mut m = cri("/ro", "/host/ro");
        m.readonly = true;
        m.recursive_read_only = true;
        let plan = build_mounts(std::slice::from_ref(&m), &SandboxFiles::default(), OPTS).unwrap();
        assert_eq!(
            options(find(&plan, "/ro")[0]),
            ["rbind", "rprivate", "ro", "rro"]
        );
        m.readonly = false;
        assert!(build_mounts(std::slice::from_ref(&m), &SandboxFiles::default(), OPTS).is_err());
    }

    #[test]
    fn invalid_mounts_are_rejected() {
        let cases = [
            (cri("data", "/h"), "container path must be absolute"),
            (cri("/data", ""), "host path is empty"),
            (cri("/data", "rel"), "host path must be absolute"),
        ];
        for (m, reason) in cases {
            let err = build_mounts(&[m], &SandboxFiles::default(), OPTS).unwrap_err();
            assert!(err.to_string().contains(reason), "{err}");
        }
        let err = build_mounts(&[cri("rel", "/h")], &SandboxFiles::default(), OPTS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid mount \"rel\": container path must be absolute"
        );
    }

    #[test]
    fn cri_mount_replaces_default_and_dev() {
        let plan = build_mounts(
            &[cri("/proc", "/host/proc")],
            &SandboxFiles::default(),
            OPTS,
        )
        .unwrap();
        assert_eq!(find(&plan, "/proc").len(), 1);
        assert_eq!(find(&plan, "/proc")[0].typ().as_deref(), Some("bind"));

        let plan = build_mounts(&[cri("/dev", "/dev")], &SandboxFiles::default(), OPTS).unwrap();
        assert!(dests(&plan).iter().all(|d| !d.starts_with("/dev/")));
    }

    #[test]
    fn pod_files_and_shm() {
        let files = SandboxFiles {
            hosts: Some(Path::new("/run/berth/pod/hosts")),
            resolv_conf: Some(Path::new("/run/berth/pod/resolv.conf")),
            hostname: Some(Path::new("/run/berth/pod/hostname")),
            shm: Some(Path::new("/run/berth/pod/shm")),
        };
        let opts = MountOptions {
            readonly_rootfs: true,
            ..OPTS
        };
        // The kubelet's own /etc/hosts wins over the pod file.
        let plan =
            build_mounts(&[cri("/etc/hosts", "/var/lib/kubelet/hosts")], &files, opts).unwrap();
        let hosts = find(&plan, "/etc/hosts");
        assert_eq!(hosts.len(), 1);
        assert_eq!(
            hosts[0].source().as_deref(),
            Some(Path::new("/var/lib/kubelet/hosts"))
        );
        let resolv = find(&plan, "/etc/resolv.conf")[0];
        assert_eq!(options(resolv), ["rbind", "rprivate", "ro"]);
        assert_eq!(
            find(&plan, "/etc/hostname")[0].source().as_deref(),
            Some(Path::new("/run/berth/pod/hostname"))
        );
        let shm = find(&plan, "/dev/shm");
        assert_eq!(shm.len(), 1);
        assert_eq!(
            shm[0].source().as_deref(),
            Some(Path::new("/run/berth/pod/shm"))
        );
        assert_eq!(options(shm[0]), ["rbind", "rprivate", "rw"]);

        let host_ipc = MountOptions {
            host_ipc: true,
            ..OPTS
        };
        let plan = build_mounts(&[], &files, host_ipc).unwrap();
        assert_eq!(
            find(&plan, "/dev/shm")[0].source().as_deref(),
            Some(Path::new("/dev/shm"))
        );
    }
}
