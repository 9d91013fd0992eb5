use super::*;
use crate::runtime::devices::tests::FakeDevices;
use k8s_cri::v1::security_profile::ProfileType;
use k8s_cri::v1::{
    Capability as CriCapability, ContainerMetadata, Device, ImageSpec, Int64Value, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount as CriMount, NamespaceMode,
    NamespaceOption, PodSandboxMetadata, SecurityProfile,
};
use oci_spec::image::ConfigBuilder;
use oci_spec::runtime::{Capability, LinuxNamespaceType, LinuxSeccompAction, Mount};

/// A pod with one container, an image and a rootfs with passwd/group files.
struct Fixture {
    container: ContainerConfig,
    sandbox: PodSandboxConfig,
    image: ImageConfiguration,
    rootfs: tempfile::TempDir,
    devices: FakeDevices,
    host_caps: oci_spec::runtime::Capabilities,
}

impl Fixture {
    fn new() -> Self {
        let rootfs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(rootfs.path().join("etc")).unwrap();
        std::fs::write(
            rootfs.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            rootfs.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nshadow:x:42:www\n",
        )
        .unwrap();

        let mut image = ImageConfiguration::default();
        image.set_config(Some(
            ConfigBuilder::default()
                .entrypoint(vec!["/docker-entrypoint.sh".to_string()])
                .cmd(vec!["nginx".to_string(), "-g".to_string()])
                .env(vec![
                    "PATH=/usr/bin:/bin".to_string(),
                    "NGINX=1".to_string(),
                ])
                .working_dir("/srv")
                .user("www")
                .build()
                .unwrap(),
        ));

        let ns = NamespaceOption {
            network: NamespaceMode::Pod as i32,
            pid: NamespaceMode::Container as i32,
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        };
        let sandbox = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "uid-1".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "web".into(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(ns.clone()),
                    ..Default::default()
                }),
                sysctls: [(
                    "net.ipv4.ip_unprivileged_port_start".to_string(),
                    "0".to_string(),
                )]
                .into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let container = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "nginx".into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: "sha256:abc".into(),
                user_specified_image: "nginx:1.25".into(),
                ..Default::default()
            }),
            envs: vec![KeyValue {
                key: "NGINX".into(),
                value: "2".into(),
            }],
            linux: Some(LinuxContainerConfig {
                resources: None,
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(ns),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        Fixture {
            container,
            sandbox,
            image,
            rootfs,
            devices: FakeDevices::standard(),
            host_caps: crate::runtime::caps::ALL_CAPABILITIES.into_iter().collect(),
        }
    }

    fn sc(&mut self) -> &mut LinuxContainerSecurityContext {
        self.container
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
    }

    fn make_sandbox_privileged(&mut self) {
        let l = self.sandbox.linux.as_mut().unwrap();
        l.security_context.as_mut().unwrap().privileged = true;
    }

    fn inputs(&self) -> SpecInputs<'_> {
        SpecInputs {
            container_id: "c1",
            sandbox_id: "s1",
            container: &self.container,
            sandbox: &self.sandbox,
            image_config: &self.image,
            rootfs: self.rootfs.path(),
            netns_path: Some(Path::new("/run/berth/netns/s1")),
            ipc_ns_path: Some(Path::new("/run/berth/ns/s1/ipc")),
            uts_ns_path: Some(Path::new("/run/berth/ns/s1/uts")),
            pid_ns_path: None,
            target_pid_ns_path: None,
            cgroups_path: "/kubepods/pod-uid-1/c1".into(),
            cgroup_namespace: false,
            hostname: "web",
            sandbox_files: SandboxFiles {
                hosts: Some(Path::new("/run/berth/sandboxes/s1/hosts")),
                resolv_conf: Some(Path::new("/run/berth/sandboxes/s1/resolv.conf")),
                hostname: Some(Path::new("/run/berth/sandboxes/s1/hostname")),
                shm: Some(Path::new("/run/berth/sandboxes/s1/shm")),
            },
            host_devices: &self.devices,
            host_capabilities: &self.host_caps,
            min_oom_score_adj: -998,
            swap_limit_supported: true,
            apparmor_enabled: false,
            apparmor_default_profile: None,
        }
    }

    fn build(&self) -> Spec {
        build_spec(&self.inputs()).unwrap()
    }

    fn build_err(&self) -> SpecError {
        build_spec(&self.inputs()).unwrap_err()
    }
}

