//! A command the runtime cannot execute, as Docker reports it: the create
//! succeeds, the start fails with 127 (missing) or 126 (not executable),
//! `docker run` exits with that code, and the container stays `created`
//! with `State.ExitCode` and `State.Error`; a file copied in afterwards
//! makes the next start work.

use crate::support::docker::DockerEnv;

fn state(e: &DockerEnv, name: &str) -> (String, String, String) {
    let r = e
        .docker(&[
            "inspect",
            "-f",
            "{{.State.Status}}|{{.State.ExitCode}}|{{.State.Error}}",
            name,
        ])
        .ok();
    let mut it = r.out().splitn(3, '|').map(str::to_string);
    (
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
    )
}

#[tokio::test]
async fn missing_and_non_executable_commands_fail_at_start() {
    let e = DockerEnv::new("").await;
    let b = e.busybox.clone();
    for (name, cmd, code, words) in [
        ("missing", "/nonexistent", 127, "no such file or directory"),
        (
            "noname",
            "nosuchcommand",
            127,
            "executable file not found in $PATH",
        ),
        ("notexec", "/etc/passwd", 126, "permission denied"),
    ] {
        let r = e.docker(&["run", "--name", name, &b, cmd]);
        assert_eq!(r.code, code, "{name}: {r:?}");
        assert!(r.stderr.contains(words), "{name}: {r:?}");
        let (status, exit, error) = state(&e, name);
        assert_eq!(status, "created", "{name}");
        assert_eq!(exit, code.to_string(), "{name}");
        assert!(
            error.contains(words) && error.contains(cmd),
            "{name}: {error}"
        );
        let ps = e
            .docker(&[
                "ps",
                "-a",
                "--filter",
                &format!("name={name}"),
                "--format",
                "{{.Status}}",
            ])
            .ok();
        assert_eq!(ps.out(), "Created", "{name}");
        // A second start fails the same way.
        let r = e.docker(&["start", name]);
        assert_ne!(r.code, 0, "{r:?}");
        assert!(r.stderr.contains(words), "{name}: {r:?}");
    }
    // --rm: removed after the failed start, as Docker does.
    let r = e.docker(&["run", "--rm", "--name", "gone", &b, "/nonexistent"]);
    assert_eq!(r.code, 127, "{r:?}");
    let ps = e.docker(&["ps", "-aq", "--filter", "name=gone"]).ok();
    assert_eq!(ps.out(), "");

    // The runtime tries again at start: a file copied in makes it work.
    e.docker(&["create", "--name", "later", &b, "/hello"]).ok();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hello");
    std::fs::write(&script, "#!/bin/sh\necho hello from a copied file\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    e.docker(&["cp", &script.display().to_string(), "later:/hello"])
        .ok();
    let r = e.docker(&["start", "-a", "later"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "hello from a copied file\n"),
        "{r:?}"
    );

    // Removal of a never-started container leaves nothing behind.
    e.docker(&["rm", "missing", "noname", "notexec", "later"])
        .ok();
    assert_eq!(e.docker(&["ps", "-aq"]).ok().out(), "");
    let log = e.d.log();
    assert!(!log.contains("panicked"), "berthd panicked:\n{log}");
}
