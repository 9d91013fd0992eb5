//! tmpfs mounts a container asks for beyond CRI's binds (Docker's `--tmpfs`
//! and `Mounts` of type `tmpfs`), carried in a container annotation as JSON
//! and added to the mount table by the spec builder.

use std::path::Path;

use oci_spec::runtime::{Mount, MountBuilder};
use serde::{Deserialize, Serialize};

use super::mounts::MountPlan;
use super::SpecError;

/// Container annotation: a JSON list of [`TmpfsMount`].
pub const TMPFS_ANNOTATION: &str = "io.berth.tmpfs";

/// One tmpfs: where, and its mount options (checked by [`TmpfsMount::new`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsMount {
    pub path: String,
    pub options: Vec<String>,
}

/// Flags a tmpfs may take, with their opposites.
const FLAGS: &[(&str, &str)] = &[
    ("exec", "noexec"),
    ("suid", "nosuid"),
    ("dev", "nodev"),
    ("ro", "rw"),
    ("atime", "noatime"),
    ("diratime", "nodiratime"),
    ("relatime", "norelatime"),
    ("strictatime", "nostrictatime"),
];

impl TmpfsMount {
    /// A tmpfs at `path` with Docker's defaults (`nosuid,nodev,noexec`)
    /// and then `options`: flags, `size=` (bytes, or with a k/m/g or %
    /// suffix), `mode=` (octal), `uid=`, `gid=`, `nr_inodes=`, `nr_blocks=`.
    pub fn new(path: &str, options: &[&str]) -> Result<TmpfsMount, String> {
        if !path.starts_with('/') || path == "/" {
            return Err(format!(
                "invalid tmpfs mount point {path:?}: it must be an absolute path other than /"
            ));
        }
        if Path::new(path)
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(format!(
                "invalid tmpfs mount point {path:?}: .. is not allowed"
            ));
        }
        let mut flags: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
        let mut data: Vec<(String, String)> = Vec::new();
        for o in options.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
            if let Some((k, v)) = o.split_once('=') {
                let ok = match k {
                    "size" => valid_size(v),
                    "mode" => {
                        !v.is_empty()
                            && v.len() <= 4
                            && v.bytes().all(|b| (b'0'..=b'7').contains(&b))
                    }
                    "uid" | "gid" => v.parse::<u32>().is_ok(),
                    "nr_inodes" | "nr_blocks" => valid_size(v),
                    _ => return Err(format!("invalid tmpfs option {o:?}")),
                };
                if !ok {
                    return Err(format!("invalid value in tmpfs option {o:?}"));
                }
                data.retain(|(dk, _)| dk != k);
                data.push((k.to_string(), v.to_string()));
                continue;
            }
            let Some((a, b)) = FLAGS.iter().find(|(a, b)| *a == o || *b == o) else {
                return Err(format!("invalid tmpfs option {o:?}"));
            };
            flags.retain(|f| f != a && f != b);
            flags.push(o.to_string());
        }
        flags.extend(data.into_iter().map(|(k, v)| format!("{k}={v}")));
        Ok(TmpfsMount {
            path: path.to_string(),
            options: flags,
        })
    }

    fn to_mount(&self) -> Result<Mount, SpecError> {
        Ok(MountBuilder::default()
            .destination(&self.path)
            .typ("tmpfs")
            .source("tmpfs")
            .options(self.options.clone())
            .build()?)
    }
}

/// `123`, `64k`, `1m`, `2g`, `50%`.
fn valid_size(v: &str) -> bool {
    let digits = v.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', '%']);
    !digits.is_empty() && v.len() - digits.len() <= 1 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The tmpfs mounts of a container's annotations (none when absent).
pub fn from_annotations(
    annotations: &std::collections::HashMap<String, String>,
) -> Result<Vec<TmpfsMount>, SpecError> {
    let Some(json) = annotations.get(TMPFS_ANNOTATION) else {
        return Ok(Vec::new());
    };
    serde_json::from_str(json).map_err(|e| SpecError::InvalidMount {
        container_path: String::new(),
        reason: format!("bad {TMPFS_ANNOTATION} annotation: {e}"),
    })
}

/// Adds the tmpfs mounts to a mount table: one replaces a default at the
/// same place (e.g. `/dev/shm`), and parents still come before children.
pub(crate) fn add(plan: &mut MountPlan, tmpfs: &[TmpfsMount]) -> Result<(), SpecError> {
    for t in tmpfs {
        let dest = Path::new(&t.path);
        plan.mounts.retain(|m| m.destination() != dest);
        plan.mounts.push(t.to_mount()?);
    }
    if !tmpfs.is_empty() {
        plan.mounts
            .sort_by_key(|m| m.destination().components().count());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_have_docker_defaults_and_are_checked() {
        let t = TmpfsMount::new("/t", &["size=1m", "mode=1777"]).unwrap();
        assert_eq!(
            t.options,
            ["nosuid", "nodev", "noexec", "size=1m", "mode=1777"]
        );
        let t = TmpfsMount::new("/t", &["exec", "size=65536"]).unwrap();
        assert_eq!(t.options, ["nosuid", "nodev", "exec", "size=65536"]);
        assert!(TmpfsMount::new("/t", &["size=lots"]).is_err());
        assert!(TmpfsMount::new("/t", &["mode=999"]).is_err());
        assert!(TmpfsMount::new("/t", &["bogus"]).is_err());
        assert!(TmpfsMount::new("/t", &["nr_inodes=1k", "uid=1000"]).is_ok());
        assert!(TmpfsMount::new("relative", &[]).is_err());
        assert!(TmpfsMount::new("/", &[]).is_err());
        assert!(TmpfsMount::new("/a/../b", &[]).is_err());
    }

    #[test]
    fn tmpfs_joins_the_table_in_depth_order() {
        let mut plan = crate::runtime::mounts::build_mounts(
            &[],
            &Default::default(),
            crate::runtime::mounts::MountOptions {
                privileged: false,
                host_ipc: false,
                readonly_rootfs: true,
            },
        )
        .unwrap();
        let before = plan.mounts.len();
        add(
            &mut plan,
            &[
                TmpfsMount::new("/run/a", &[]).unwrap(),
                TmpfsMount::new("/run", &[]).unwrap(),
                TmpfsMount::new("/dev/mqueue", &[]).unwrap(),
            ],
        )
        .unwrap();
        assert_eq!(
            plan.mounts.len(),
            before + 2,
            "/dev/mqueue replaced the default"
        );
        let dests: Vec<_> = plan
            .mounts
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        let pos = |d: &str| dests.iter().position(|x| x == d).unwrap();
        assert!(pos("/run") < pos("/run/a"), "{dests:?}");
        assert!(pos("/dev") < pos("/dev/mqueue"), "{dests:?}");
        let mq = &plan.mounts[pos("/dev/mqueue")];
        assert_eq!(mq.typ().as_deref(), Some("tmpfs"));
    }
}
