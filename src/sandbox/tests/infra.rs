use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::sandbox::exec::SelfExec;
use crate::sandbox::infra::{infra_bundle_for, shared_libraries};
use crate::sandbox::pin::pin_with;
use crate::sandbox::testutil::{
    berthd, is_root, ns_inode, run, wait_for, ChildGuard, CrunGuard, PinGuard,
};
use crate::sandbox::NsKinds;

/// The real berthd, or why the test cannot run.
fn berthd_or_skip(test: &str) -> Option<PathBuf> {
    if !is_root(test) {
        return None;
    }
    match berthd() {
        Ok(b) => Some(b),
        Err(why) => {
            eprintln!("skipping {test}: {why}");
            None
        }
    }
}

fn status_field(pid: i32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Runs crun; on failure panics with what crun (and the container) said.
fn crun(root: &Path, log: &Path, args: &[&str]) -> String {
    let out = Command::new("/usr/bin/crun")
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        // The container inherits these: never a pipe that would keep us waiting.
        .stdout(File::create(log.with_extension("out")).unwrap())
        .stderr(File::create(log).unwrap())
        .status()
        .unwrap();
    let said = std::fs::read_to_string(log).unwrap_or_default();
    assert!(out.success(), "crun {args:?}: {out}: {said}");
    std::fs::read_to_string(log.with_extension("out")).unwrap_or_default()
}

/// crun refuses a cgroup path on this hybrid host until hugetlb is on v1.
fn ensure_hugetlb_v1() {
    let mp = Path::new("/sys/fs/cgroup/hugetlb");
    if run("mountpoint", &["-q", "/sys/fs/cgroup/hugetlb"]).0
        || !Path::new("/sys/fs/cgroup/cpu").exists()
    {
        return;
    }
    std::fs::create_dir_all(mp).unwrap();
    let (ok, _, err) = run(
        "mount",
        &[
            "-t",
            "cgroup",
            "-o",
            "hugetlb",
            "cgroup",
            "/sys/fs/cgroup/hugetlb",
        ],
    );
    assert!(ok, "mount hugetlb: {err}");
}

#[test]
fn infra_runs_under_crun() {
    let Some(berthd) = berthd_or_skip("infra_runs_under_crun") else {
        return;
    };
    if !Path::new("/usr/bin/crun").exists() {
        eprintln!("skipping infra_runs_under_crun: /usr/bin/crun is missing");
        return;
    }
    ensure_hugetlb_v1();
    let tmp = tempfile::tempdir().unwrap();
    // Pinned by the real `berthd ns-pin` this time (argv, not the test harness).
    let pins = PinGuard(
        pin_with(
            &SelfExec::binary(&berthd),
            &tmp.path().join("ns"),
            NsKinds::ALL,
            Some("infra-test"),
        )
        .unwrap(),
    );
    let libs = shared_libraries(&berthd).unwrap();
    let id = format!("berth-infra-test-{}", std::process::id());
    let bundle = infra_bundle_for(
        &berthd,
        &libs,
        &tmp.path().join("bundle"),
        &pins.0,
        &format!("/{id}"),
        "infra-test",
    )
    .unwrap();
    let root = tmp.path().join("crun");
    let log = tmp.path().join("crun.log");
    let _container = CrunGuard {
        root: root.clone(),
        id: id.clone(),
    };
    let bundle_arg = bundle.to_string_lossy().into_owned();
    crun(&root, &log, &["create", "--bundle", &bundle_arg, &id]);
    crun(&root, &log, &["start", &id]);
    let state: serde_json::Value =
        serde_json::from_str(&crun(&root, &log, &["state", &id])).unwrap();
    assert_eq!(state["status"], "running", "{state}");
    let pid = state["pid"].as_i64().unwrap() as i32;

    assert_ne!(
        ns_inode(format!("/proc/{pid}/ns/pid")),
        ns_inode("/proc/self/ns/pid")
    );
    for kind in ["net", "ipc", "uts"] {
        let pinned = tmp.path().join("ns").join(kind);
        assert_eq!(
            ns_inode(format!("/proc/{pid}/ns/{kind}")),
            ns_inode(&pinned),
            "{kind}"
        );
    }
    assert_eq!(
        status_field(pid, "NSpid:").split_whitespace().last(),
        Some("1")
    );
    assert_eq!(
        status_field(pid, "Uid:").split_whitespace().next(),
        Some("65535")
    );
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
    assert_eq!(status_field(pid, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(pid, "CapBnd:"), "0000000000000000");
    // The pod sees berthd, its libraries and /dev through /proc/1/root: nothing else.
    let mut seen: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/root"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    seen.sort();
    // /proc is mounted for runc, which needs it; it shows only the infra's own PID namespace.
    let mut expected: Vec<String> = ["berthd".to_string(), "dev".to_string(), "proc".to_string()]
        .into_iter()
        .chain(libs.iter().filter_map(|l| {
            l.components()
                .nth(1)
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
        }))
        .collect();
    expected.sort();
    expected.dedup();
    assert_eq!(seen, expected);

    crun(&root, &log, &["kill", &id, "TERM"]);
    let stopped = wait_for(Duration::from_secs(10), || {
        let s: serde_json::Value =
            serde_json::from_str(&crun(&root, &log, &["state", &id])).ok()?;
        (s["status"] == "stopped").then_some(())
    });
    assert!(stopped.is_some(), "pause ignored SIGTERM");
    crun(&root, &log, &["delete", &id]);
}

#[test]
fn pause_reaps_orphans_and_stops_on_term() {
    let Some(berthd) = berthd_or_skip("pause_reaps_orphans_and_stops_on_term") else {
        return;
    };
    // `berthd pause` as init of a new PID namespace.
    let mut unshare = ChildGuard(
        Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child"])
            .arg(&berthd)
            .arg("pause")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let outer = unshare.0.id() as i32;
    let berthd_canon = berthd.canonicalize().unwrap();
    let pause = wait_for(Duration::from_secs(10), || {
        children(outer)
            .into_iter()
            .find(|c| std::fs::read_link(format!("/proc/{c}/exe")).is_ok_and(|e| e == berthd_canon))
    })
    .expect("pause did not start");

    // An orphan in its namespace: sh exits, its background sleep is re-parented to pause.
    let (ok, _, err) = run(
        "nsenter",
        &[
            "--target",
            &pause.to_string(),
            "--pid",
            "--",
            "/bin/sh",
            "-c",
            // Not on our pipes, or nsenter's output would wait for the sleep.
            "sleep 2 </dev/null >/dev/null 2>&1 & exit 0",
        ],
    );
    assert!(ok, "nsenter: {err}");
    assert!(
        wait_for(Duration::from_secs(5), || (!children(pause).is_empty())
            .then_some(()))
        .is_some(),
        "orphan was not re-parented to pause {pause}: {}",
        run("ps", &["-eo", "pid,ppid,stat,args"]).1
    );
    // Once the sleep ends it must be reaped, not left a zombie.
    assert!(
        wait_for(Duration::from_secs(15), || children(pause)
            .is_empty()
            .then_some(()))
        .is_some(),
        "pause left a zombie: {:?}",
        children(pause)
    );

    kill(Pid::from_raw(pause), Signal::SIGTERM).unwrap();
    let status = wait_for(Duration::from_secs(10), || unshare.0.try_wait().unwrap());
    let status = status.expect("pause ignored SIGTERM");
    assert!(status.success(), "pause exited with {status}");
}
