//! Seccomp for containers: choosing a profile from the CRI request, berth's
//! built-in RuntimeDefault profile, and loading Localhost profiles.
//!
//! Profiles are written in the format Docker, containerd and the Kubernetes
//! security-profiles-operator share: OCI `LinuxSeccomp` plus `archMap` and
//! per-rule `includes`/`excludes` filters on capabilities and architectures.
//! A profile is *compiled* for one container: rules whose filters do not
//! match its bounding capabilities or the host architecture are dropped, and
//! what is left is plain OCI that crun/runc understand.

mod default;

use std::path::{Path, PathBuf};

use k8s_cri::v1::security_profile::ProfileType;
use k8s_cri::v1::SecurityProfile;
use oci_spec::runtime::{
    Arch, Capabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSyscall,
};
use serde::Deserialize;

use super::caps::parse_capability;
use super::SpecError;

/// Which seccomp profile a container asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    /// No filter at all.
    Unconfined,
    /// berth's built-in default profile.
    RuntimeDefault,
    /// A profile file on the host, by absolute path.
    Localhost(PathBuf),
}

/// Picks the profile from the `seccomp` field, falling back to the deprecated
/// `seccomp_profile_path` (`runtime/default`, `docker/default`, `unconfined`,
/// `localhost/<path>`). Neither set means unconfined, as the CRI defines it.
pub fn select_profile(
    profile: Option<&SecurityProfile>,
    deprecated_path: &str,
) -> Result<SeccompChoice, SpecError> {
    if let Some(profile) = profile {
        return match profile.profile_type() {
            ProfileType::RuntimeDefault => Ok(SeccompChoice::RuntimeDefault),
            ProfileType::Unconfined => Ok(SeccompChoice::Unconfined),
            ProfileType::Localhost => localhost(&profile.localhost_ref),
        };
    }
    match deprecated_path {
        "" | "unconfined" => Ok(SeccompChoice::Unconfined),
        "runtime/default" | "docker/default" => Ok(SeccompChoice::RuntimeDefault),
        other => match other.strip_prefix("localhost/") {
            Some(path) => localhost(path),
            None => Err(SpecError::InvalidSeccompProfile {
                profile: other.to_string(),
                reason: "expected runtime/default, docker/default, unconfined or localhost/<path>"
                    .to_string(),
            }),
        },
    }
}

fn localhost(path: &str) -> Result<SeccompChoice, SpecError> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(SpecError::InvalidSeccompProfile {
            profile: path.to_string(),
            reason: "a localhost profile must be an absolute path".to_string(),
        });
    }
    Ok(SeccompChoice::Localhost(p.to_path_buf()))
}

/// Turns a choice into the spec's seccomp section for a container whose
/// bounding set is `caps`. `None` means unconfined.
pub fn build_seccomp(
    choice: &SeccompChoice,
    caps: &Capabilities,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    match choice {
        SeccompChoice::Unconfined => Ok(None),
        SeccompChoice::RuntimeDefault => default_profile(caps, std::env::consts::ARCH).map(Some),
        SeccompChoice::Localhost(path) => load_profile(path, caps).map(Some),
    }
}

/// berth's RuntimeDefault profile compiled for `caps` on `host_arch` (a Rust
/// `std::env::consts::ARCH` name such as `x86_64` or `aarch64`).
pub fn default_profile(caps: &Capabilities, host_arch: &str) -> Result<LinuxSeccomp, SpecError> {
    Ok(default::profile()?.compile(caps, host_arch))
}

/// Reads and compiles a Localhost profile file.
pub fn load_profile(path: &Path, caps: &Capabilities) -> Result<LinuxSeccomp, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::ReadSeccompProfile {
        path: path.to_path_buf(),
        source,
    })?;
    let profile: Profile =
        serde_json::from_str(&text).map_err(|source| SpecError::ParseSeccompProfile {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(profile.compile(caps, std::env::consts::ARCH))
}

/// A seccomp profile in the Docker/containerd file format.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<Arch>,
    #[serde(default)]
    arch_map: Vec<ArchMapEntry>,
    #[serde(default)]
    flags: Vec<LinuxSeccompFilterFlag>,
    #[serde(default)]
    listener_path: Option<PathBuf>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Vec<Arch>,
}

