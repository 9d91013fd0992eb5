//! Linux capabilities for a container: Docker's default set, CRI add/drop/ambient,
//! and name normalisation (`NET_ADMIN`, `CAP_NET_ADMIN` and `net_admin` are one name).

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::SpecError;

/// Every capability the spec crate knows, in kernel number order.
pub const ALL_CAPABILITIES: [Capability; 41] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// The set a non-privileged container starts from: the same fourteen Docker,
/// containerd and CRI-O grant, so images behave as they do elsewhere.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// The kernel's name for a capability, e.g. `CAP_SYS_ADMIN`.
pub fn capability_name(cap: Capability) -> String {
    format!("CAP_{cap}")
}

/// Parses a capability name, case-insensitively, with or without the `CAP_` prefix.
pub fn parse_capability(name: &str) -> Result<Capability, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    ALL_CAPABILITIES
        .iter()
        .copied()
        .find(|cap| cap.to_string() == bare)
        .ok_or_else(|| SpecError::UnknownCapability {
            name: name.to_string(),
        })
}

/// The capabilities in a `/proc/<pid>/status` style hex mask such as `000001fffeffffff`.
pub fn capabilities_from_mask(hex: &str) -> Option<Capabilities> {
    let mask = u64::from_str_radix(hex.trim(), 16).ok()?;
    Some(
        ALL_CAPABILITIES
            .iter()
            .enumerate()
            .filter(|(bit, _)| mask & (1u64 << bit) != 0)
            .map(|(_, cap)| *cap)
            .collect(),
    )
}

/// The bounding set of the calling process: the most any container it starts
/// can hold. Hosts may lack some (a VM without CAP_SYS_RESOURCE, say), and
/// asking the kernel for more makes the OCI runtime fail with a bare EPERM.
pub fn current_bounding_set() -> std::io::Result<Capabilities> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(capabilities_from_mask)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no CapBnd line in /proc/self/status",
            )
        })
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

/// What a CRI `Capability` message asks for, in plain Rust types.
#[derive(Debug, Default, Clone, Copy)]
pub struct CapabilityRequest<'a> {
    pub add: &'a [String],
    pub drop: &'a [String],
    pub ambient: &'a [String],
}

