use std::fs;
use std::path::{Path, PathBuf};

use super::super::{detect_from, CgroupError, Hierarchy};

const V1_MEMORY_STAT: &str = "cache 1081344\nrss 2162688\nrss_huge 0\nshmem 0\n\
mapped_file 270336\ndirty 0\nwriteback 0\npgpgin 2310\npgpgout 1519\npgfault 3795\n\
pgmajfault 3\ninactive_anon 0\nactive_anon 2162688\ninactive_file 811008\n\
active_file 270336\nunevictable 0\nhierarchical_memory_limit 67108864\n\
total_cache 1081344\ntotal_rss 2162688\ntotal_rss_huge 0\ntotal_shmem 0\n\
total_mapped_file 270336\ntotal_pgpgin 2310\ntotal_pgpgout 1519\ntotal_pgfault 3795\n\
total_pgmajfault 3\ntotal_inactive_anon 0\ntotal_active_anon 2162688\n\
total_inactive_file 811008\ntotal_active_file 270336\ntotal_unevictable 0\n";

const V2_MEMORY_STAT: &str = "anon 1998848\nfile 1146880\nkernel 491520\n\
kernel_stack 32768\npagetables 86016\nsock 0\nshmem 0\nfile_mapped 786432\n\
file_dirty 0\nfile_writeback 0\nanon_thp 0\ninactive_anon 1994752\nactive_anon 4096\n\
inactive_file 1134592\nactive_file 12288\nunevictable 0\npgfault 2971\npgmajfault 12\n";

const V2_CPU_STAT: &str = "usage_usec 52339\nuser_usec 31402\nsystem_usec 20937\n\
core_sched.force_idle_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n";

fn write(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
}

/// A hybrid-style hierarchy whose v1 mounts (and cgroup2 mount) live under `root`.
fn v1_hierarchy(root: &Path) -> Hierarchy {
    let r = root.display();
    let mountinfo = format!(
        "32 31 0:29 / {r}/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
         35 31 0:32 / {r}/memory rw,relatime - cgroup cgroup rw,memory\n\
         39 31 0:36 / {r}/pids rw,relatime - cgroup cgroup rw,pids\n\
         41 31 0:38 / {r}/unified rw,relatime - cgroup2 cgroup2 rw\n"
    );
    detect_from(&mountinfo, "", Some("")).unwrap()
}

fn v2_hierarchy(root: &Path) -> Hierarchy {
    let mountinfo = format!(
        "28 21 0:25 / {} rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n",
        root.display()
    );
    detect_from(&mountinfo, "", Some("cpu memory pids")).unwrap()
}

fn fill_v1(root: &Path, rel: &str, limit: &str) {
    write(
        &root.join("cpu,cpuacct").join(rel),
        &[
            ("cpuacct.usage", "123456789\n"),
            ("cpuacct.stat", "user 7\nsystem 3\n"),
        ],
    );
    write(
        &root.join("memory").join(rel),
        &[
            ("memory.usage_in_bytes", "3538944\n"),
            ("memory.stat", V1_MEMORY_STAT),
            ("memory.limit_in_bytes", limit),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            ),
        ],
    );
    write(&root.join("pids").join(rel), &[("pids.current", "4\n")]);
}

#[test]
fn v1_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let h = v1_hierarchy(tmp.path());
    fill_v1(tmp.path(), "berth/berth-c1", "67108864\n");
    let s = h.stats("/berth/berth-c1").unwrap();
    assert_eq!(s.cpu_usage_ns, 123_456_789);
    assert_eq!(s.cpu_user_ns, 70_000_000);
    assert_eq!(s.cpu_system_ns, 30_000_000);
    assert_eq!(s.memory_usage_bytes, 3_538_944);
    assert_eq!(s.memory_working_set_bytes, 3_538_944 - 811_008);
    assert_eq!(s.memory_rss_bytes, 2_162_688);
    assert_eq!(s.memory_page_faults, 3795);
    assert_eq!(s.memory_major_page_faults, 3);
    assert_eq!(s.memory_limit_bytes, Some(67_108_864));
    assert_eq!(s.pids_current, Some(4));
    assert_eq!(s.oom_kills, 2);
    assert!(s.timestamp_ns > 0);
}

#[test]
fn v1_unlimited_memory_and_missing_controllers() {
    let tmp = tempfile::tempdir().unwrap();
    let h = v1_hierarchy(tmp.path());
    let mem = tmp.path().join("memory/berth/berth-c2");
    write(
        &mem,
        &[
            ("memory.usage_in_bytes", "4096\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            // More inactive file cache than usage: the working set floors at 0.
            ("memory.stat", "total_inactive_file 8192\n"),
        ],
    );
    let s = h.stats("/berth/berth-c2").unwrap();
    assert_eq!(s.memory_limit_bytes, None);
    assert_eq!(s.memory_working_set_bytes, 0);
    assert_eq!(s.cpu_usage_ns, 0);
    assert_eq!(s.pids_current, None);
    assert_eq!(s.oom_kills, 0);
}

#[test]
fn v2_stats_of_a_systemd_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let h = v2_hierarchy(tmp.path());
    let scope =
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/berth-c1.scope";
    write(
        &tmp.path().join(scope),
        &[
            ("cpu.stat", V2_CPU_STAT),
            ("memory.current", "3223552\n"),
            ("memory.stat", V2_MEMORY_STAT),
            ("memory.max", "134217728\n"),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n",
            ),
            ("pids.current", "2\n"),
        ],
    );
    let s = h.stats("kubepods-burstable-pod1.slice:berth:c1").unwrap();
    assert_eq!(s.cpu_usage_ns, 52_339_000);
    assert_eq!(s.cpu_user_ns, 31_402_000);
    assert_eq!(s.cpu_system_ns, 20_937_000);
    assert_eq!(s.memory_usage_bytes, 3_223_552);
    assert_eq!(s.memory_working_set_bytes, 3_223_552 - 1_134_592);
    assert_eq!(s.memory_rss_bytes, 1_998_848);
    assert_eq!(s.memory_page_faults, 2971);
    assert_eq!(s.memory_major_page_faults, 12);
    assert_eq!(s.memory_limit_bytes, Some(134_217_728));
    assert_eq!(s.pids_current, Some(2));
    assert_eq!(s.oom_kills, 1);
}

#[test]
fn v2_unlimited_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let h = v2_hierarchy(tmp.path());
    write(
        &tmp.path().join("berth/berth-c1"),
        &[("memory.current", "0\n"), ("memory.max", "max\n")],
    );
    let s = h.stats("/berth/berth-c1").unwrap();
    assert_eq!(s.memory_limit_bytes, None);
    assert_eq!(s.pids_current, None);
}

#[test]
fn a_missing_cgroup_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    for h in [v1_hierarchy(tmp.path()), v2_hierarchy(tmp.path())] {
        let err = h.stats("/berth/gone").unwrap_err();
        assert!(matches!(err, CgroupError::NotFound { .. }), "{err}");
        assert_eq!(err.kind(), super::super::CgroupErrorKind::NotFound);
    }
}

#[test]
fn garbage_is_a_parse_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let h = v2_hierarchy(tmp.path());
    write(&tmp.path().join("c"), &[("memory.current", "lots\n")]);
    let err = h.stats("/c").unwrap_err();
    let want: PathBuf = tmp.path().join("c/memory.current");
    assert!(
        matches!(&err, CgroupError::Parse { path, .. } if *path == want),
        "{err}"
    );
}
