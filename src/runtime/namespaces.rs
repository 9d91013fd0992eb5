//! Which Linux namespaces a container gets, joins or shares with the host.
//!
//! | CRI mode  | network, ipc            | pid                          |
//! |-----------|-------------------------|------------------------------|
//! | POD       | join the pod's (pinned) | join the pod's, if it has one |
//! | CONTAINER | a new one               | a new one                    |
//! | NODE      | the host's (no entry)   | the host's (no entry)        |
//! | TARGET    | invalid                 | join the target container's  |
//!
//! UTS follows the network: the pod's unless the pod uses the host network.
//! Mount is always new; cgroup is new when the host asks for it (cgroup v2).

use std::path::Path;

use k8s_cri::v1::{NamespaceMode, NamespaceOption};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType};

use super::SpecError;

/// Paths of namespaces a container may join, pinned by bind mounts.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct NamespacePaths<'a> {
    pub net: Option<&'a Path>,
    pub ipc: Option<&'a Path>,
    pub uts: Option<&'a Path>,
    pub pid: Option<&'a Path>,
    pub target_pid: Option<&'a Path>,
}

/// The namespaces and what they imply for the rest of the spec.
#[derive(Debug)]
pub(crate) struct NamespacePlan {
    pub namespaces: Vec<LinuxNamespace>,
    pub host_ipc: bool,
    /// Whether the container has a UTS namespace, so a hostname may be set.
    pub has_uts: bool,
}

fn ns(typ: LinuxNamespaceType, path: Option<&Path>) -> Result<LinuxNamespace, SpecError> {
    let mut b = LinuxNamespaceBuilder::default().typ(typ);
    if let Some(p) = path {
        b = b.path(p);
    }
    Ok(b.build()?)
}

fn invalid(reason: impl Into<String>) -> SpecError {
    SpecError::InvalidNamespace {
        reason: reason.into(),
    }
}

