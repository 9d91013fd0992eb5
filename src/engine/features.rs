//! What each runtime handler can do, as the kubelet asks in `Status`:
//! recursive read-only mounts and user namespaces.
//!
//! Detected once at start-up from the OCI runtime and the kernel:
//! * `<runtime> features` (runc ≥ 1.1, crun ≥ 1.9) lists the mount options
//!   it applies (`rro`), the namespaces it makes (`user`) and whether it
//!   idmaps mounts (`linux.mountExtensions.idmap.enabled`);
//! * a runtime without `features` is known by its `--version`: crun applies
//!   `rro` from 1.8 (verified on Debian's crun 1.8.1); anything else unknown
//!   is reported as unsupported;
//! * recursive read-only needs `mount_setattr(2)`, Linux ≥ 5.12.
//!
//! User namespaces are advertised for a handler whose runtime makes user
//! namespaces and idmaps mounts (volumes are idmapped), on a kernel with
//! user namespaces and `mount_setattr(2)`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

/// berth runs pods with `userns_options` mode POD (`runtime::userns`), so
/// a handler claims user namespaces when its runtime and the kernel can.
pub const BERTH_USER_NAMESPACES: bool = true;

/// How long a runtime may take to describe itself.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A handler's abilities and where they were learnt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HandlerFeatures {
    /// `rro` mounts work (runtime and kernel).
    pub recursive_read_only_mounts: bool,
    /// Pods with their own user namespace can run (berth, runtime and kernel).
    pub user_namespaces: bool,
    /// The runtime creates user namespaces.
    pub runtime_user_namespaces: bool,
    /// The runtime idmaps mounts (`idmap` option / mount uid mappings).
    pub runtime_idmap_mounts: bool,
    /// The runtime checkpoints with CRIU (runc's features annotation).
    pub checkpoint: bool,
    /// `features`, `version` or `unknown`: how the runtime was read.
    pub source: String,
    /// The runtime's `--version` first line.
    pub version: String,
}

/// The kernel facts the handlers' features depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel {
    /// (major, minor) of the running kernel.
    pub release: (u32, u32),
    /// `user.max_user_namespaces` is above zero.
    pub user_namespaces: bool,
}

impl Kernel {
    /// Reads the running kernel.
    pub fn detect() -> Kernel {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|s| parse_release(&s))
            .unwrap_or((0, 0));
        let user_namespaces = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0);
        Kernel {
            release,
            user_namespaces,
        }
    }

    /// `mount_setattr(2)` (recursive read-only, idmapped mounts): Linux 5.12.
    pub fn mount_setattr(&self) -> bool {
        self.release >= (5, 12)
    }
}

/// `6.18.44-fc` → (6, 18).
fn parse_release(s: &str) -> Option<(u32, u32)> {
    let mut it = s.trim().split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// What a runtime binary says about itself.
#[derive(Debug, Default, PartialEq, Eq)]
struct RuntimeAbilities {
    rro: bool,
    user_namespaces: bool,
    idmap: bool,
    checkpoint: bool,
}

/// Reads `features` output (OCI runtime features document).
fn parse_features(json: &[u8]) -> Option<RuntimeAbilities> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let has = |list: &serde_json::Value, item: &str| {
        list.as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(item)))
    };
    let linux = &v["linux"];
    Some(RuntimeAbilities {
        rro: has(&v["mountOptions"], "rro"),
        user_namespaces: has(&linux["namespaces"], "user"),
        idmap: linux["mountExtensions"]["idmap"]["enabled"].as_bool() == Some(true),
        checkpoint: v["annotations"]["org.opencontainers.runc.checkpoint.enabled"].as_str()
            == Some("true"),
    })
}

/// `crun version 1.8.1` → ("crun", (1, 8)).
fn parse_version(out: &str) -> Option<(String, (u32, u32))> {
    let first = out.lines().next()?;
    let mut words = first.split_whitespace();
    let name = words.next()?.to_string();
    if words.next()? != "version" {
        return None;
    }
    Some((name, parse_release(words.next()?)?))
}

/// What a runtime without `features` is known to do, by name and version.
fn known_by_version(name: &str, version: (u32, u32)) -> RuntimeAbilities {
    match name {
        // Checked here with Debian's crun 1.8.1: an `rro` bind mount is
        // read-only in its submounts too; user namespaces with uid/gid
        // mappings and `idmap` bind mounts with mount mappings work.
        // Debian builds crun without CRIU: no checkpoints.
        "crun" if version >= (1, 8) => RuntimeAbilities {
            rro: true,
            user_namespaces: true,
            idmap: true,
            checkpoint: false,
        },
        _ => RuntimeAbilities::default(),
    }
}

/// Runs `binary args`, giving up after [`PROBE_TIMEOUT`]. Blocking.
fn run(binary: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).map(|_| buf)
    });
    let deadline = std::time::Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let out = reader.join().ok()?.ok()?;
    status.success().then_some(out)
}

/// Detects a handler's features. Blocking (runs the runtime binary).
pub fn detect(binary: &Path, kernel: Kernel) -> HandlerFeatures {
    let version = run(binary, &["--version"])
        .map(|o| String::from_utf8_lossy(&o).into_owned())
        .unwrap_or_default();
    let (abilities, source) = match run(binary, &["features"]).and_then(|o| parse_features(&o)) {
        Some(a) => (a, "features"),
        None => match parse_version(&version) {
            Some((name, v)) => (known_by_version(&name, v), "version"),
            None => (RuntimeAbilities::default(), "unknown"),
        },
    };
    combine(
        abilities,
        kernel,
        source,
        version.lines().next().unwrap_or(""),
    )
}

