//! `docker volume` through the real CLI: create with labels, ls with
//! filters, inspect, data written by a container landing in the mountpoint,
//! rm refused while a container uses the volume, prune (anonymous only, then
//! all), implicit volumes from `-v name:/p`, and refused names and drivers.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::support::docker::DockerEnv;

fn names(e: &DockerEnv, extra: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["volume", "ls", "--format", "{{.Name}}"];
    args.extend_from_slice(extra);
    e.docker(&args)
        .ok()
        .out()
        .lines()
        .map(String::from)
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn volumes_hold_data_and_are_guarded_while_in_use() {
    let e = DockerEnv::new("").await;

    let made = e.docker(&["volume", "create", "--label", "a=b", "v1"]).ok();
    assert_eq!(made.out(), "v1");
    e.docker(&["volume", "create", "v2"]).ok();
    // Creating an existing volume hands it back, labels unchanged.
    e.docker(&["volume", "create", "v1"]).ok();
    assert_eq!(names(&e, &[]), set(&["v1", "v2"]));
    assert_eq!(names(&e, &["--filter", "label=a=b"]), set(&["v1"]));
    assert_eq!(names(&e, &["--filter", "label=a"]), set(&["v1"]));
    assert_eq!(names(&e, &["--filter", "label=a=c"]), set(&[]));
    assert_eq!(names(&e, &["--filter", "name=2"]), set(&["v2"]));

    let mp = e
        .docker(&["volume", "inspect", "--format", "{{.Mountpoint}}", "v1"])
        .ok();
    let mp = PathBuf::from(mp.out());
    assert!(mp.is_dir(), "mountpoint {mp:?} is not a directory");
    let meta = e
        .docker(&[
            "volume",
            "inspect",
            "--format",
            "{{.Driver}} {{.Scope}} {{index .Labels \"a\"}} {{.CreatedAt}}",
            "v1",
        ])
        .ok();
    let fields: Vec<&str> = meta.out().split(' ').collect();
    assert_eq!(fields[..3], ["local", "local", "b"], "{meta:?}");
    assert!(fields[3].starts_with("20"), "CreatedAt: {meta:?}");

    // What a container writes lands in the mountpoint.
    e.docker(&[
        "run",
        "--rm",
        "-v",
        "v1:/d",
        &e.busybox,
        "sh",
        "-c",
        "echo x > /d/f",
    ])
    .ok();
    assert_eq!(std::fs::read_to_string(mp.join("f")).unwrap(), "x\n");
    // And a later container sees it.
    let seen = e
        .docker(&["run", "--rm", "-v", "v1:/d", &e.busybox, "cat", "/d/f"])
        .ok();
    assert_eq!(seen.out(), "x");

    // A container (even a stopped one) holds the volume.
    let holder = e
        .docker(&[
            "create", "--name", "holder", "-v", "v1:/d", &e.busybox, "true",
        ])
        .ok();
    let holder_id = holder.out().to_string();
    assert_eq!(names(&e, &["--filter", "dangling=true"]), set(&["v2"]));
    assert_eq!(names(&e, &["--filter", "dangling=false"]), set(&["v1"]));
    let refused = e.docker(&["volume", "rm", "v1"]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused.stderr.contains("volume is in use") && refused.stderr.contains(&holder_id),
        "{refused:?}"
    );
    assert!(mp.join("f").exists());

    e.docker(&["rm", "holder"]).ok();
    e.docker(&["volume", "rm", "v1"]).ok();
    assert!(!mp.exists(), "{mp:?} outlived its volume");
    let gone = e.docker(&["volume", "inspect", "v1"]);
    assert_ne!(gone.code, 0);
    assert!(gone.stderr.contains("no such volume"), "{gone:?}");
    let gone = e.docker(&["volume", "rm", "v1"]);
    assert_ne!(gone.code, 0);
    assert!(gone.stderr.contains("no such volume"), "{gone:?}");
    e.docker(&["volume", "rm", "-f", "v1"]).ok();
}

#[tokio::test]
async fn implicit_volumes_are_listed_and_pruned() {
    let e = DockerEnv::new("").await;

    // `-v name:/p` makes a named volume; `--mount type=volume` without a
    // source an anonymous one.
    e.docker(&[
        "create", "--name", "user", "-v", "auto:/x", &e.busybox, "true",
    ])
    .ok();
    e.docker(&[
        "create",
        "--name",
        "anon",
        "--mount",
        "type=volume,dst=/y",
        &e.busybox,
        "true",
    ])
    .ok();
    e.docker(&["volume", "create", "kept"]).ok();
    let all = names(&e, &[]);
    assert!(all.contains("auto") && all.contains("kept"), "{all:?}");
    let anon: Vec<String> = all.iter().filter(|n| is_hex64(n)).cloned().collect();
    assert_eq!(anon.len(), 1, "one anonymous volume: {all:?}");
    assert_eq!(
        names(&e, &["--filter", "label=com.docker.volume.anonymous"]),
        set(&[&anon[0]])
    );
    let mounted = e
        .docker(&[
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Type}}:{{.Name}} {{end}}",
            "user",
        ])
        .ok();
    assert_eq!(mounted.out().trim(), "volume:auto");

    // Nothing unused yet but `kept`, which is named: plain prune leaves it.
    e.docker(&["volume", "prune", "-f"]).ok();
    assert_eq!(names(&e, &[]), all);

    e.docker(&["rm", "anon"]).ok();
    e.docker(&["volume", "prune", "-f"]).ok();
    let after = names(&e, &[]);
    assert_eq!(after, set(&["auto", "kept"]), "only the anonymous one goes");

    let pruned = e.docker(&["volume", "prune", "-af"]).ok();
    assert!(pruned.stdout.contains("kept"), "{pruned:?}");
    assert_eq!(names(&e, &[]), set(&["auto"]), "the used one stays");
    e.docker(&["rm", "user"]).ok();
    e.docker(&["volume", "prune", "-af"]).ok();
    assert!(names(&e, &[]).is_empty());
}

#[tokio::test]
async fn bad_names_and_drivers_are_refused() {
    let e = DockerEnv::without_pull("").await;
    for bad in ["bad/name", ".x", "a"] {
        let r = e.docker(&["volume", "create", bad]);
        assert_ne!(r.code, 0, "{bad}: {r:?}");
        assert!(
            r.stderr.contains("invalid characters") || r.stderr.contains("too short"),
            "{bad}: {r:?}"
        );
    }
    let r = e.docker(&["volume", "create", "--driver", "nfs", "x1"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not supported"), "{r:?}");
    // A generated name is 64 hex characters.
    let made = e.docker(&["volume", "create"]).ok();
    assert!(is_hex64(made.out()), "{made:?}");
    let r = e.docker(&["volume", "ls", "--filter", "dangling=perhaps"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("invalid filter"), "{r:?}");
    assert!(names(&e, &[]).len() == 1);
}
