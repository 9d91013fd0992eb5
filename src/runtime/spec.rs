//! Assembling a container's OCI runtime spec (`config.json`) from the image
//! config, the CRI container config and the pod sandbox config.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_cri::v1::{ContainerConfig, PodSandboxConfig};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capabilities, Linux, LinuxBuilder, Process, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use super::caps::{container_capabilities, CapabilityRequest};
use super::devices::{build_devices, HostDevices};
use super::mounts::{build_mounts, MountOptions, SandboxFiles};
use super::namespaces::{build_namespaces, NamespacePaths};
use super::process::{process_args, process_env, user_request, working_dir};
use super::resources::{build_resources, oom_score_adj};
use super::seccomp::{build_seccomp, select_profile};
use super::security::{apparmor_profile, masked_and_readonly_paths};
use super::user::resolve_user;
use super::SpecError;

/// OCI runtime-spec version berth writes.
pub const OCI_VERSION: &str = "1.1.0";

/// Annotation keys, as containerd names them so that tools reading
/// `config.json` (NRI plugins, runtimes, monitors) find what they expect.
pub mod annotations {
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    pub const CONTAINER_TYPE_CONTAINER: &str = "container";
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
}

/// Everything [`build_spec`] needs; the caller has already set up the pod.
pub struct SpecInputs<'a> {
    pub container_id: &'a str,
    pub sandbox_id: &'a str,
    pub container: &'a ContainerConfig,
    pub sandbox: &'a PodSandboxConfig,
    /// The image's config; its `config` section may be missing.
    pub image_config: &'a ImageConfiguration,
    /// The mounted rootfs: becomes `root.path` and is where users and groups are looked up.
    pub rootfs: &'a Path,
    /// The pod's network namespace, joined unless the pod uses the host network.
    pub netns_path: Option<&'a Path>,
    /// The pod's IPC namespace, joined unless the pod uses host IPC.
    pub ipc_ns_path: Option<&'a Path>,
    /// The pod's UTS namespace, joined unless the pod uses the host network.
    pub uts_ns_path: Option<&'a Path>,
    /// The pod's shared PID namespace, joined when the PID mode is POD;
    /// `None` there gives the container a PID namespace of its own.
    pub pid_ns_path: Option<&'a Path>,
    /// The target container's PID namespace, required when the PID mode is TARGET.
    pub target_pid_ns_path: Option<&'a Path>,
    /// `linux.cgroupsPath`, in the form the configured cgroup driver expects.
    pub cgroups_path: String,
    /// Give the container its own cgroup namespace (what cgroup v2 hosts do).
    pub cgroup_namespace: bool,
    /// Hostname inside the container (the node's when on the host network).
    pub hostname: &'a str,
    pub sandbox_files: SandboxFiles<'a>,
    /// Where device numbers come from.
    pub host_devices: &'a dyn HostDevices,
    /// Capabilities the host can grant: berth's own bounding set
    /// ([`super::caps::current_bounding_set`]). Privileged containers get all of them.
    pub host_capabilities: &'a Capabilities,
    /// Requested `oom_score_adj` values below this are raised to it.
    pub min_oom_score_adj: i32,
    /// Whether the host accounts swap (`memory.memsw.*` or `memory.swap.max`).
    pub swap_limit_supported: bool,
    pub apparmor_enabled: bool,
    /// berth's default AppArmor profile, when it is loaded on the host.
    pub apparmor_default_profile: Option<&'a str>,
}