fn process(spec: &Spec) -> &Process {
    spec.process().as_ref().unwrap()
}

fn linux(spec: &Spec) -> &Linux {
    spec.linux().as_ref().unwrap()
}

fn mount<'a>(spec: &'a Spec, dest: &str) -> Option<&'a Mount> {
    spec.mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new(dest))
}

fn bounding(spec: &Spec) -> oci_spec::runtime::Capabilities {
    process(spec)
        .capabilities()
        .as_ref()
        .unwrap()
        .bounding()
        .clone()
        .unwrap()
}

#[test]
fn typical_container() {
    let f = Fixture::new();
    let spec = f.build();
    assert_eq!(spec.version(), OCI_VERSION);
    let root = spec.root().as_ref().unwrap();
    assert_eq!(root.path(), f.rootfs.path());
    assert_eq!(root.readonly(), Some(false));
    assert_eq!(spec.hostname().as_deref(), Some("web"));

    let p = process(&spec);
    assert_eq!(
        p.args().as_ref().unwrap(),
        &["/docker-entrypoint.sh", "nginx", "-g"]
    );
    assert_eq!(
        p.env().as_ref().unwrap(),
        &["PATH=/usr/bin:/bin", "HOSTNAME=web", "NGINX=2"]
    );
    assert_eq!(p.cwd(), Path::new("/srv"));
    assert_eq!(p.terminal(), Some(false));
    assert_eq!((p.user().uid(), p.user().gid()), (33, 33));
    assert_eq!(p.user().additional_gids().as_deref(), Some(&[33, 42][..]));
    assert_eq!(p.no_new_privileges(), Some(false));
    assert_eq!(p.rlimits(), &None);
    assert_eq!(p.oom_score_adj(), None);
    assert_eq!(p.apparmor_profile(), &None);
    assert_eq!(bounding(&spec).len(), 14);

    let l = linux(&spec);
    assert_eq!(
        l.cgroups_path().as_deref(),
        Some(Path::new("/kubepods/pod-uid-1/c1"))
    );
    assert!(
        l.seccomp().is_none(),
        "no profile requested means unconfined"
    );
    assert!(l
        .masked_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/kcore".to_string()));
    assert!(l
        .readonly_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/sys".to_string()));
    assert_eq!(
        l.sysctl().as_ref().unwrap()["net.ipv4.ip_unprivileged_port_start"],
        "0"
    );
    let types: Vec<_> = l
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.typ())
        .collect();
    assert_eq!(
        types,
        [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount
        ]
    );

    assert_eq!(
        mount(&spec, "/etc/hosts").unwrap().source().as_deref(),
        Some(Path::new("/run/berth/sandboxes/s1/hosts"))
    );
    assert_eq!(
        mount(&spec, "/dev/shm").unwrap().typ().as_deref(),
        Some("bind")
    );
    assert!(mount(&spec, "/proc").is_some() && mount(&spec, "/sys/fs/cgroup").is_some());

    let a = spec.annotations().as_ref().unwrap();
    assert_eq!(a[annotations::CONTAINER_TYPE], "container");
    assert_eq!(a[annotations::SANDBOX_ID], "s1");
    assert_eq!(a[annotations::CONTAINER_NAME], "nginx");
    assert_eq!(a[annotations::SANDBOX_NAMESPACE], "default");
    assert_eq!(a[annotations::IMAGE_NAME], "nginx:1.25");

    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["ociVersion"], OCI_VERSION);
    assert_eq!(json["process"]["user"]["additionalGids"][1], 42);
}

#[test]
fn image_without_config_section() {
    let mut f = Fixture::new();
    f.image = ImageConfiguration::default();
    assert!(matches!(f.build_err(), SpecError::NoCommand));
    f.container.command = vec!["/bin/sh".into()];
    f.container.working_dir = "/tmp".into();
    f.container.tty = true;
    let spec = f.build();
    let p = process(&spec);
    assert_eq!(p.args().as_ref().unwrap(), &["/bin/sh"]);
    assert_eq!(p.cwd(), Path::new("/tmp"));
    assert_eq!(p.terminal(), Some(true));
    assert!(p
        .env()
        .as_ref()
        .unwrap()
        .contains(&"TERM=xterm".to_string()));
    assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
}

