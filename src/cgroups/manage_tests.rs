use std::fs;
use std::path::{Path, PathBuf};

use super::super::{detect, detect_from, CgroupError, Hierarchy};

fn hybrid(root: &Path) -> Hierarchy {
    let r = root.display();
    let mountinfo = format!(
        "32 31 0:29 / {r}/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
         34 31 0:31 / {r}/cpuset rw,relatime - cgroup cgroup rw,cpuset\n\
         35 31 0:32 / {r}/memory rw,relatime - cgroup cgroup rw,memory\n\
         40 31 0:37 / {r}/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n\
         41 31 0:38 / {r}/unified rw,relatime - cgroup2 cgroup2 rw\n"
    );
    detect_from(&mountinfo, "", Some("")).unwrap()
}

fn v2(root: &Path) -> Hierarchy {
    let mountinfo = format!(
        "28 21 0:25 / {} rw,relatime - cgroup2 cgroup2 rw\n",
        root.display()
    );
    detect_from(&mountinfo, "", Some("memory")).unwrap()
}

#[test]
fn oom_files_per_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    assert_eq!(
        hybrid(t).oom_files("/berth/berth-c1"),
        vec![t.join("memory/berth/berth-c1/memory.oom_control")]
    );
    assert_eq!(
        v2(t).oom_files("system.slice:berth:c1"),
        vec![t.join("system.slice/berth-c1.scope/memory.events")]
    );
}

#[test]
fn dirs_cover_each_mount_once() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let mut want: Vec<PathBuf> = ["cpu,cpuacct", "cpuset", "memory", "systemd", "unified"]
        .iter()
        .map(|m| t.join(m).join("berth/p1"))
        .collect();
    want.sort();
    assert_eq!(hybrid(t).dirs("/berth/p1"), want);
    assert_eq!(v2(t).dirs("/berth/p1"), vec![t.join("berth/p1")]);
}

#[test]
fn create_parent_makes_dirs_and_fills_cpusets() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let h = hybrid(t);
    fs::create_dir_all(t.join("cpuset")).unwrap();
    fs::write(t.join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
    fs::write(t.join("cpuset/cpuset.mems"), "0\n").unwrap();
    h.create_parent("/kubepods/burstable/pod1").unwrap();
    for dir in h.dirs("/kubepods/burstable/pod1") {
        assert!(dir.is_dir(), "{}", dir.display());
    }
    for level in ["kubepods", "kubepods/burstable", "kubepods/burstable/pod1"] {
        let d = t.join("cpuset").join(level);
        assert_eq!(fs::read_to_string(d.join("cpuset.cpus")).unwrap(), "0-1");
        assert_eq!(fs::read_to_string(d.join("cpuset.mems")).unwrap(), "0");
    }
    assert!(!t.join("memory/kubepods/cpuset.cpus").exists());
}

#[test]
fn remove_takes_children_first_and_ignores_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let h = hybrid(t);
    fs::create_dir_all(t.join("memory/berth/p1/berth-c1")).unwrap();
    fs::create_dir_all(t.join("unified/berth/p1")).unwrap();
    h.remove("/berth/p1").unwrap();
    assert!(!t.join("memory/berth/p1").exists());
    assert!(!t.join("unified/berth/p1").exists());
    assert!(t.join("memory/berth").is_dir());
    // Already gone everywhere.
    h.remove("/berth/p1").unwrap();
}

#[test]
fn remove_refuses_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    for path in ["/", "", "/..", "-.slice::"] {
        let err = hybrid(tmp.path()).remove(path).unwrap_err();
        assert!(
            matches!(err, CgroupError::InvalidPath { .. }),
            "{path:?}: {err}"
        );
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// On the real host (as root): a pod parent is created in every hierarchy,
/// reads as a cgroup, refuses removal while a process lives in it, and goes away
/// once the process is gone.
#[test]
fn real_host_create_stats_busy_remove() {
    if !is_root() {
        eprintln!("skipped: needs root to create cgroups");
        return;
    }
    let h = detect().unwrap();
    let top = format!("/berth-unit-{}", std::process::id());
    let path = format!("{top}/pod");
    h.create_parent(&path).unwrap();
    for dir in h.dirs(&path) {
        assert!(dir.join("cgroup.procs").is_file(), "{}", dir.display());
    }
    let stats = h.stats(&path).unwrap();
    assert_eq!(stats.pids_current.unwrap_or(0), 0);
    assert!(h.oom_files(&path).iter().all(|f| f.is_file()));

    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let procs = h.resolve_dir("memory", &path).join("cgroup.procs");
    fs::write(&procs, child.id().to_string()).unwrap();
    let err = h.remove(&top).unwrap_err();
    assert!(
        matches!(&err, CgroupError::Busy { path: p } if p.ends_with(path.trim_start_matches('/'))),
        "{err}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    h.remove(&top).unwrap();
    for dir in h.dirs(&top) {
        assert!(!dir.exists(), "{}", dir.display());
    }
}