/// Builds the OCI runtime spec of a container. See the module docs of the
/// pieces (`process`, `user`, `mounts`, `devices`, `namespaces`,
/// `resources`, `caps`, `seccomp`, `security`) for each rule.
pub fn build_spec(inputs: &SpecInputs<'_>) -> Result<Spec, SpecError> {
    let container = inputs.container;
    let image = inputs.image_config.config().as_ref();
    let linux_cfg = container.linux.as_ref();
    let sc = linux_cfg.and_then(|l| l.security_context.as_ref());
    let sandbox_sc = inputs
        .sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());

    let privileged = sc.is_some_and(|s| s.privileged);
    if privileged && !sandbox_sc.is_some_and(|s| s.privileged) {
        return Err(SpecError::PrivilegedNotAllowed);
    }

    // Namespaces: the container's options, else the pod's.
    let ns_opts = sc
        .and_then(|s| s.namespace_options.as_ref())
        .or_else(|| sandbox_sc.and_then(|s| s.namespace_options.as_ref()));
    let ns_paths = NamespacePaths {
        net: inputs.netns_path,
        ipc: inputs.ipc_ns_path,
        uts: inputs.uts_ns_path,
        pid: inputs.pid_ns_path,
        target_pid: inputs.target_pid_ns_path,
    };
    let mut ns = build_namespaces(ns_opts, &ns_paths, inputs.cgroup_namespace)?;
    let userns = super::userns::pod_user_namespace(inputs.sandbox)?;
    if userns.is_some() {
        ns.namespaces.push(
            oci_spec::runtime::LinuxNamespaceBuilder::default()
                .typ(oci_spec::runtime::LinuxNamespaceType::User)
                .build()?,
        );
    }

    let readonly_rootfs = sc.is_some_and(|s| s.readonly_rootfs);
    let mut mounts = build_mounts(
        &container.mounts,
        &inputs.sandbox_files,
        MountOptions {
            privileged,
            host_ipc: ns.host_ipc,
            readonly_rootfs,
        },
    )?;
    super::tmpfs::add(
        &mut mounts,
        &super::tmpfs::from_annotations(&container.annotations)?,
    )?;
    if userns.is_some() {
        // Volumes are idmapped to the pod's ids (crun's `idmap` takes the
        // container's mappings): what root writes is owned by host root.
        for m in mounts.mounts.iter_mut() {
            let is_volume = container
                .mounts
                .iter()
                .any(|c| Path::new(&c.container_path) == m.destination().as_path());
            if is_volume && m.typ().as_deref() == Some("bind") {
                let mut o = m.options().clone().unwrap_or_default();
                o.push("idmap".into());
                m.set_options(Some(o));
            }
        }
    }
    let devices = build_devices(&container.devices, inputs.host_devices, privileged)?;
    let res_cfg = linux_cfg.and_then(|l| l.resources.as_ref());
    let resources = build_resources(res_cfg, inputs.swap_limit_supported, devices.rules)?;

    // Capabilities, then seccomp, which depends on them.
    let empty = Vec::new();
    let cap_cfg = sc.and_then(|s| s.capabilities.as_ref());
    let capabilities = container_capabilities(
        privileged,
        &CapabilityRequest {
            add: cap_cfg.map_or(&empty, |c| &c.add_capabilities),
            drop: cap_cfg.map_or(&empty, |c| &c.drop_capabilities),
            ambient: cap_cfg.map_or(&empty, |c| &c.add_ambient_capabilities),
        },
        inputs.host_capabilities,
    )?;
    let seccomp = if privileged {
        None
    } else {
        #[allow(deprecated)]
        let legacy = sc.map_or("", |s| s.seccomp_profile_path.as_str());
        let choice = select_profile(sc.and_then(|s| s.seccomp.as_ref()), legacy)?;
        let bounding = capabilities.bounding().clone().unwrap_or_default();
        build_seccomp(&choice, &bounding)?
    };
    let (masked_paths, readonly_paths) = masked_and_readonly_paths(sc, privileged);

    if let Some(sc) = sc {
        // A group alone would silently apply to the image's user (containerd refuses it too).
        if sc.run_as_group.is_some() && sc.run_as_user.is_none() && sc.run_as_username.is_empty() {
            return Err(SpecError::InvalidUser {
                user: String::new(),
                reason: "run_as_group is set without run_as_user or run_as_username".into(),
            });
        }
    }
    let user = resolve_user(inputs.rootfs, &user_request(sc, image))?;
    let mut process = build_process(inputs, image, &user, privileged)?;
    if let Some(init) = container.annotations.get(super::init::INIT_ANNOTATION) {
        let args = process.args().clone().unwrap_or_default();
        process.set_args(Some(super::init::wrap(args)));
        mounts.mounts.push(super::init::mount(init)?);
    }
    process
        .set_capabilities(Some(capabilities))
        .set_oom_score_adj(oom_score_adj(res_cfg, inputs.min_oom_score_adj)?)
        .set_apparmor_profile(apparmor_profile(
            sc,
            privileged,
            inputs.apparmor_enabled,
            inputs.apparmor_default_profile,
        )?);

    let sysctls: HashMap<String, String> = inputs
        .sandbox
        .linux
        .as_ref()
        .map(|l| l.sysctls.clone())
        .unwrap_or_default();

    let mut linux: Linux = LinuxBuilder::default()
        .namespaces(ns.namespaces)
        .resources(resources)
        .devices(devices.devices)
        .build()?;
    linux
        .set_cgroups_path(
            (!inputs.cgroups_path.is_empty()).then(|| PathBuf::from(&inputs.cgroups_path)),
        )
        .set_seccomp(seccomp)
        .set_rootfs_propagation(mounts.rootfs_propagation)
        .set_masked_paths(masked_paths)
        .set_readonly_paths(readonly_paths)
        .set_sysctl((!sysctls.is_empty()).then_some(sysctls))
        .set_uid_mappings(userns.as_ref().map(|u| vec![u.uid]))
        .set_gid_mappings(userns.as_ref().map(|u| vec![u.gid]));

    let mut spec = SpecBuilder::default()
        .version(OCI_VERSION)
        .root(
            RootBuilder::default()
                .path(inputs.rootfs)
                .readonly(readonly_rootfs)
                .build()?,
        )
        .mounts(mounts.mounts)
        .process(process)
        .annotations(build_annotations(inputs))
        .linux(linux)
        .build()?;
    // A hostname can only be set in a UTS namespace of the container's own.
    // In a user namespace the pod's UTS namespace (owned by the host's) cannot
    // be renamed; `ns-pin` named it already.
    spec.set_hostname((ns.has_uts && userns.is_none()).then(|| inputs.hostname.to_string()));
    spec.set_domainname(None).set_hooks(None);
    tracing::debug!(container_id = inputs.container_id, "built runtime spec");
    Ok(spec)
}

