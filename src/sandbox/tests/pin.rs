use std::path::Path;

use crate::sandbox::exec::SelfExec;
use crate::sandbox::mountinfo::find;
use crate::sandbox::pin::pin_with;
use crate::sandbox::testutil::{harness, is_root, ns_inode, run, PinGuard};
use crate::sandbox::{ns_pin_main, unpin, NsKinds, SandboxError, SandboxErrorKind};

fn is_nsfs_mount(p: &Path) -> bool {
    find(p).unwrap().is_some_and(|m| m.fs_type == "nsfs")
}

#[test]
fn pins_all_three_and_unpins() {
    if !is_root("pins_all_three_and_unpins") {
        return;
    }
    let host_name = nix::unistd::gethostname().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ns");
    let guard = PinGuard(pin_with(&harness(), &dir, NsKinds::ALL, Some("berth-pin-test")).unwrap());
    let p = guard.0.clone();
    let (net, ipc, uts) = (p.net.unwrap(), p.ipc.unwrap(), p.uts.unwrap());
    for (f, kind) in [(&net, "net"), (&ipc, "ipc"), (&uts, "uts")] {
        assert_eq!(f, &dir.canonicalize().unwrap().join(kind));
        assert!(is_nsfs_mount(f), "{} is not an nsfs mount", f.display());
        // A namespace of its own, and the one a process entering the file sees.
        assert_ne!(ns_inode(f), ns_inode(format!("/proc/self/ns/{kind}")));
        let (ok, out, err) = run(
            "nsenter",
            &[
                &format!("--{kind}={}", f.display()),
                "readlink",
                &format!("/proc/self/ns/{kind}"),
            ],
        );
        assert!(ok, "nsenter: {err}");
        assert_eq!(out, format!("{kind}:[{}]", ns_inode(f)));
    }
    assert!(
        find(&dir).unwrap().is_some_and(|m| m.shared),
        "pin dir not a shared mount"
    );

    let (ok, out, err) = run(
        "nsenter",
        &[&format!("--uts={}", uts.display()), "hostname"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "berth-pin-test");
    assert_eq!(
        nix::unistd::gethostname().unwrap(),
        host_name,
        "host renamed"
    );

    let (ok, out, err) = run(
        "nsenter",
        &[
            &format!("--net={}", net.display()),
            "ip",
            "-o",
            "link",
            "show",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "only lo in a new netns: {out}");
    assert!(
        out.contains("lo:") && out.contains(",UP"),
        "lo is not up: {out}"
    );

    unpin(&guard.0).unwrap();
    for f in [&net, &ipc, &uts] {
        assert!(!f.exists(), "{} left behind", f.display());
        assert!(find(f).unwrap().is_none());
    }
    assert!(find(&dir).unwrap().is_none(), "pin dir still mounted");
    assert!(dir.is_dir(), "the directory itself stays");
    unpin(&guard.0).unwrap();
}

#[test]
fn pins_a_subset() {
    if !is_root("pins_a_subset") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ns");
    let want = NsKinds {
        net: true,
        ..Default::default()
    };
    // No UTS namespace: the hostname must not reach the host's.
    let guard = PinGuard(pin_with(&harness(), &dir, want, Some("must-not-apply")).unwrap());
    assert!(guard.0.ipc.is_none() && guard.0.uts.is_none());
    assert!(is_nsfs_mount(guard.0.net.as_ref().unwrap()));
    assert!(!dir.join("uts").exists() && !dir.join("ipc").exists());
    assert_ne!(nix::unistd::gethostname().unwrap(), "must-not-apply");
}

#[test]
fn asking_for_nothing_does_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ns");
    let p = pin_with(&harness(), &dir, NsKinds::default(), Some("x")).unwrap();
    assert_eq!(p, Default::default());
    assert!(!dir.exists());
    unpin(&p).unwrap();
}

#[test]
fn rolls_back_when_the_helper_fails() {
    if !is_root("rolls_back_when_the_helper_fails") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ns");
    let err = pin_with(&SelfExec::binary("/bin/false"), &dir, NsKinds::ALL, None).unwrap_err();
    assert!(matches!(err, SandboxError::Helper { .. }), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "files left");
    assert!(find(&dir).unwrap().is_none(), "dir mount left");
}

#[test]
fn refuses_to_pin_over_a_pin() {
    if !is_root("refuses_to_pin_over_a_pin") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ns");
    let first = PinGuard(pin_with(&harness(), &dir, NsKinds::ALL, None).unwrap());
    let err = pin_with(&harness(), &dir, NsKinds::ALL, None).unwrap_err();
    assert_eq!(err.kind(), SandboxErrorKind::InvalidArgument, "{err}");
    assert!(
        is_nsfs_mount(first.0.net.as_ref().unwrap()),
        "first pin torn down"
    );
}

#[test]
fn rejects_bad_hostnames_before_doing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ns");
    let long = "h".repeat(65);
    for bad in ["", long.as_str()] {
        let err = pin_with(&harness(), &dir, NsKinds::ALL, Some(bad)).unwrap_err();
        assert_eq!(err.kind(), SandboxErrorKind::InvalidArgument);
    }
    assert!(!dir.exists());
}

#[test]
fn helper_checks_its_arguments() {
    assert_eq!(ns_pin_main(&[]), 2);
    assert_eq!(ns_pin_main(&["/nonexistent", "net,bogus"]), 2);
    // Refused before unshare: would otherwise rename this (the host's) UTS namespace.
    assert_eq!(ns_pin_main(&["/nonexistent", "net", "renamed"]), 1);
    assert_eq!(
        NsKinds::parse("uts,net").unwrap(),
        NsKinds {
            net: true,
            ipc: false,
            uts: true
        }
    );
}
