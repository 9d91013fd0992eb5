use std::path::{Path, PathBuf};

use super::super::{detect, detect_from, CgroupError, Mode};
use super::unescape;

const HYBRID: &str = include_str!("testdata/mountinfo_hybrid.txt");
const HYBRID_CGROUPS: &str = include_str!("testdata/proc_cgroups_hybrid.txt");
const HYBRID_FIXED_CGROUPS: &str = include_str!("testdata/proc_cgroups_hybrid_fixed.txt");
const HUGETLB_V1: &str =
    "42 31 0:39 / /sys/fs/cgroup/hugetlb rw,relatime - cgroup cgroup rw,hugetlb\n";
const V1: &str = include_str!("testdata/mountinfo_v1.txt");
const V1_CGROUPS: &str = include_str!("testdata/proc_cgroups_v1.txt");
const V2: &str = include_str!("testdata/mountinfo_v2.txt");
const V2_CGROUPS: &str = include_str!("testdata/proc_cgroups_v2.txt");
const OVERMOUNTED: &str = include_str!("testdata/mountinfo_overmounted.txt");

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

#[test]
fn hybrid_with_hugetlb_on_v2_is_a_problem() {
    let h = detect_from(HYBRID, HYBRID_CGROUPS, Some("hugetlb\n")).unwrap();
    assert_eq!(h.mode, Mode::Hybrid);
    assert_eq!(h.unified, Some(p("/sys/fs/cgroup/unified")));
    assert_eq!(h.v1["memory"], p("/sys/fs/cgroup/memory"));
    assert_eq!(h.v1["cpuacct"], p("/sys/fs/cgroup/cpuacct"));
    assert_eq!(h.v1["name=systemd"], p("/sys/fs/cgroup/systemd"));
    assert!(!h.v1.contains_key("hugetlb") && !h.v1.contains_key("rw"));
    assert_eq!(
        h.problem().as_deref(),
        Some(
            "cgroup controller hugetlb is attached to the cgroup v2 hierarchy on a v1/hybrid \
             host; crun and runc refuse such hosts; mount it as v1: mkdir -p \
             /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb"
        )
    );
}

#[test]
fn hybrid_problem_falls_back_to_proc_cgroups() {
    // cgroup.controllers unreadable: hierarchy 0 in /proc/cgroups decides, and the
    // v1-only controllers (net_cls, net_prio, perf_event) do not count.
    let h = detect_from(HYBRID, HYBRID_CGROUPS, None).unwrap();
    let problem = h.problem().unwrap();
    assert!(
        problem.starts_with("cgroup controller hugetlb is attached"),
        "{problem}"
    );
    assert!(!problem.contains("net_cls") && !problem.contains("perf_event"));
}

#[test]
fn hybrid_problem_names_every_controller_in_v1_terms() {
    let h = detect_from(HYBRID, HYBRID_CGROUPS, Some("hugetlb io\n")).unwrap();
    let problem = h.problem().unwrap();
    assert!(problem.starts_with("cgroup controllers blkio, hugetlb are attached"));
    assert!(problem.contains("mount them as v1"));
    assert!(problem.contains("mount -t cgroup -o blkio cgroup /sys/fs/cgroup/blkio"));
}

#[test]
fn hybrid_with_hugetlb_mounted_as_v1_is_usable() {
    let mountinfo = format!("{HYBRID}{HUGETLB_V1}");
    let h = detect_from(&mountinfo, HYBRID_FIXED_CGROUPS, Some("")).unwrap();
    assert_eq!(h.mode, Mode::Hybrid);
    assert_eq!(h.v1["hugetlb"], p("/sys/fs/cgroup/hugetlb"));
    assert_eq!(h.problem(), None);
    // And without cgroup.controllers, /proc/cgroups agrees.
    let h = detect_from(&mountinfo, HYBRID_FIXED_CGROUPS, None).unwrap();
    assert_eq!(h.problem(), None);
}