/// The process section, without the security settings `build_spec` adds.
fn build_process(
    inputs: &SpecInputs<'_>,
    image: Option<&oci_spec::image::Config>,
    user: &super::user::ResolvedUser,
    privileged: bool,
) -> Result<Process, SpecError> {
    let container = inputs.container;
    let sc = container
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    let mut p = ProcessBuilder::default()
        .terminal(container.tty)
        .args(process_args(container, image)?)
        .env(process_env(
            image,
            &container.envs,
            inputs.hostname,
            container.tty,
        ))
        .cwd(working_dir(container, image)?)
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(user.additional_gids.clone())
                .build()?,
        )
        .no_new_privileges(!privileged && sc.is_some_and(|s| s.no_new_privs))
        .build()?;
    // The builder's defaults carry youki's rlimits; containers inherit berth's.
    p.set_rlimits(None).set_selinux_label(None);
    Ok(p)
}

fn build_annotations(inputs: &SpecInputs<'_>) -> HashMap<String, String> {
    use annotations::*;
    let mut a = HashMap::new();
    a.insert(
        CONTAINER_TYPE.to_string(),
        CONTAINER_TYPE_CONTAINER.to_string(),
    );
    a.insert(SANDBOX_ID.to_string(), inputs.sandbox_id.to_string());
    if let Some(m) = &inputs.container.metadata {
        a.insert(CONTAINER_NAME.to_string(), m.name.clone());
    }
    if let Some(m) = &inputs.sandbox.metadata {
        a.insert(SANDBOX_NAME.to_string(), m.name.clone());
        a.insert(SANDBOX_NAMESPACE.to_string(), m.namespace.clone());
        a.insert(SANDBOX_UID.to_string(), m.uid.clone());
    }
    if let Some(img) = &inputs.container.image {
        let name = if img.user_specified_image.is_empty() {
            &img.image
        } else {
            &img.user_specified_image
        };
        a.insert(IMAGE_NAME.to_string(), name.clone());
    }
    a
}

#[cfg(test)]
mod tests;
