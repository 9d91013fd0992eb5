use super::*;
use crate::runtime::caps::DEFAULT_CAPABILITIES;
use oci_spec::runtime::{Capability, LinuxSeccompOperator};

fn default_caps() -> Capabilities {
    DEFAULT_CAPABILITIES.into_iter().collect()
}

fn with(extra: Capability) -> Capabilities {
    let mut caps = default_caps();
    caps.insert(extra);
    caps
}

/// The rules that mention `name`.
fn rules_for<'a>(profile: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
    profile
        .syscalls()
        .as_ref()
        .unwrap()
        .iter()
        .filter(|s| s.names().iter().any(|n| n == name))
        .collect()
}

/// Whether `name` is allowed without argument conditions.
fn allowed(profile: &LinuxSeccomp, name: &str) -> bool {
    rules_for(profile, name)
        .iter()
        .any(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
}

#[test]
fn select_from_security_profile() {
    let p = |t: ProfileType, r: &str| SecurityProfile {
        profile_type: t as i32,
        localhost_ref: r.to_string(),
    };
    assert_eq!(
        select_profile(Some(&p(ProfileType::RuntimeDefault, "")), "unconfined").unwrap(),
        SeccompChoice::RuntimeDefault
    );
    assert_eq!(
        select_profile(Some(&p(ProfileType::Unconfined, "")), "").unwrap(),
        SeccompChoice::Unconfined
    );
    assert_eq!(
        select_profile(
            Some(&p(
                ProfileType::Localhost,
                "/var/lib/kubelet/seccomp/a.json"
            )),
            ""
        )
        .unwrap(),
        SeccompChoice::Localhost("/var/lib/kubelet/seccomp/a.json".into())
    );
    let err = select_profile(Some(&p(ProfileType::Localhost, "a.json")), "").unwrap_err();
    assert!(
        err.to_string().contains("must be an absolute path"),
        "{err}"
    );
}

#[test]
fn select_from_deprecated_path() {
    assert_eq!(select_profile(None, "").unwrap(), SeccompChoice::Unconfined);
    assert_eq!(
        select_profile(None, "unconfined").unwrap(),
        SeccompChoice::Unconfined
    );
    assert_eq!(
        select_profile(None, "runtime/default").unwrap(),
        SeccompChoice::RuntimeDefault
    );
    assert_eq!(
        select_profile(None, "docker/default").unwrap(),
        SeccompChoice::RuntimeDefault
    );
    assert_eq!(
        select_profile(None, "localhost//etc/p.json").unwrap(),
        SeccompChoice::Localhost("/etc/p.json".into())
    );
    assert!(matches!(
        select_profile(None, "bogus").unwrap_err(),
        SpecError::InvalidSeccompProfile { .. }
    ));
}

#[test]
fn default_profile_denies_with_eperm_on_x86() {
    let p = default_profile(&default_caps(), "x86_64").unwrap();
    assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(p.default_errno_ret(), Some(1));
    assert_eq!(
        p.architectures().as_deref(),
        Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
    );
    for name in [
        "read",
        "write",
        "execve",
        "mmap",
        "openat",
        "futex",
        "socket",
        "exit_group",
    ] {
        assert!(allowed(&p, name), "{name} should be allowed");
    }
    assert!(allowed(&p, "arch_prctl"));
    assert!(!allowed(&p, "set_tls"));
    for name in [
        "mount",
        "unshare",
        "setns",
        "reboot",
        "init_module",
        "keyctl",
        "userfaultfd",
    ] {
        assert!(!allowed(&p, name), "{name} should be denied");
    }
    // chroot comes with CAP_SYS_CHROOT, which is in the default set.
    assert!(allowed(&p, "chroot"));
}

#[test]
fn default_profile_on_arm64() {
    let p = default_profile(&default_caps(), "aarch64").unwrap();
    assert_eq!(
        p.architectures().as_deref(),
        Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
    );
    assert!(allowed(&p, "set_tls"));
    assert!(!allowed(&p, "arch_prctl"));
}

#[test]
fn clone_is_restricted_without_sys_admin() {
    let p = default_profile(&default_caps(), "x86_64").unwrap();
    let clone = rules_for(&p, "clone");
    assert_eq!(clone.len(), 1);
    let args = clone[0].args().as_ref().unwrap();
    assert_eq!(args[0].index(), 0);
    assert_eq!(args[0].value(), default::CLONE_NAMESPACE_FLAGS);
    assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);

    let clone3 = rules_for(&p, "clone3");
    assert_eq!(clone3.len(), 1);
    assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(clone3[0].errno_ret(), Some(38));
}

