use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use k8s_cri::v1::{
    DnsConfig, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig,
};

use crate::sandbox::files::{resolv_conf_from, write_pod_files_with, HostFiles};
use crate::sandbox::mountinfo::find;
use crate::sandbox::testutil::{is_root, FilesGuard};
use crate::sandbox::{unmount_pod_files, SandboxErrorKind};

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// Fake host files in `dir`.
fn host(dir: &Path, resolv: &str) -> HostFiles {
    std::fs::write(dir.join("hosts"), "10.0.0.1 node1\n").unwrap();
    std::fs::write(dir.join("resolv.conf"), resolv).unwrap();
    std::fs::write(dir.join("upstream"), "nameserver 192.0.2.53\n").unwrap();
    HostFiles {
        hosts: dir.join("hosts"),
        resolv_conf: dir.join("resolv.conf"),
        resolved_upstream: dir.join("upstream"),
    }
}

fn with_ipc(mode: NamespaceMode) -> PodSandboxConfig {
    PodSandboxConfig {
        hostname: "web-0".into(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    ipc: mode as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn host_ipc_pod() -> PodSandboxConfig {
    with_ipc(NamespaceMode::Node)
}

#[test]
fn dns_config_becomes_resolv_conf() {
    let dns = DnsConfig {
        servers: vec!["10.96.0.10".into(), "fd00::a".into()],
        searches: vec![
            "default.svc.cluster.local".into(),
            "svc.cluster.local".into(),
        ],
        options: vec!["ndots:5".into(), "edns0".into()],
    };
    assert_eq!(
        resolv_conf_from(&dns).unwrap(),
        "search default.svc.cluster.local svc.cluster.local\n\
         nameserver 10.96.0.10\n\
         nameserver fd00::a\n\
         options ndots:5 edns0\n"
    );
    let only_server = DnsConfig {
        servers: vec!["1.1.1.1".into()],
        ..Default::default()
    };
    assert_eq!(
        resolv_conf_from(&only_server).unwrap(),
        "nameserver 1.1.1.1\n"
    );
}

#[test]
fn dns_entries_cannot_inject_lines() {
    for dns in [
        DnsConfig {
            searches: vec!["a.example\nnameserver 6.6.6.6".into()],
            ..Default::default()
        },
        DnsConfig {
            servers: vec!["not-an-ip".into()],
            ..Default::default()
        },
        DnsConfig {
            options: vec!["".into()],
            ..Default::default()
        },
    ] {
        let err = resolv_conf_from(&dns).unwrap_err();
        assert_eq!(err.kind(), SandboxErrorKind::InvalidArgument, "{err}");
    }
}

#[test]
fn pod_network_files() {
    let tmp = tempfile::tempdir().unwrap();
    let h = host(tmp.path(), "nameserver 10.0.0.2\nsearch corp\n");
    let dir = tmp.path().join("pod");
    let mut cfg = host_ipc_pod();
    cfg.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into()],
        ..Default::default()
    });
    let files = write_pod_files_with(&h, &dir, &cfg, false).unwrap();
    assert_eq!(read(&files.hostname), "web-0\n");
    let hosts = read(&files.hosts);
    assert!(hosts.contains("127.0.0.1\tlocalhost\n"), "{hosts}");
    assert!(
        hosts.contains("::1\tlocalhost ip6-localhost ip6-loopback\n"),
        "{hosts}"
    );
    assert!(hosts.ends_with("127.0.1.1\tweb-0\n"), "{hosts}");
    assert_eq!(read(&files.resolv_conf), "nameserver 10.96.0.10\n");
    assert_eq!(files.shm, None, "host IPC uses the host's /dev/shm");
    assert!(!dir.join("shm").exists());
    assert!(!dir.join(".hosts.tmp").exists());

    // No DNS config (or an empty one): the host's resolv.conf.
    cfg.dns_config = Some(DnsConfig::default());
    let files = write_pod_files_with(&h, &dir, &cfg, false).unwrap();
    assert_eq!(
        read(&files.resolv_conf),
        "nameserver 10.0.0.2\nsearch corp\n"
    );
}

#[test]
fn host_network_copies_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let h = host(tmp.path(), "nameserver 127.0.0.53\n");
    let files = write_pod_files_with(&h, &tmp.path().join("pod"), &host_ipc_pod(), true).unwrap();
    let me = nix::unistd::gethostname().unwrap();
    assert_eq!(read(&files.hostname), format!("{}\n", me.to_string_lossy()));
    assert_eq!(read(&files.hosts), "10.0.0.1 node1\n");
    // On the host network the stub resolver is reachable: copied as is.
    assert_eq!(read(&files.resolv_conf), "nameserver 127.0.0.53\n");
}

#[test]
fn loopback_stub_is_replaced_for_a_pod_network() {
    let tmp = tempfile::tempdir().unwrap();
    let h = host(tmp.path(), "nameserver 127.0.0.53\noptions edns0\n");
    let files = write_pod_files_with(&h, &tmp.path().join("pod"), &host_ipc_pod(), false).unwrap();
    assert_eq!(read(&files.resolv_conf), "nameserver 192.0.2.53\n");
}

#[test]
fn pod_shm_is_a_private_tmpfs() {
    if !is_root("pod_shm_is_a_private_tmpfs") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let h = host(tmp.path(), "");
    let dir = tmp.path().join("pod");
    let cfg = with_ipc(NamespaceMode::Pod);
    let guard = FilesGuard(write_pod_files_with(&h, &dir, &cfg, false).unwrap());
    let shm = guard.0.shm.clone().expect("pod IPC gets a /dev/shm");
    let m = find(&shm).unwrap().expect("shm is mounted");
    assert_eq!(m.fs_type, "tmpfs");
    for opt in ["nosuid", "nodev", "noexec", "size=65536k"] {
        assert!(
            m.options.split(',').any(|o| o == opt),
            "{opt} missing: {}",
            m.options
        );
    }
    // tmpfs lists mode= only when it is not its default, 1777.
    let mode = std::fs::metadata(&shm).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o1777);
    // Writing again keeps the one tmpfs.
    write_pod_files_with(&h, &dir, &cfg, false).unwrap();
    let shm_canon = shm.canonicalize().unwrap();
    let stacked = crate::sandbox::mountinfo::mounts()
        .unwrap()
        .into_iter()
        .filter(|m| m.mount_point == shm_canon)
        .count();
    assert_eq!(stacked, 1);

    unmount_pod_files(&guard.0).unwrap();
    assert!(find(&shm).unwrap().is_none());
    assert!(!shm.exists());
    unmount_pod_files(&guard.0).unwrap();
}
