//! Cgroup paths: the `linux.cgroupsPath` berth gives the OCI runtime, and the
//! directory that path becomes under a controller's mount.
//!
//! | driver   | pod `CgroupParent`                  | container cgroup path                      | directory under each mount |
//! |----------|-------------------------------------|--------------------------------------------|----------------------------|
//! | cgroupfs | `/kubepods/burstable/pod<uid>`      | `/kubepods/burstable/pod<uid>/berth-<id>`  | the same, without the leading `/` |
//! | cgroupfs | (none)                              | `/berth/berth-<id>`                        | `berth/berth-<id>` |
//! | systemd  | `kubepods-burstable-pod<uid>.slice` | `kubepods-burstable-pod<uid>.slice:berth:<id>` | `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/berth-<id>.scope` |
//! | systemd  | (none)                              | `system.slice:berth:<id>`                  | `system.slice/berth-<id>.scope` |
//!
//! The systemd form is crun's and runc's `slice:prefix:name`: the runtime asks
//! systemd for a transient scope `<prefix>-<name>.scope` inside `slice`, and
//! systemd nests a slice `a-b-c.slice` as `a.slice/a-b.slice/a-b-c.slice`. On
//! cgroup v2, crun puts the container's processes one level lower, in the scope's
//! `container` sub-cgroup; the scope's files still account for them, since v2
//! statistics and `memory.events` are hierarchical.

use std::path::{Component, Path, PathBuf};

use super::Driver;

/// The cgroupfs parent of a pod that names none.
pub const DEFAULT_CGROUPFS_PARENT: &str = "/berth";
/// The systemd slice of a pod that names none.
pub const DEFAULT_SYSTEMD_SLICE: &str = "system.slice";
/// Names berth's cgroups: `berth-<id>` directories and `berth-<id>.scope` units.
const PREFIX: &str = "berth";

/// The `linux.cgroupsPath` of container (or sandbox) `id` in the pod cgroup
/// `parent` (the CRI `CgroupParent`; empty for the default), in `driver`'s form.
///
/// With the systemd driver a parent given as a path (`/kubepods.slice/x.slice`)
/// contributes its last component, the slice name.
pub fn container_path(driver: Driver, parent: &str, id: &str) -> String {
    let parent = parent.trim();
    match driver {
        Driver::Cgroupfs => {
            let parent = if parent.is_empty() {
                DEFAULT_CGROUPFS_PARENT
            } else {
                parent
            };
            let parent = parent.trim_matches('/');
            if parent.is_empty() {
                format!("/{PREFIX}-{id}")
            } else {
                format!("/{parent}/{PREFIX}-{id}")
            }
        }
        Driver::Systemd => {
            let slice = parent.rsplit('/').find(|c| !c.is_empty()).unwrap_or("");
            let slice = if slice.is_empty() {
                DEFAULT_SYSTEMD_SLICE
            } else {
                slice
            };
            format!("{slice}:{PREFIX}:{id}")
        }
    }
}

/// The directory of `cgroup_path` relative to a controller's mount point.
///
/// A path in the systemd form `slice:prefix:name` (no leading `/`, exactly two
/// colons) becomes `<expanded slice>/<prefix>-<name>.scope` (a `name` ending in
/// `.slice` is used as is; an empty slice means `system.slice`, `-.slice` the root).
/// Anything else is a cgroupfs path. The result is lexical and never leaves the
/// mount: empty, `.` and `..` components are dropped.
pub fn relative_dir(cgroup_path: &str) -> PathBuf {
    let raw = match systemd_parts(cgroup_path) {
        Some((slice, prefix, name)) => {
            let slice = if slice.is_empty() {
                DEFAULT_SYSTEMD_SLICE
            } else {
                slice
            };
            let unit = if name.is_empty() {
                // No unit: the slice itself.
                String::new()
            } else if name.ends_with(".slice") {
                name.to_string()
            } else if prefix.is_empty() {
                format!("{name}.scope")
            } else {
                format!("{prefix}-{name}.scope")
            };
            expand_slice(slice).join(unit)
        }
        None => PathBuf::from(cgroup_path),
    };
    confine(&raw)
}

