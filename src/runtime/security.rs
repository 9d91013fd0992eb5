//! AppArmor profile choice and the masked/read-only `/proc` and `/sys` paths.

use k8s_cri::v1::security_profile::ProfileType;
use k8s_cri::v1::LinuxContainerSecurityContext;

use super::SpecError;

/// Paths hidden from non-privileged containers: kernel memory and timing
/// side channels, host hardware and firmware interfaces.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Paths non-privileged containers see read-only: host-wide kernel knobs.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Masked and read-only paths: none for privileged containers, the CRI lists
/// when the kubelet sends them (it does, resolved from `procMount`), else the defaults.
pub(crate) fn masked_and_readonly_paths(
    sc: Option<&LinuxContainerSecurityContext>,
    privileged: bool,
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    if privileged {
        return (None, None);
    }
    let pick = |requested: Option<&Vec<String>>, default: &[&str]| {
        Some(match requested {
            Some(paths) if !paths.is_empty() => paths.clone(),
            _ => default.iter().map(|s| s.to_string()).collect(),
        })
    };
    (
        pick(sc.map(|s| &s.masked_paths), DEFAULT_MASKED_PATHS),
        pick(sc.map(|s| &s.readonly_paths), DEFAULT_READONLY_PATHS),
    )
}

#[derive(Debug, PartialEq, Eq)]
enum AppArmorChoice {
    RuntimeDefault,
    Unconfined,
    Localhost(String),
}

fn apparmor_choice(
    sc: Option<&LinuxContainerSecurityContext>,
) -> Result<AppArmorChoice, SpecError> {
    let Some(sc) = sc else {
        return Ok(AppArmorChoice::RuntimeDefault);
    };
    if let Some(p) = &sc.apparmor {
        return Ok(match p.profile_type() {
            ProfileType::RuntimeDefault => AppArmorChoice::RuntimeDefault,
            ProfileType::Unconfined => AppArmorChoice::Unconfined,
            ProfileType::Localhost => AppArmorChoice::Localhost(p.localhost_ref.clone()),
        });
    }
    #[allow(deprecated)]
    let legacy = sc.apparmor_profile.as_str();
    match legacy {
        "" | "runtime/default" => Ok(AppArmorChoice::RuntimeDefault),
        "unconfined" => Ok(AppArmorChoice::Unconfined),
        other => match other.strip_prefix("localhost/") {
            Some(name) => Ok(AppArmorChoice::Localhost(name.to_string())),
            None => Err(SpecError::InvalidAppArmorProfile {
                profile: other.to_string(),
                reason: "expected runtime/default, unconfined or localhost/<name>".to_string(),
            }),
        },
    }
}

/// The AppArmor profile name for the process, if any.
///
/// With AppArmor off on the host, the runtime default quietly means none, but
/// an explicitly named profile is an error rather than silently unconfined.
/// Privileged containers ignore the runtime default, as with Docker.
/// `default_profile` is the name of berth's default profile when it is loaded.
pub(crate) fn apparmor_profile(
    sc: Option<&LinuxContainerSecurityContext>,
    privileged: bool,
    enabled: bool,
    default_profile: Option<&str>,
) -> Result<Option<String>, SpecError> {
    match apparmor_choice(sc)? {
        AppArmorChoice::Unconfined => Ok(None),
        AppArmorChoice::RuntimeDefault if privileged || !enabled => Ok(None),
        AppArmorChoice::RuntimeDefault => Ok(default_profile.map(String::from)),
        AppArmorChoice::Localhost(name) if name.is_empty() => {
            Err(SpecError::InvalidAppArmorProfile {
                profile: name,
                reason: "a localhost profile needs a name".to_string(),
            })
        }
        AppArmorChoice::Localhost(name) if !enabled => {
            Err(SpecError::AppArmorUnavailable { profile: name })
        }
        AppArmorChoice::Localhost(name) => Ok(Some(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::SecurityProfile;

    fn sc_with(p: ProfileType, name: &str) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            apparmor: Some(SecurityProfile {
                profile_type: p as i32,
                localhost_ref: name.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn apparmor_choices() {
        let default = sc_with(ProfileType::RuntimeDefault, "");
        assert_eq!(
            apparmor_profile(Some(&default), false, true, Some("berth-default")).unwrap(),
            Some("berth-default".to_string())
        );
        assert_eq!(
            apparmor_profile(Some(&default), true, true, Some("d")).unwrap(),
            None
        );
        assert_eq!(
            apparmor_profile(Some(&default), false, false, Some("d")).unwrap(),
            None
        );
        assert_eq!(
            apparmor_profile(Some(&default), false, true, None).unwrap(),
            None
        );

        let unconfined = sc_with(ProfileType::Unconfined, "");
        assert_eq!(
            apparmor_profile(Some(&unconfined), false, true, Some("d")).unwrap(),
            None
        );

        let local = sc_with(ProfileType::Localhost, "k8s-nginx");
        assert_eq!(
            apparmor_profile(Some(&local), true, true, None).unwrap(),
            Some("k8s-nginx".to_string())
        );
        let err = apparmor_profile(Some(&local), false, false, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "apparmor is not enabled on this host, cannot apply profile \"k8s-nginx\""
        );
    }

    #[test]
    #[allow(deprecated)]
    fn apparmor_legacy_field() {
        let mut sc = LinuxContainerSecurityContext {
            apparmor_profile: "localhost/legacy".into(),
            ..Default::default()
        };
        assert_eq!(
            apparmor_profile(Some(&sc), false, true, None).unwrap(),
            Some("legacy".to_string())
        );
        sc.apparmor_profile = "unconfined".into();
        assert_eq!(
            apparmor_profile(Some(&sc), false, true, Some("d")).unwrap(),
            None
        );
        sc.apparmor_profile = "weird".into();
        assert!(apparmor_profile(Some(&sc), false, true, None).is_err());
    }

    #[test]
    fn masked_paths_defaults_overrides_and_privileged() {
        let (masked, ro) = masked_and_readonly_paths(None, false);
        assert!(masked.unwrap().contains(&"/proc/kcore".to_string()));
        assert!(ro.unwrap().contains(&"/proc/sys".to_string()));

        let sc = LinuxContainerSecurityContext {
            masked_paths: vec!["/proc/secret".into()],
            readonly_paths: vec!["/proc/ro".into()],
            ..Default::default()
        };
        let (masked, ro) = masked_and_readonly_paths(Some(&sc), false);
        assert_eq!(masked.unwrap(), ["/proc/secret"]);
        assert_eq!(ro.unwrap(), ["/proc/ro"]);

        assert_eq!(masked_and_readonly_paths(Some(&sc), true), (None, None));
    }
}