#[test]
fn run_as_user_group_and_supplemental_groups() {
    let mut f = Fixture::new();
    let sc = f.sc();
    sc.run_as_user = Some(Int64Value { value: 1234 });
    sc.run_as_group = Some(Int64Value { value: 5678 });
    sc.supplemental_groups = vec![9000];
    let spec = f.build();
    let u = process(&spec).user();
    assert_eq!((u.uid(), u.gid()), (1234, 5678));
    assert_eq!(u.additional_gids().as_deref(), Some(&[5678, 9000][..]));

    f.sc().run_as_username = "nobody".into();
    let err = f.build_err();
    assert_eq!(
        err.to_string(),
        "unable to find user nobody: no matching entries in passwd file"
    );
}

#[test]
fn run_as_group_without_a_user_is_refused() {
    let mut f = Fixture::new();
    f.sc().run_as_group = Some(Int64Value { value: 5678 });
    let err = f.build_err();
    assert!(
        err.to_string()
            .contains("run_as_group is set without run_as_user"),
        "{err}"
    );
}

#[test]
fn privileged_container() {
    let mut f = Fixture::new();
    f.sc().privileged = true;
    f.sc().no_new_privs = true;
    f.sc().seccomp = Some(SecurityProfile {
        profile_type: ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    assert!(matches!(f.build_err(), SpecError::PrivilegedNotAllowed));

    f.make_sandbox_privileged();
    let spec = f.build();
    assert_eq!(
        bounding(&spec).len(),
        crate::runtime::caps::ALL_CAPABILITIES.len()
    );
    assert_eq!(process(&spec).no_new_privileges(), Some(false));
    let l = linux(&spec);
    assert!(l.seccomp().is_none());
    assert!(l.masked_paths().is_none() && l.readonly_paths().is_none());
    let sys = mount(&spec, "/sys").unwrap();
    assert!(!sys.options().as_ref().unwrap().contains(&"ro".to_string()));
    assert_eq!(l.devices().as_ref().unwrap().len(), 4, "all host devices");
    let rules = l.resources().as_ref().unwrap().devices().as_ref().unwrap();
    assert_eq!(rules[1].to_string(), "a *:* rwm");
}

#[test]
fn capabilities_and_runtime_default_seccomp() {
    let mut f = Fixture::new();
    let sc = f.sc();
    sc.capabilities = Some(CriCapability {
        add_capabilities: vec!["SYS_ADMIN".into()],
        drop_capabilities: vec!["CAP_NET_RAW".into()],
        add_ambient_capabilities: vec![],
    });
    sc.seccomp = Some(SecurityProfile {
        profile_type: ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    sc.no_new_privs = true;
    let spec = f.build();
    let caps = bounding(&spec);
    assert!(caps.contains(&Capability::SysAdmin) && !caps.contains(&Capability::NetRaw));
    assert_eq!(process(&spec).no_new_privileges(), Some(true));
    let seccomp = linux(&spec).seccomp().as_ref().unwrap();
    assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
    let mount_allowed = seccomp.syscalls().as_ref().unwrap().iter().any(|s| {
        s.names().contains(&"mount".to_string()) && s.action() == LinuxSeccompAction::ScmpActAllow
    });
    assert!(mount_allowed, "CAP_SYS_ADMIN unlocks mount");

    f.sc().capabilities.as_mut().unwrap().add_capabilities = vec!["CAP_WIZARDRY".into()];
    assert_eq!(
        f.build_err().to_string(),
        "unknown capability \"CAP_WIZARDRY\""
    );
}

#[test]
#[allow(deprecated)]
fn deprecated_seccomp_path_and_localhost() {
    let mut f = Fixture::new();
    f.sc().seccomp_profile_path = "docker/default".into();
    assert!(linux(&f.build()).seccomp().is_some());

    let profile = f.rootfs.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    f.sc().seccomp_profile_path = format!("localhost/{}", profile.display());
    let spec = f.build();
    let seccomp = linux(&spec).seccomp().as_ref().unwrap();
    assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActAllow);

    // The structured field wins over the deprecated one.
    f.sc().seccomp = Some(SecurityProfile {
        profile_type: ProfileType::Unconfined as i32,
        localhost_ref: String::new(),
    });
    assert!(linux(&f.build()).seccomp().is_none());
}

#[test]
fn resources_and_oom_clamp() {
    let mut f = Fixture::new();
    f.container.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        cpu_shares: 2,
        cpu_quota: 20_000,
        cpu_period: 100_000,
        memory_limit_in_bytes: 128 << 20,
        oom_score_adj: -999,
        ..Default::default()
    });
    let spec = f.build();
    assert_eq!(process(&spec).oom_score_adj(), Some(-998));
    let res = linux(&spec).resources().as_ref().unwrap();
    assert_eq!(res.cpu().as_ref().unwrap().shares(), Some(2));
    assert_eq!(res.memory().as_ref().unwrap().limit(), Some(128 << 20));
    let rules = res.devices().as_ref().unwrap();
    assert_eq!(rules.len(), 1);
    assert!(!rules[0].allow());
}

#[test]
fn host_network_and_ipc() {
    let mut f = Fixture::new();
    let ns = NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Node as i32,
        ipc: NamespaceMode::Node as i32,
        ..Default::default()
    };
    f.sc().namespace_options = Some(ns);
    let spec = f.build();
    let types: Vec<_> = linux(&spec)
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.typ())
        .collect();
    assert_eq!(types, [LinuxNamespaceType::Mount]);
    assert_eq!(spec.hostname(), &None);
    assert_eq!(
        mount(&spec, "/dev/shm").unwrap().source().as_deref(),
        Some(Path::new("/dev/shm"))
    );
}

