//! Layout detection: which cgroup filesystems are mounted where, read from the
//! text of `/proc/self/mountinfo` and `/proc/cgroups`, and whether an OCI runtime
//! can create containers on that layout.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use super::{CgroupError, Hierarchy, Mode, CGROUP_ROOT};

/// v1 mount options that are not controller names, for when `/proc/cgroups` is unavailable.
const V1_MOUNT_OPTIONS: &[&str] = &[
    "rw",
    "ro",
    "relatime",
    "noatime",
    "nodiratime",
    "strictatime",
    "nosuid",
    "nodev",
    "noexec",
    "none",
    "xattr",
    "noprefix",
    "clone_children",
    "cpuset_v2_mode",
    "favordynmods",
];

/// v1 controllers that have a v2 interface, i.e. those that appear in a v2
/// `cgroup.controllers` once they are not bound to a v1 mount (`blkio` is `io` there).
/// `cpuacct`, `devices`, `freezer`, `net_cls`, `net_prio` and `perf_event` never do.
const V2_CAPABLE: &[&str] = &[
    "cpuset", "cpu", "blkio", "io", "memory", "hugetlb", "pids", "rdma", "misc",
];

/// One line of mountinfo, the fields detection needs.
#[derive(Debug)]
struct Mount {
    id: u64,
    parent: u64,
    mount_point: PathBuf,
    fstype: String,
    super_options: String,
}

/// Builds a [`Hierarchy`] (without `unified_controllers`) from mountinfo and
/// `/proc/cgroups` text.
pub(super) fn parse(mountinfo: &str, proc_cgroups: &str) -> Result<Hierarchy, CgroupError> {
    let mounts = parse_mountinfo(mountinfo)?;
    let known = parse_proc_cgroups(proc_cgroups);
    let enabled: BTreeMap<String, u32> = known
        .iter()
        .filter(|(_, (_, on))| *on)
        .map(|(name, (hierarchy, _))| (name.clone(), *hierarchy))
        .collect();

    let visible = visible_mounts(&mounts);
    let mut v1: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut unified: Option<PathBuf> = None;
    for m in &visible {
        match m.fstype.as_str() {
            "cgroup" => {
                for c in v1_controllers(&m.super_options, &known) {
                    let slot = v1.entry(c).or_insert_with(|| m.mount_point.clone());
                    // A hierarchy can be mounted twice; the runtimes use the one under /sys/fs/cgroup.
                    if !slot.starts_with(CGROUP_ROOT) && m.mount_point.starts_with(CGROUP_ROOT) {
                        *slot = m.mount_point.clone();
                    }
                }
            }
            "cgroup2" => {
                let better = match &unified {
                    None => true,
                    Some(u) => unified_rank(&m.mount_point) < unified_rank(u),
                };
                if better {
                    unified = Some(m.mount_point.clone());
                }
            }
            _ => {}
        }
    }

    let mode = match (&unified, v1.is_empty()) {
        (None, true) => return Err(CgroupError::NoCgroupMounts),
        (Some(u), _) if u == Path::new(CGROUP_ROOT) => Mode::V2,
        (Some(_), true) => Mode::V2,
        (Some(_), false) => Mode::Hybrid,
        (None, false) => Mode::V1,
    };
    if mode == Mode::V2 {
        v1.clear();
    }
    Ok(Hierarchy {
        mode,
        v1,
        unified,
        enabled,
        unified_controllers: None,
    })
}

/// Lower is preferred: the v2 root, then the hybrid location, then anything else.
fn unified_rank(p: &Path) -> u8 {
    if p == Path::new(CGROUP_ROOT) {
        0
    } else if p == Path::new(CGROUP_ROOT).join("unified") {
        1
    } else {
        2
    }
}

/// The words of a `cgroup.controllers` file.
pub(super) fn parse_controller_list(text: &str) -> BTreeSet<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// `/proc/cgroups`: controller → (hierarchy id, enabled).
fn parse_proc_cgroups(text: &str) -> BTreeMap<String, (u32, bool)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [name, hierarchy, _, enabled, ..] => {
                    Some((name.to_string(), (hierarchy.parse().ok()?, *enabled == "1")))
                }
                _ => None,
            }
        })
        .collect()
}

/// The controllers of a v1 mount, from its super options (`rw,cpu,cpuacct`,
/// `rw,xattr,name=systemd`).
fn v1_controllers(options: &str, known: &BTreeMap<String, (u32, bool)>) -> Vec<String> {
    options
        .split(',')
        .filter(|o| {
            o.starts_with("name=")
                || known.contains_key(*o)
                || (known.is_empty() && !o.contains('=') && !V1_MOUNT_OPTIONS.contains(o))
        })
        .map(str::to_string)
        .collect()
}