#[test]
fn sys_admin_unlocks_namespaces_and_mounts() {
    let p = default_profile(&with(Capability::SysAdmin), "x86_64").unwrap();
    for name in ["clone", "clone3", "unshare", "setns", "mount", "umount2"] {
        assert!(
            allowed(&p, name),
            "{name} should be allowed with CAP_SYS_ADMIN"
        );
    }
    assert!(rules_for(&p, "clone3")
        .iter()
        .all(|r| r.action() == LinuxSeccompAction::ScmpActAllow));
    assert!(!allowed(&p, "reboot"));
    assert!(allowed(
        &default_profile(&with(Capability::SysBoot), "x86_64").unwrap(),
        "reboot"
    ));
    assert!(allowed(
        &default_profile(&with(Capability::SysPtrace), "x86_64").unwrap(),
        "process_vm_readv"
    ));
}

#[test]
fn personality_only_with_known_values() {
    let p = default_profile(&default_caps(), "x86_64").unwrap();
    let rules = rules_for(&p, "personality");
    assert_eq!(rules.len(), 5);
    assert!(rules
        .iter()
        .all(|r| r.args().as_ref().is_some_and(|a| a.len() == 1)));
}

#[test]
fn localhost_profile_in_docker_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.json");
    std::fs::write(
        &path,
        r#"{
          "defaultAction": "SCMP_ACT_ERRNO",
          "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
          ],
          "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "basics"},
            {"name": "mount", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "excludes": {"caps": ["KILL"]}},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
          ]
        }"#,
    )
    .unwrap();
    let p = load_profile(&path, &default_caps()).unwrap();
    assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert!(allowed(&p, "read"));
    assert!(!allowed(&p, "mount"));
    assert!(
        rules_for(&p, "kill").is_empty(),
        "CAP_KILL is held, so the rule is excluded"
    );
    assert_eq!(
        rules_for(&p, "personality")[0].args().as_ref().unwrap()[0].value(),
        8
    );
    let native = host_architectures(std::env::consts::ARCH);
    if let Some(first) = native.first() {
        if matches!(first, Arch::ScmpArchX86_64 | Arch::ScmpArchAarch64) {
            assert_eq!(p.architectures().as_ref().unwrap()[0], *first);
        }
    }
    let p = load_profile(&path, &with(Capability::SysAdmin)).unwrap();
    assert!(allowed(&p, "mount"));
}

#[test]
fn localhost_profile_in_oci_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oci.json");
    std::fs::write(
        &path,
        r#"{"defaultAction": "SCMP_ACT_LOG", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    let p = load_profile(&path, &default_caps()).unwrap();
    assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActLog);
    assert_eq!(
        p.architectures().as_deref(),
        Some(&[Arch::ScmpArchX86_64][..])
    );
    assert_eq!(rules_for(&p, "getpid")[0].errno_ret(), Some(1));
}

#[test]
fn localhost_profile_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let err = load_profile(&missing, &default_caps()).unwrap_err();
    assert!(matches!(err, SpecError::ReadSeccompProfile { .. }), "{err}");
    assert!(err
        .to_string()
        .starts_with("failed to read seccomp profile"));

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"syscalls": []}"#).unwrap();
    let err = load_profile(&bad, &default_caps()).unwrap_err();
    assert!(
        matches!(err, SpecError::ParseSeccompProfile { .. }),
        "{err}"
    );
}

#[test]
fn default_profile_serialises_as_oci() {
    let p = default_profile(&default_caps(), "x86_64").unwrap();
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(json["defaultErrnoRet"], 1);
    assert_eq!(json["architectures"][0], "SCMP_ARCH_X86_64");
    let names: Vec<&str> = json["syscalls"][0]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        names.len(),
        "the base allowlist has duplicates"
    );
    assert!(names.len() > 250);
}