/// The directory of a systemd slice: `a-b-c.slice` → `a.slice/a-b.slice/a-b-c.slice`,
/// `-.slice` (the root slice) → the empty path. A name without the `.slice`
/// suffix is taken as a single directory.
pub fn expand_slice(slice: &str) -> PathBuf {
    if slice == "-.slice" {
        return PathBuf::new();
    }
    let Some(stem) = slice.strip_suffix(".slice") else {
        return confine(Path::new(slice));
    };
    let mut out = PathBuf::new();
    let mut prefix = String::new();
    for part in stem.split('-').filter(|p| !p.is_empty()) {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        out.push(format!("{prefix}.slice"));
    }
    confine(&out)
}

/// `slice:prefix:name`, when `cgroup_path` has that form.
fn systemd_parts(cgroup_path: &str) -> Option<(&str, &str, &str)> {
    if cgroup_path.starts_with('/') {
        return None;
    }
    let mut parts = cgroup_path.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(slice), Some(prefix), Some(name), None) => Some((slice, prefix, name)),
        _ => None,
    }
}

/// Keeps only the normal components of `p`, so that joining it to a mount point
/// stays inside that mount.
fn confine(p: &Path) -> PathBuf {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroupfs_paths() {
        let c = Driver::Cgroupfs;
        assert_eq!(container_path(c, "", "abc"), "/berth/berth-abc");
        assert_eq!(
            container_path(c, "/kubepods/burstable/pod1234", "abc"),
            "/kubepods/burstable/pod1234/berth-abc"
        );
        assert_eq!(
            container_path(c, "/kubepods/", "abc"),
            "/kubepods/berth-abc"
        );
        assert_eq!(container_path(c, "kubepods", "abc"), "/kubepods/berth-abc");
        assert_eq!(container_path(c, "/", "abc"), "/berth-abc");
    }

    #[test]
    fn systemd_paths() {
        let s = Driver::Systemd;
        assert_eq!(container_path(s, "", "abc"), "system.slice:berth:abc");
        assert_eq!(
            container_path(s, "kubepods-burstable-pod1234.slice", "abc"),
            "kubepods-burstable-pod1234.slice:berth:abc"
        );
        assert_eq!(
            container_path(s, "/kubepods.slice/kubepods-besteffort.slice/", "abc"),
            "kubepods-besteffort.slice:berth:abc"
        );
    }

    #[test]
    fn slices_expand_to_nested_directories() {
        assert_eq!(expand_slice("system.slice"), PathBuf::from("system.slice"));
        assert_eq!(
            expand_slice("kubepods-burstable-pod12_34.slice"),
            PathBuf::from(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12_34.slice"
            )
        );
        assert_eq!(expand_slice("-.slice"), PathBuf::new());
        assert_eq!(
            expand_slice("a--b.slice"),
            PathBuf::from("a.slice/a-b.slice")
        );
    }

    #[test]
    fn relative_dirs_of_both_forms() {
        assert_eq!(
            relative_dir("/kubepods/burstable/pod1/berth-abc"),
            PathBuf::from("kubepods/burstable/pod1/berth-abc")
        );
        assert_eq!(
            relative_dir("kubepods-burstable-pod1.slice:berth:abc"),
            PathBuf::from(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/berth-abc.scope"
            )
        );
        assert_eq!(
            relative_dir(":berth:abc"),
            PathBuf::from("system.slice/berth-abc.scope")
        );
        assert_eq!(
            relative_dir("-.slice:berth:abc"),
            PathBuf::from("berth-abc.scope")
        );
        assert_eq!(
            relative_dir("machine.slice::inner.slice"),
            PathBuf::from("machine.slice/inner.slice")
        );
        assert_eq!(relative_dir("/"), PathBuf::new());
        // A crafted parent cannot climb out of the mount.
        assert_eq!(relative_dir("/../../etc"), PathBuf::from("etc"));
        assert_eq!(relative_dir("..:x:../../y"), PathBuf::from("x-../y.scope"));
    }

    #[test]
    fn container_paths_resolve_back() {
        let p = container_path(Driver::Systemd, "kubepods-pod9.slice", "c1");
        assert_eq!(
            relative_dir(&p),
            PathBuf::from("kubepods.slice/kubepods-pod9.slice/berth-c1.scope")
        );
        let p = container_path(Driver::Cgroupfs, "/kubepods/pod9", "c1");
        assert_eq!(relative_dir(&p), PathBuf::from("kubepods/pod9/berth-c1"));
    }
}
