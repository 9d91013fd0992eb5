//! A pod's user namespace (`hostUsers: false`): the kubelet's one uid and
//! one gid mapping, container id 0 first, applied to every container of the
//! pod. NODE (or none) means the host's user namespace; CONTAINER and
//! TARGET are refused, as the kubelet never asks for them.

use k8s_cri::v1::{IdMapping, NamespaceMode, PodSandboxConfig};
use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};

use super::SpecError;

/// The uid and gid mappings of a user-namespaced pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUserNamespace {
    pub uid: LinuxIdMapping,
    pub gid: LinuxIdMapping,
}

fn invalid(reason: impl Into<String>) -> SpecError {
    SpecError::InvalidNamespace {
        reason: reason.into(),
    }
}

fn one(what: &str, maps: &[IdMapping]) -> Result<LinuxIdMapping, SpecError> {
    let [m] = maps else {
        return Err(invalid(format!(
            "a user namespace needs exactly one {what} mapping, got {}",
            maps.len()
        )));
    };
    if m.container_id != 0 {
        return Err(invalid(format!(
            "the {what} mapping must start at container id 0, not {}",
            m.container_id
        )));
    }
    if m.length == 0 || u64::from(m.host_id) + u64::from(m.length) > 1 << 32 {
        return Err(invalid(format!(
            "bad {what} mapping: host id {} length {}",
            m.host_id, m.length
        )));
    }
    Ok(LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(m.host_id)
        .size(m.length)
        .build()?)
}

/// The pod's user namespace, if it asks for one; an unsupported mode or
/// mapping is an error.
pub fn pod_user_namespace(pod: &PodSandboxConfig) -> Result<Option<PodUserNamespace>, SpecError> {
    let Some(u) = pod
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .and_then(|n| n.userns_options.as_ref())
    else {
        return Ok(None);
    };
    match u.mode() {
        NamespaceMode::Node => Ok(None),
        NamespaceMode::Pod => Ok(Some(PodUserNamespace {
            uid: one("uid", &u.uids)?,
            gid: one("gid", &u.gids)?,
        })),
        m => Err(invalid(format!(
            "user namespace mode {} is not supported (NODE or POD)",
            m.as_str_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{
        LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption, UserNamespace,
    };

    fn pod(mode: NamespaceMode, maps: Vec<IdMapping>) -> PodSandboxConfig {
        PodSandboxConfig {
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        userns_options: Some(UserNamespace {
                            mode: mode as i32,
                            uids: maps.clone(),
                            gids: maps,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn map(container_id: u32, host_id: u32, length: u32) -> IdMapping {
        IdMapping {
            container_id,
            host_id,
            length,
        }
    }

    #[test]
    fn modes_and_mappings() {
        assert_eq!(
            pod_user_namespace(&PodSandboxConfig::default()).unwrap(),
            None
        );
        assert_eq!(
            pod_user_namespace(&pod(NamespaceMode::Node, vec![])).unwrap(),
            None
        );
        let u = pod_user_namespace(&pod(NamespaceMode::Pod, vec![map(0, 1000, 65536)]))
            .unwrap()
            .unwrap();
        assert_eq!((u.uid.host_id(), u.uid.size()), (1000, 65536));
        for bad in [
            pod(NamespaceMode::Pod, vec![map(0, 1000, 10), map(0, 2000, 10)]),
            pod(NamespaceMode::Pod, vec![map(1, 1000, 10)]),
            pod(NamespaceMode::Pod, vec![]),
            pod(NamespaceMode::Pod, vec![map(0, u32::MAX, 10)]),
            pod(NamespaceMode::Container, vec![]),
            pod(NamespaceMode::Target, vec![]),
        ] {
            let err = pod_user_namespace(&bad).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid namespace options"),
                "{err}"
            );
        }
    }
}