/// Computes the capability sets of a container process.
///
/// `available` is what the host can grant (see [`current_bounding_set`]).
/// Privileged containers get all of it, whatever `add` and `drop` say. Others start from
/// [`DEFAULT_CAPABILITIES`]; then "ALL" in `add` grants everything available and "ALL" in
/// `drop` clears everything, and only after that are the named additions and
/// drops applied, so `add: [ALL], drop: [CHOWN]` means "all but CHOWN" and
/// `drop: [ALL], add: [NET_ADMIN]` means "just NET_ADMIN". A capability both
/// added and dropped by name ends up dropped. Asking by name for a
/// capability the host cannot grant is an error.
///
/// Inheritable stays empty unless ambient capabilities are asked for: carrying
/// capabilities across `execve` of file-capability binaries is what
/// CVE-2022-24769 was about.
pub fn container_capabilities(
    privileged: bool,
    request: &CapabilityRequest<'_>,
    available: &Capabilities,
) -> Result<LinuxCapabilities, SpecError> {
    let grantable = |name: &str| -> Result<Capability, SpecError> {
        let cap = parse_capability(name)?;
        if available.contains(&cap) {
            Ok(cap)
        } else {
            Err(SpecError::CapabilityUnavailable {
                name: capability_name(cap),
            })
        }
    };
    let mut set: Capabilities = if privileged {
        // Privileged means everything; add/drop lists do not apply, as with
        // Docker and containerd.
        available.clone()
    } else {
        let mut set: Capabilities = DEFAULT_CAPABILITIES
            .into_iter()
            .filter(|c| available.contains(c))
            .collect();
        if request.add.iter().any(|n| is_all(n)) {
            set.extend(available.iter().copied());
        }
        if request.drop.iter().any(|n| is_all(n)) {
            set.clear();
        }
        for name in request.add.iter().filter(|n| !is_all(n)) {
            set.insert(grantable(name)?);
        }
        for name in request.drop.iter().filter(|n| !is_all(n)) {
            set.remove(&parse_capability(name)?);
        }
        set
    };

    let mut ambient = Capabilities::new();
    for name in request.ambient {
        if is_all(name) {
            ambient.extend(available.iter().copied());
        } else {
            ambient.insert(grantable(name)?);
        }
    }
    // An ambient capability only survives execve if it is also permitted and
    // inheritable, so asking for one implies granting it.
    set.extend(ambient.iter().copied());

    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()))
        .set_effective(Some(set.clone()))
        .set_permitted(Some(set))
        .set_inheritable((!ambient.is_empty()).then(|| ambient.clone()))
        .set_ambient((!ambient.is_empty()).then_some(ambient));
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn everything() -> Capabilities {
        ALL_CAPABILITIES.into_iter().collect()
    }

    fn bounding(caps: &LinuxCapabilities) -> Capabilities {
        caps.bounding().clone().unwrap()
    }

    #[test]
    fn parse_accepts_prefix_and_case() {
        assert_eq!(parse_capability("NET_ADMIN").unwrap(), Capability::NetAdmin);
        assert_eq!(
            parse_capability("CAP_NET_ADMIN").unwrap(),
            Capability::NetAdmin
        );
        assert_eq!(
            parse_capability("cap_sys_tty_config").unwrap(),
            Capability::SysTtyConfig
        );
        assert_eq!(parse_capability("syslog").unwrap(), Capability::Syslog);
        let err = parse_capability("CAP_FLY").unwrap_err();
        assert_eq!(err.to_string(), "unknown capability \"CAP_FLY\"");
    }

    #[test]
    fn every_known_capability_round_trips_through_its_kernel_name() {
        for cap in ALL_CAPABILITIES {
            let name = capability_name(cap);
            assert_eq!(parse_capability(&name).unwrap(), cap);
            assert_eq!(serde_json::to_value(cap).unwrap(), serde_json::json!(name));
        }
    }

    #[test]
    fn default_set_is_dockers() {
        let caps =
            container_capabilities(false, &CapabilityRequest::default(), &everything()).unwrap();
        let set = bounding(&caps);
        assert_eq!(set.len(), 14);
        assert!(set.contains(&Capability::NetBindService));
        assert!(!set.contains(&Capability::SysAdmin));
        assert_eq!(caps.effective(), caps.bounding());
        assert_eq!(caps.permitted(), caps.bounding());
        assert!(caps.inheritable().is_none());
        assert!(caps.ambient().is_none());
    }

    #[test]
    fn add_and_drop_by_name() {
        let add = strings(&["SYS_ADMIN", "CAP_NET_ADMIN"]);
        let drop = strings(&["chown", "NET_ADMIN"]);
        let caps = container_capabilities(
            false,
            &CapabilityRequest {
                add: &add,
                drop: &drop,
                ambient: &[],
            },
            &everything(),
        )
        .unwrap();
        let set = bounding(&caps);
        assert!(set.contains(&Capability::SysAdmin));
        assert!(!set.contains(&Capability::Chown));
        // Dropped by name wins over added by name.
        assert!(!set.contains(&Capability::NetAdmin));
    }

    #[test]
    fn add_all_then_drop_one() {
        let add = strings(&["ALL"]);
        let drop = strings(&["CHOWN"]);
        let req = CapabilityRequest {
            add: &add,
            drop: &drop,
            ambient: &[],
        };
        let set = bounding(&container_capabilities(false, &req, &everything()).unwrap());
        assert_eq!(set.len(), ALL_CAPABILITIES.len() - 1);
        assert!(!set.contains(&Capability::Chown));
    }

    #[test]
    fn drop_all_then_add_one() {
        let add = strings(&["NET_BIND_SERVICE"]);
        let drop = strings(&["all"]);
        let req = CapabilityRequest {
            add: &add,
            drop: &drop,
            ambient: &[],
        };
        let set = bounding(&container_capabilities(false, &req, &everything()).unwrap());
        assert_eq!(set, [Capability::NetBindService].into_iter().collect());
    }

    #[test]
    fn privileged_gets_everything() {
        let caps =
            container_capabilities(true, &CapabilityRequest::default(), &everything()).unwrap();
        assert_eq!(bounding(&caps).len(), ALL_CAPABILITIES.len());
    }

    #[test]
    fn ambient_is_also_permitted_and_inheritable() {
        let ambient = strings(&["NET_ADMIN"]);
        let req = CapabilityRequest {
            add: &[],
            drop: &[],
            ambient: &ambient,
        };
        let caps = container_capabilities(false, &req, &everything()).unwrap();
        let one: Capabilities = [Capability::NetAdmin].into_iter().collect();
        assert_eq!(caps.ambient().as_ref(), Some(&one));
        assert_eq!(caps.inheritable().as_ref(), Some(&one));
        assert!(bounding(&caps).contains(&Capability::NetAdmin));
    }

    #[test]
    fn unknown_names_are_rejected() {
        let add = strings(&["SYS_MAGIC"]);
        let req = CapabilityRequest {
            add: &add,
            drop: &[],
            ambient: &[],
        };
        let err = container_capabilities(false, &req, &everything()).unwrap_err();
        assert!(matches!(err, SpecError::UnknownCapability { ref name } if name == "SYS_MAGIC"));
    }

    #[test]
    fn mask_parsing() {
        // Everything up to CHECKPOINT_RESTORE except SYS_RESOURCE (bit 24).
        let caps = capabilities_from_mask("000001fffeffffff").unwrap();
        assert_eq!(caps.len(), ALL_CAPABILITIES.len() - 1);
        assert!(!caps.contains(&Capability::SysResource));
        assert_eq!(capabilities_from_mask("0").unwrap().len(), 0);
        assert!(capabilities_from_mask("xyz").is_none());
        assert!(current_bounding_set().is_ok());
    }

    #[test]
    fn limited_host() {
        let mut host = everything();
        host.remove(&Capability::SysResource);
        host.remove(&Capability::AuditWrite);
        let caps = container_capabilities(true, &CapabilityRequest::default(), &host).unwrap();
        assert_eq!(bounding(&caps), host);
        let caps = container_capabilities(false, &CapabilityRequest::default(), &host).unwrap();
        assert_eq!(bounding(&caps).len(), 13, "AUDIT_WRITE is not on this host");
        let add = strings(&["ALL"]);
        let req = CapabilityRequest {
            add: &add,
            drop: &[],
            ambient: &[],
        };
        assert_eq!(
            bounding(&container_capabilities(false, &req, &host).unwrap()),
            host
        );
        let add = strings(&["SYS_RESOURCE"]);
        let req = CapabilityRequest {
            add: &add,
            drop: &[],
            ambient: &[],
        };
        let err = container_capabilities(false, &req, &host).unwrap_err();
        assert_eq!(
            err.to_string(),
            "capability CAP_SYS_RESOURCE is not available on this host"
        );
    }
}