fn combine(a: RuntimeAbilities, kernel: Kernel, source: &str, version: &str) -> HandlerFeatures {
    HandlerFeatures {
        recursive_read_only_mounts: a.rro && kernel.mount_setattr(),
        user_namespaces: BERTH_USER_NAMESPACES
            && a.user_namespaces
            && a.idmap
            && kernel.user_namespaces
            && kernel.mount_setattr(),
        runtime_user_namespaces: a.user_namespaces,
        runtime_idmap_mounts: a.idmap,
        checkpoint: a.checkpoint,
        source: source.to_string(),
        version: version.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNC_115: &str = r#"{"ociVersionMin":"1.0.0","mountOptions":["bind","ro","rro","rw"],
        "linux":{"namespaces":["cgroup","ipc","mount","network","pid","user","uts"]},
        "annotations":{"org.opencontainers.runc.checkpoint.enabled":"true"}}"#;
    const RUNC_12: &str = r#"{"mountOptions":["rro"],"linux":{"namespaces":["user"],
        "mountExtensions":{"idmap":{"enabled":true}}}}"#;
    const NEW_KERNEL: Kernel = Kernel {
        release: (6, 18),
        user_namespaces: true,
    };

    #[test]
    fn features_documents() {
        assert_eq!(
            parse_features(RUNC_115.as_bytes()),
            Some(RuntimeAbilities {
                rro: true,
                user_namespaces: true,
                idmap: false,
                checkpoint: true,
            })
        );
        assert_eq!(
            parse_features(RUNC_12.as_bytes()),
            Some(RuntimeAbilities {
                rro: true,
                user_namespaces: true,
                idmap: true,
                checkpoint: false,
            })
        );
        assert_eq!(parse_features(b"{}"), Some(RuntimeAbilities::default()));
        assert_eq!(parse_features(b"unknown command features"), None);
    }

    #[test]
    fn versions_and_releases() {
        assert_eq!(
            parse_version("crun version 1.8.1\ncommit: f8a0\n"),
            Some(("crun".into(), (1, 8)))
        );
        assert_eq!(
            parse_version("runc version 1.1.5+ds1\n"),
            Some(("runc".into(), (1, 1)))
        );
        assert_eq!(parse_version("garbage"), None);
        assert_eq!(parse_release("6.18.44-fc-v1098\n"), Some((6, 18)));
        assert_eq!(parse_release("5.4.0"), Some((5, 4)));
        assert_eq!(parse_release("x"), None);
        assert!(known_by_version("crun", (1, 8)).rro);
        assert!(!known_by_version("crun", (1, 7)).rro);
        assert!(!known_by_version("youki", (9, 9)).rro);
    }

    #[test]
    fn the_kernel_gates_recursive_read_only() {
        let a = parse_features(RUNC_115.as_bytes()).unwrap();
        let old = Kernel {
            release: (5, 10),
            user_namespaces: true,
        };
        assert!(!combine(a, old, "features", "").recursive_read_only_mounts);
        let a = parse_features(RUNC_115.as_bytes()).unwrap();
        let f = combine(a, NEW_KERNEL, "features", "runc version 1.1.5");
        assert!(f.recursive_read_only_mounts);
        assert!(f.runtime_user_namespaces && !f.runtime_idmap_mounts);
        assert!(f.checkpoint, "runc's annotation");
    }

    #[test]
    fn user_namespaces_need_berth_runtime_and_kernel() {
        let a = parse_features(RUNC_12.as_bytes()).unwrap();
        let f = combine(a, NEW_KERNEL, "features", "");
        assert_eq!(f.user_namespaces, BERTH_USER_NAMESPACES);
        let a = parse_features(RUNC_115.as_bytes()).unwrap();
        assert!(!combine(a, NEW_KERNEL, "features", "").user_namespaces);
    }

    #[test]
    fn detects_a_script_runtime_with_and_without_features() {
        let dir = tempfile::tempdir().unwrap();
        let with = dir.path().join("with");
        std::fs::write(
            &with,
            format!(
                "#!/bin/sh\n[ \"$1\" = features ] && {{ echo '{}'; exit 0; }}\necho 'fake version 2.0'\n",
                RUNC_115.replace('\n', " ")
            ),
        )
        .unwrap();
        let without = dir.path().join("without");
        std::fs::write(
            &without,
            "#!/bin/sh\n[ \"$1\" = features ] && { echo unknown command >&2; exit 1; }\necho 'crun version 1.8.1'\n",
        )
        .unwrap();
        for p in [&with, &without] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let f = detect(&with, NEW_KERNEL);
        assert_eq!(f.source, "features");
        assert_eq!(f.version, "fake version 2.0");
        assert!(f.recursive_read_only_mounts && f.runtime_user_namespaces);
        let f = detect(&without, NEW_KERNEL);
        assert_eq!(f.source, "version");
        assert!(f.recursive_read_only_mounts && f.runtime_idmap_mounts);
        let f = detect(&dir.path().join("missing"), NEW_KERNEL);
        assert_eq!(f.source, "unknown");
        assert!(!f.recursive_read_only_mounts);
    }
}