/// Builds the namespace list from the container's namespace options.
pub(crate) fn build_namespaces(
    opts: Option<&NamespaceOption>,
    paths: &NamespacePaths<'_>,
    cgroup_namespace: bool,
) -> Result<NamespacePlan, SpecError> {
    let default = NamespaceOption::default();
    let opts = opts.unwrap_or(&default);
    // The user namespace is the pod's (see `userns`), whatever a container says.

    let mut namespaces = Vec::with_capacity(6);
    match opts.pid() {
        NamespaceMode::Node => {}
        NamespaceMode::Container => namespaces.push(ns(LinuxNamespaceType::Pid, None)?),
        NamespaceMode::Pod => namespaces.push(ns(LinuxNamespaceType::Pid, paths.pid)?),
        NamespaceMode::Target => {
            let target = paths.target_pid.ok_or_else(|| {
                invalid(format!(
                    "pid namespace of target container {:?} is not available",
                    opts.target_id
                ))
            })?;
            namespaces.push(ns(LinuxNamespaceType::Pid, Some(target))?);
        }
    }

    let shared =
        |mode: NamespaceMode, typ, path, what: &str| -> Result<Option<LinuxNamespace>, SpecError> {
            match mode {
                NamespaceMode::Node => Ok(None),
                NamespaceMode::Container => Ok(Some(ns(typ, None)?)),
                NamespaceMode::Pod => Ok(Some(ns(typ, path)?)),
                NamespaceMode::Target => Err(invalid(format!(
                    "{what} namespace cannot target a container"
                ))),
            }
        };
    let net = shared(
        opts.network(),
        LinuxNamespaceType::Network,
        paths.net,
        "network",
    )?;
    let ipc = shared(opts.ipc(), LinuxNamespaceType::Ipc, paths.ipc, "ipc")?;
    let host_network = net.is_none();
    let host_ipc = ipc.is_none();
    namespaces.extend(net);
    namespaces.extend(ipc);
    if !host_network {
        namespaces.push(ns(LinuxNamespaceType::Uts, paths.uts)?);
    }
    namespaces.push(ns(LinuxNamespaceType::Mount, None)?);
    if cgroup_namespace {
        namespaces.push(ns(LinuxNamespaceType::Cgroup, None)?);
    }
    Ok(NamespacePlan {
        namespaces,
        host_ipc,
        has_uts: !host_network,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(network: NamespaceMode, pid: NamespaceMode, ipc: NamespaceMode) -> NamespaceOption {
        NamespaceOption {
            network: network as i32,
            pid: pid as i32,
            ipc: ipc as i32,
            ..Default::default()
        }
    }

    fn paths() -> NamespacePaths<'static> {
        NamespacePaths {
            net: Some(Path::new("/run/berth/ns/net")),
            ipc: Some(Path::new("/run/berth/ns/ipc")),
            uts: Some(Path::new("/run/berth/ns/uts")),
            pid: Some(Path::new("/run/berth/ns/pid")),
            target_pid: None,
        }
    }

    fn summary(plan: &NamespacePlan) -> Vec<(String, Option<String>)> {
        plan.namespaces
            .iter()
            .map(|n| {
                (
                    n.typ().to_string(),
                    n.path().as_ref().map(|p| p.display().to_string()),
                )
            })
            .collect()
    }

    fn entry(t: &str, p: Option<&str>) -> (String, Option<String>) {
        (t.to_string(), p.map(String::from))
    }

    #[test]
    fn typical_pod_container() {
        use NamespaceMode::*;
        let plan = build_namespaces(Some(&opts(Pod, Container, Pod)), &paths(), false).unwrap();
        assert_eq!(
            summary(&plan),
            [
                entry("pid", None),
                entry("net", Some("/run/berth/ns/net")),
                entry("ipc", Some("/run/berth/ns/ipc")),
                entry("uts", Some("/run/berth/ns/uts")),
                entry("mnt", None),
            ]
        );
        assert!(!plan.host_ipc && plan.has_uts);
    }

    #[test]
    fn shared_pid_and_cgroup_namespace() {
        use NamespaceMode::*;
        let plan = build_namespaces(Some(&opts(Pod, Pod, Pod)), &paths(), true).unwrap();
        let s = summary(&plan);
        assert_eq!(s[0], entry("pid", Some("/run/berth/ns/pid")));
        assert_eq!(s.last().unwrap(), &entry("cgroup", None));
    }

    #[test]
    fn host_namespaces_have_no_entry() {
        use NamespaceMode::*;
        let plan = build_namespaces(Some(&opts(Node, Node, Node)), &paths(), false).unwrap();
        assert_eq!(summary(&plan), [entry("mnt", None)]);
        assert!(plan.host_ipc && !plan.has_uts);
    }

    #[test]
    fn target_pid_namespace() {
        use NamespaceMode::*;
        let mut o = opts(Pod, Target, Pod);
        o.target_id = "abc".into();
        let err = build_namespaces(Some(&o), &paths(), false).unwrap_err();
        assert!(
            err.to_string().contains("target container \"abc\""),
            "{err}"
        );
        let paths = NamespacePaths {
            target_pid: Some(Path::new("/proc/42/ns/pid")),
            ..paths()
        };
        let plan = build_namespaces(Some(&o), &paths, false).unwrap();
        assert_eq!(summary(&plan)[0], entry("pid", Some("/proc/42/ns/pid")));
        let bad = opts(Target, Pod, Pod);
        assert!(build_namespaces(Some(&bad), &paths, false).is_err());
    }

    #[test]
    fn missing_options_mean_pod_everything() {
        let plan = build_namespaces(None, &NamespacePaths::default(), false).unwrap();
        let types: Vec<_> = summary(&plan).into_iter().map(|(t, _)| t).collect();
        assert_eq!(types, ["pid", "net", "ipc", "uts", "mnt"]);
    }
}