#[test]
fn v1_with_co_mounted_controllers() {
    let h = detect_from(V1, V1_CGROUPS, None).unwrap();
    assert_eq!(h.mode, Mode::V1);
    assert_eq!(h.unified, None);
    assert_eq!(h.v1["cpu"], p("/sys/fs/cgroup/cpu,cpuacct"));
    assert_eq!(h.v1["cpuacct"], p("/sys/fs/cgroup/cpu,cpuacct"));
    assert_eq!(h.v1["net_prio"], p("/sys/fs/cgroup/net_cls,net_prio"));
    assert_eq!(h.v1["cpuset"], p("/sys/fs/cgroup/cpuset"));
    assert!(!h.v1.contains_key("clone_children") && !h.v1.contains_key("xattr"));
    assert_eq!(h.enabled["rdma"], 0);
    // rdma on hierarchy 0 does not matter without a v2 mount: the runtimes use v1 only.
    assert_eq!(h.problem(), None);
    // 12 controllers and name=systemd share 11 mounts.
    assert_eq!(h.mounts().len(), 11);
}

#[test]
fn v1_controllers_without_proc_cgroups() {
    let h = detect_from(V1, "", None).unwrap();
    assert_eq!(h.v1["memory"], p("/sys/fs/cgroup/memory"));
    assert_eq!(h.v1["cpuacct"], p("/sys/fs/cgroup/cpu,cpuacct"));
    assert!(!h.v1.contains_key("rw") && !h.v1.contains_key("clone_children"));
}

#[test]
fn v2_only() {
    let h = detect_from(
        V2,
        V2_CGROUPS,
        Some("cpuset cpu io memory hugetlb pids rdma misc\n"),
    )
    .unwrap();
    assert_eq!(h.mode, Mode::V2);
    assert!(h.is_v2());
    assert_eq!(h.unified, Some(p("/sys/fs/cgroup")));
    assert!(h.v1.is_empty());
    assert!(h.unified_controllers.as_ref().unwrap().contains("memory"));
    assert_eq!(h.problem(), None);
    assert_eq!(h.mount_for("memory"), p("/sys/fs/cgroup"));
}

#[test]
fn a_mount_hidden_under_another_is_ignored() {
    let h = detect_from(OVERMOUNTED, "", None).unwrap();
    // The cgroup2 mount at /sys/fs/cgroup sits under a tmpfs: this view is v1.
    assert_eq!(h.mode, Mode::V1);
    assert_eq!(h.unified, None);
    assert_eq!(h.v1["memory"], p("/sys/fs/cgroup/memory"));
    assert_eq!(h.v1["pids"], p("/mnt/with space"));
}

#[test]
fn no_cgroup_mounts_is_an_error() {
    let mountinfo = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n";
    assert!(matches!(
        detect_from(mountinfo, "", None),
        Err(CgroupError::NoCgroupMounts)
    ));
}

#[test]
fn malformed_mountinfo_names_the_line() {
    let err = detect_from("27 1 254:0 / / rw\n", "", None).unwrap_err();
    assert!(
        matches!(err, CgroupError::MountInfo { line: 1, .. }),
        "{err}"
    );
}

#[test]
fn octal_escapes() {
    assert_eq!(unescape(r"/a\040b\134c\011"), "/a b\\c\t");
    assert_eq!(unescape(r"/plain\09"), r"/plain\09");
}

/// The real host: whichever layout it has, detection works and agrees with
/// what the filesystem types under /sys/fs/cgroup say.
#[test]
fn detects_this_host() {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};

    let h = detect().unwrap();
    let is_cgroup2 = |path: &str| {
        statfs(Path::new(path)).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
    };
    let expected = if is_cgroup2("/sys/fs/cgroup") {
        Mode::V2
    } else if is_cgroup2("/sys/fs/cgroup/unified") {
        Mode::Hybrid
    } else {
        Mode::V1
    };
    assert_eq!(h.mode, expected, "{h:?}");
    if h.mode != Mode::V2 {
        assert!(h.v1.contains_key("memory"), "{h:?}");
    }
    if h.mode == Mode::Hybrid && h.problem().is_none() {
        assert!(h.unified_controllers.as_ref().is_some_and(|c| c.is_empty()));
    }
    // The root cgroup always has CPU accounting.
    let stats = h.stats("/").unwrap();
    assert!(stats.cpu_usage_ns > 0, "{stats:?}");
}