fn parse_mountinfo(text: &str) -> Result<Vec<Mount>, CgroupError> {
    let mut mounts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: &str| CgroupError::MountInfo {
            line: i + 1,
            reason: format!("{reason}: {line:?}"),
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        // id parent major:minor root mount-point options [optional...] - fstype source super-options
        let sep = fields
            .iter()
            .position(|f| *f == "-")
            .ok_or_else(|| bad("no \" - \" separator"))?;
        if sep < 6 || fields.len() < sep + 3 {
            return Err(bad("too few fields"));
        }
        mounts.push(Mount {
            id: fields[0].parse().map_err(|_| bad("bad mount id"))?,
            parent: fields[1].parse().map_err(|_| bad("bad parent id"))?,
            mount_point: PathBuf::from(unescape(fields[4])),
            fstype: fields[sep + 1].to_string(),
            super_options: fields.get(sep + 3).copied().unwrap_or("").to_string(),
        });
    }
    Ok(mounts)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for a backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts a path lookup can reach: a mount stacked over another at the same
/// place, or over one of its ancestors, hides it (a tmpfs over a cgroup2 mount at
/// `/sys/fs/cgroup`, as container engines do). When the root mount cannot be
/// found (a fixture of cgroup lines only), every mount counts as visible.
fn visible_mounts(mounts: &[Mount]) -> Vec<&Mount> {
    let ids: HashSet<u64> = mounts.iter().map(|m| m.id).collect();
    let root = mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == Path::new("/") && !ids.contains(&m.parent));
    let Some(root) = root else {
        return mounts.iter().collect();
    };
    mounts
        .iter()
        .filter(|m| lookup(mounts, root, &m.mount_point).id == m.id)
        .collect()
}

/// The mount a lookup of `target` ends on, walking down from `root`: at each
/// mount, the child mounted closest to the top covers everything below it.
fn lookup<'a>(mounts: &'a [Mount], root: &'a Mount, target: &Path) -> &'a Mount {
    let mut cur = root;
    // Bounded so that a malformed mountinfo with a parent cycle cannot loop.
    for _ in 0..=mounts.len() {
        let mut next: Option<&Mount> = None;
        for m in mounts {
            if m.parent != cur.id || m.id == cur.id || !target.starts_with(&m.mount_point) {
                continue;
            }
            let depth = m.mount_point.components().count();
            if next.is_none_or(|n| depth <= n.mount_point.components().count()) {
                next = Some(m);
            }
        }
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    cur
}

impl Hierarchy {
    /// A plain-English reason why the OCI runtime cannot create containers on this
    /// host, or `None` when the layout is usable.
    ///
    /// crun and runc refuse a hybrid host whose v2 hierarchy has any controller
    /// attached (its `cgroup.controllers` is not empty): that happens when a
    /// controller enabled in `/proc/cgroups` is not mounted as v1. When
    /// `cgroup.controllers` could not be read, `/proc/cgroups` decides: an enabled
    /// controller with a v2 interface on hierarchy 0 is on the v2 side.
    pub fn problem(&self) -> Option<String> {
        if self.mode != Mode::Hybrid {
            return None;
        }
        let on_v2: BTreeSet<String> = match &self.unified_controllers {
            Some(c) => c.iter().map(|c| v1_name(c).to_string()).collect(),
            None => self
                .enabled
                .iter()
                .filter(|(name, h)| **h == 0 && V2_CAPABLE.contains(&name.as_str()))
                .filter(|(name, _)| !self.v1.contains_key(*name))
                .map(|(name, _)| name.clone())
                .collect(),
        };
        if on_v2.is_empty() {
            return None;
        }
        let names: Vec<&str> = on_v2.iter().map(String::as_str).collect();
        let fix: Vec<String> = names
            .iter()
            .map(|c| {
                format!(
                    "mkdir -p {CGROUP_ROOT}/{c} && mount -t cgroup -o {c} cgroup {CGROUP_ROOT}/{c}"
                )
            })
            .collect();
        let (noun, verb, pronoun) = if names.len() == 1 {
            ("controller", "is", "it")
        } else {
            ("controllers", "are", "them")
        };
        Some(format!(
            "cgroup {noun} {} {verb} attached to the cgroup v2 hierarchy on a v1/hybrid host; \
             crun and runc refuse such hosts; mount {pronoun} as v1: {}",
            names.join(", "),
            fix.join(" && ")
        ))
    }
}

/// The v1 name of a v2 controller.
fn v1_name(v2: &str) -> &str {
    if v2 == "io" {
        "blkio"
    } else {
        v2
    }
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
