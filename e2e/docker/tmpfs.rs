//! `--tmpfs` and `--mount type=tmpfs` (size, mode), also on a read-only
//! root file system.

use crate::support::docker::DockerEnv;

#[tokio::test]
async fn tmpfs_mounts_with_size_and_mode() {
    let e = DockerEnv::new("").await;
    let b = e.busybox.clone();
    // The mount table line, the size df sees, the mode of the root dir,
    // and a write that works.
    let probe = "grep ' /t ' /proc/mounts; df -k /t | tail -1 | awk '{print $2}'; \
                 stat -c %a /t; echo data > /t/f && cat /t/f";
    let r = e.docker(&[
        "run",
        "--rm",
        "--tmpfs",
        "/t:size=2m,mode=1770",
        &b,
        "sh",
        "-c",
        probe,
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("tmpfs /t tmpfs"), "{r:?}");
    assert!(
        lines[0].contains("nosuid") && lines[0].contains("nodev") && lines[0].contains("noexec"),
        "{r:?}"
    );
    assert_eq!(lines[1], "2048", "size=2m: {r:?}");
    assert_eq!(lines[2], "1770", "{r:?}");
    assert_eq!(lines[3], "data");

    // --mount type=tmpfs on a read-only root: the tmpfs is writable, the root is not.
    let r = e.docker(&[
        "run",
        "--rm",
        "--read-only",
        "--mount",
        "type=tmpfs,destination=/t,tmpfs-size=1048576,tmpfs-mode=0700",
        &b,
        "sh",
        "-c",
        "df -k /t | tail -1 | awk '{print $2}'; stat -c %a /t; echo x > /t/ok && echo wrote; \
         echo y > /root-file 2>/dev/null || echo root-ro",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "1024\n700\nwrote\nroot-ro\n", "{r:?}");

    // Several, and inspect reports what was asked.
    e.docker(&[
        "create",
        "--name",
        "two",
        "--tmpfs",
        "/a",
        "--tmpfs",
        "/b:exec,size=64k",
        &b,
        "true",
    ])
    .ok();
    let r = e
        .docker(&["inspect", "-f", "{{json .HostConfig.Tmpfs}}", "two"])
        .ok();
    assert_eq!(r.out(), r#"{"/a":"","/b":"exec,size=64k"}"#);
    let r = e.docker(&["start", "-a", "two"]);
    assert_eq!(r.code, 0, "{r:?}");

    // Bad options are the caller's fault.
    for bad in ["/t:size=lots", "/t:bogus", "relative"] {
        let r = e.docker(&["run", "--rm", "--tmpfs", bad, &b, "true"]);
        assert_eq!(r.code, 125, "{bad}: {r:?}");
        assert!(r.stderr.contains("tmpfs"), "{bad}: {r:?}");
    }
    e.docker(&["rm", "two"]).ok();
    assert_eq!(e.docker(&["ps", "-aq"]).ok().out(), "");
}