#[test]
fn readonly_rootfs_mounts_and_devices() {
    let mut f = Fixture::new();
    f.sc().readonly_rootfs = true;
    f.container.mounts = vec![CriMount {
        container_path: "/data".into(),
        host_path: "/var/lib/kubelet/pods/uid-1/volumes/data".into(),
        selinux_relabel: true,
        ..Default::default()
    }];
    f.container.devices = vec![Device {
        container_path: "/dev/fuse".into(),
        host_path: "/dev/fuse".into(),
        permissions: "rwm".into(),
    }];
    let spec = f.build();
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    let resolv = mount(&spec, "/etc/resolv.conf").unwrap();
    assert!(resolv
        .options()
        .as_ref()
        .unwrap()
        .contains(&"ro".to_string()));
    let data = mount(&spec, "/data").unwrap();
    assert_eq!(
        data.options().as_ref().unwrap(),
        &["rbind", "rprivate", "rw"]
    );
    let l = linux(&spec);
    assert_eq!(
        l.devices().as_ref().unwrap()[0].path(),
        Path::new("/dev/fuse")
    );
    let rules = l.resources().as_ref().unwrap().devices().as_ref().unwrap();
    assert_eq!(rules[1].to_string(), "c 10:229 rwm");

    f.container.mounts[0].container_path = "data".into();
    assert_eq!(
        f.build_err().to_string(),
        "invalid mount \"data\": container path must be absolute"
    );
}

#[test]
fn apparmor_only_when_enabled() {
    let mut f = Fixture::new();
    f.sc().apparmor = Some(SecurityProfile {
        profile_type: ProfileType::Localhost as i32,
        localhost_ref: "k8s-web".into(),
    });
    assert!(matches!(
        f.build_err(),
        SpecError::AppArmorUnavailable { .. }
    ));
    let mut inputs = f.inputs();
    inputs.apparmor_enabled = true;
    let spec = build_spec(&inputs).unwrap();
    assert_eq!(
        process(&spec).apparmor_profile().as_deref(),
        Some("k8s-web")
    );
}

#[test]
fn masked_paths_from_cri() {
    let mut f = Fixture::new();
    f.sc().masked_paths = vec!["/proc/only".into()];
    let spec = f.build();
    assert_eq!(
        linux(&spec).masked_paths().as_ref().unwrap(),
        &["/proc/only"]
    );
}