/// One syscall rule, possibly conditional on capabilities or architecture.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Vec<String>,
    /// Old single-name form.
    #[serde(default)]
    name: Option<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<LinuxSeccompArg>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

/// Conditions on a rule. `minKernel` is accepted and ignored: every kernel
/// berth supports is newer than the ones profiles gate on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
}

/// The OCI architectures of a host: its own plus the compat ABIs it runs.
fn host_architectures(host_arch: &str) -> Vec<Arch> {
    match host_arch {
        "x86_64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "x86" => vec![Arch::ScmpArchX86],
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        "arm" => vec![Arch::ScmpArchArm],
        "s390x" => vec![Arch::ScmpArchS390x, Arch::ScmpArchS390],
        "riscv64" => vec![Arch::ScmpArchRiscv64],
        "powerpc64" => vec![Arch::ScmpArchPpc64le],
        _ => Vec::new(),
    }
}

/// Whether a rule's `arches` entry names this host. Profiles use Go's names
/// (`amd64`, `arm64`); the kernel's (`x86_64`, `aarch64`) are accepted too.
fn arch_matches(name: &str, host_arch: &str) -> bool {
    let aliases: &[&str] = match host_arch {
        "x86_64" => &["amd64", "x86_64"],
        "x86" => &["386", "x86", "i386"],
        "aarch64" => &["arm64", "aarch64"],
        "arm" => &["arm"],
        "s390x" => &["s390x"],
        "riscv64" => &["riscv64"],
        "powerpc64" => &["ppc64le", "ppc64"],
        other => return name == other,
    };
    aliases.contains(&name)
}

fn has_cap(caps: &Capabilities, name: &str) -> bool {
    parse_capability(name).is_ok_and(|c| caps.contains(&c))
}

impl Rule {
    fn applies(&self, caps: &Capabilities, host_arch: &str) -> bool {
        let inc = &self.includes;
        let exc = &self.excludes;
        inc.caps.iter().all(|c| has_cap(caps, c))
            && (inc.arches.is_empty() || inc.arches.iter().any(|a| arch_matches(a, host_arch)))
            && !exc.caps.iter().any(|c| has_cap(caps, c))
            && !exc.arches.iter().any(|a| arch_matches(a, host_arch))
    }
}

impl Profile {
    /// Keeps the rules that apply to this container and host, as plain OCI.
    fn compile(&self, caps: &Capabilities, host_arch: &str) -> LinuxSeccomp {
        let mut architectures = self.architectures.clone();
        let native = host_architectures(host_arch);
        if let Some(entry) = self
            .arch_map
            .iter()
            .find(|e| native.first() == Some(&e.architecture))
        {
            architectures.push(entry.architecture);
            architectures.extend(entry.sub_architectures.iter().copied());
        }
        let mut deduped: Vec<Arch> = Vec::new();
        for a in architectures {
            if !deduped.contains(&a) {
                deduped.push(a);
            }
        }

        let syscalls: Vec<LinuxSyscall> = self
            .syscalls
            .iter()
            .filter(|r| r.applies(caps, host_arch))
            .filter_map(|r| {
                let mut names = r.names.clone();
                names.extend(r.name.iter().cloned());
                if names.is_empty() {
                    return None;
                }
                let mut sc = LinuxSyscall::default();
                sc.set_names(names)
                    .set_action(r.action)
                    .set_errno_ret(r.errno_ret)
                    .set_args((!r.args.is_empty()).then(|| r.args.clone()));
                Some(sc)
            })
            .collect();

        let mut out = LinuxSeccomp::default();
        out.set_default_action(self.default_action)
            .set_default_errno_ret(self.default_errno_ret)
            .set_architectures((!deduped.is_empty()).then_some(deduped))
            .set_flags((!self.flags.is_empty()).then(|| self.flags.clone()))
            .set_listener_path(self.listener_path.clone())
            .set_listener_metadata(self.listener_metadata.clone())
            .set_syscalls((!syscalls.is_empty()).then_some(syscalls));
        out
    }
}

#[cfg(test)]
mod tests;
