//! Volumes that are more than a directory, through the real CLI: the local
//! driver's `type`/`o`/`device` options (a tmpfs, a bind of a host
//! directory) mounted for their users and unmounted after, refused options
//! leaving no mount; anonymous volumes from `-v /path` and an image's
//! `VOLUME` (filled from the image), removed by `rm -v` and `--rm` while
//! named ones stay; `ps --filter volume`; `volume ls` and `system df`
//! agreeing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::docker::{run, DockerEnv};
use crate::support::host::mounts_under;

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn volume_names(e: &DockerEnv) -> BTreeSet<String> {
    e.docker(&["volume", "ls", "--format", "{{.Name}}"])
        .ok()
        .out()
        .lines()
        .map(String::from)
        .collect()
}

fn mountpoint(e: &DockerEnv, name: &str) -> PathBuf {
    let mp = e
        .docker(&["volume", "inspect", "--format", "{{.Mountpoint}}", name])
        .ok();
    PathBuf::from(mp.out())
}

/// `POST /volumes/create` with `opts` through curl: the status and body.
fn create_raw(e: &DockerEnv, name: &str, opts: &str) -> (String, String) {
    let body = format!(r#"{{"Name":"{name}","DriverOpts":{opts}}}"#);
    post_raw(e, "/volumes/create", &body)
}

/// A JSON `POST` to the daemon through curl (the CLI hides the status).
fn post_raw(e: &DockerEnv, path: &str, body: &str) -> (String, String) {
    let url = format!("http://localhost{path}");
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(e.docker_socket())
        .args(["-H", "Content-Type: application/json", "-d", body, &url])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (code.to_string(), body.to_string())
}

fn volumes_mounted(e: &DockerEnv) -> Vec<PathBuf> {
    mounts_under(&e.dir().join("root").join("volumes"))
        .into_iter()
        .map(|m| m.mount_point)
        .collect()
}

#[tokio::test]
async fn driver_options_mount_a_tmpfs_and_a_bind() {
    let e = DockerEnv::new("").await;
    let b = e.busybox.clone();

    // A tmpfs volume: a tmpfs inside the container, with its size and owner.
    e.docker(&[
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=10m,uid=1000",
        "tv",
    ])
    .ok();
    let opts = e
        .docker(&[
            "volume",
            "inspect",
            "--format",
            "{{.Options.type}} {{.Options.o}}",
            "tv",
        ])
        .ok();
    assert_eq!(opts.out(), "tmpfs size=10m,uid=1000");
    let tmp_mp = mountpoint(&e, "tv");
    assert!(volumes_mounted(&e).is_empty(), "mounted before any use");
    let r = e
        .docker(&[
            "run",
            "--name",
            "t1",
            "-v",
            "tv:/data",
            &b,
            "sh",
            "-c",
            "grep ' /data ' /proc/mounts; df -k /data | tail -1 | awk '{print $2}'; \
             stat -c %u /data; echo in-tmpfs > /data/f",
        ])
        .ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("tmpfs /data tmpfs"), "{r:?}");
    assert_eq!(lines[1], "10240", "size=10m: {r:?}");
    assert_eq!(lines[2], "1000", "uid=1000: {r:?}");
    // On the host, the volume's data is that tmpfs while its user exists.
    assert_eq!(volumes_mounted(&e), std::slice::from_ref(&tmp_mp));
    assert_eq!(
        std::fs::read_to_string(tmp_mp.join("f")).unwrap(),
        "in-tmpfs\n"
    );
    let ls = e.docker(&[
        "ps",
        "-a",
        "--filter",
        "volume=tv",
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(ls.ok().out(), "t1");
    e.docker(&["rm", "t1"]).ok();
    assert!(volumes_mounted(&e).is_empty(), "the last user went");
    assert!(!tmp_mp.join("f").exists(), "a tmpfs keeps nothing");

    // A bind volume shows the host directory, and its removal leaves it.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("hello"), "from host\n").unwrap();
    let device = format!("device={}", host.path().display());
    e.docker(&[
        "volume",
        "create",
        "--opt",
        "type=none",
        "--opt",
        "o=bind",
        "--opt",
        &device,
        "bv",
    ])
    .ok();
    let r = e
        .docker(&[
            "run",
            "--rm",
            "-v",
            "bv:/data",
            &b,
            "sh",
            "-c",
            "cat /data/hello; echo back > /data/written",
        ])
        .ok();
    assert_eq!(r.out(), "from host");
    assert_eq!(
        std::fs::read_to_string(host.path().join("written")).unwrap(),
        "back\n"
    );
    e.docker(&["volume", "rm", "bv"]).ok();
    assert!(
        host.path().join("hello").exists(),
        "removing a bind volume deleted the host's files"
    );
    assert!(volumes_mounted(&e).is_empty());

    // Bad options: 400 at create, nothing made, nothing mounted.
    for (opts, want) in [
        (
            r#"{"type":"nosuchfs","device":"x"}"#,
            "unknown filesystem type",
        ),
        (r#"{"type":"tmpfs"}"#, "missing required option"),
        (
            r#"{"type":"none","o":"bind","device":"/no/such/dir"}"#,
            "no such file or directory",
        ),
        (r#"{"colour":"red"}"#, "invalid option key"),
    ] {
        let (code, body) = create_raw(&e, "bad", opts);
        assert_eq!(code, "400", "{opts}: {body}");
        assert!(body.contains(want), "{opts}: {body}");
    }
    let r = e.docker(&["volume", "create", "--opt", "type=tmpfs", "x2"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("device"), "{r:?}");
    assert!(!volume_names(&e).contains("bad"));

    // A bind whose device went after create: refused at first use (400),
    // nothing left mounted, no container left behind.
    let gone = tempfile::tempdir().unwrap();
    let device = format!("device={}", gone.path().display());
    e.docker(&[
        "volume",
        "create",
        "--opt",
        "type=none",
        "--opt",
        "o=bind",
        "--opt",
        &device,
        "gv",
    ])
    .ok();
    drop(gone);
    let r = e.docker(&["run", "--rm", "-v", "gv:/data", &b, "true"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("failed to mount local volume"), "{r:?}");
    assert!(volumes_mounted(&e).is_empty());
    let req = format!(r#"{{"Image":"{b}","HostConfig":{{"Binds":["gv:/data"]}}}}"#);
    let (code, body) = post_raw(&e, "/containers/create", &req);
    assert_eq!(code, "400", "{body}");
    assert!(body.contains("no such file or directory"), "{body}");
    assert!(volumes_mounted(&e).is_empty());
    let left = e.docker(&["ps", "-aq"]).ok();
    assert_eq!(left.out(), "", "a failed create left a container");
    e.docker(&["volume", "rm", "gv", "tv"]).ok();
}

/// Builds `volimg`: busybox with `/data/seed` and `VOLUME /data`.
fn build_volume_image(e: &DockerEnv) {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN mkdir -p /data && echo seeded > /data/seed && chown 1234 /data\nVOLUME /data\n",
            e.busybox
        ),
    )
    .unwrap();
    let mut c = e.command(&["build", "-q", "-t", "volimg", ctx.path().to_str().unwrap()]);
    c.env("DOCKER_BUILDKIT", "0");
    let r = run(c);
    assert_eq!(r.code, 0, "{r:?}");
}

/// The `Type:Name:Destination:Source` of a container's mounts.
fn mounts_of(e: &DockerEnv, c: &str) -> Vec<(String, String, String, String)> {
    let r = e
        .docker(&[
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Type}}|{{.Name}}|{{.Destination}}|{{.Source}}\n{{end}}",
            c,
        ])
        .ok();
    r.stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let p: Vec<&str> = l.split('|').collect();
            (
                p[0].to_string(),
                p[1].to_string(),
                p[2].to_string(),
                p[3].to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn anonymous_volumes_come_and_go_with_their_container() {
    let e = DockerEnv::new("").await;
    build_volume_image(&e);
    let vols = e.dir().join("root").join("volumes");

    // The image's VOLUME gets an anonymous volume, filled from the image.
    let r = e
        .docker(&[
            "run",
            "--name",
            "a1",
            "volimg",
            "sh",
            "-c",
            "cat /data/seed; stat -c %u /data",
        ])
        .ok();
    assert_eq!(r.stdout, "seeded\n1234\n", "{r:?}");
    let m = mounts_of(&e, "a1");
    assert_eq!(m.len(), 1, "{m:?}");
    let (typ, anon1, dest, src) = &m[0];
    assert_eq!((typ.as_str(), dest.as_str()), ("volume", "/data"));
    assert!(is_hex64(anon1), "{m:?}");
    assert_eq!(Path::new(src), vols.join(anon1).join("_data"));
    let label = e
        .docker(&[
            "volume",
            "inspect",
            "--format",
            "{{index .Labels \"com.docker.volume.anonymous\"}}|{{len .Labels}}",
            anon1,
        ])
        .ok();
    assert_eq!(label.out(), "|1", "anonymous label: {label:?}");

    // `-v /path` makes one too; a named volume over the image's VOLUME
    // replaces its anonymous one (and is filled from the image).
    e.docker(&["create", "--name", "a2", "-v", "/extra", &e.busybox, "true"])
        .ok();
    let m2 = mounts_of(&e, "a2");
    assert_eq!(m2.len(), 1, "{m2:?}");
    let anon2 = m2[0].1.clone();
    assert!(is_hex64(&anon2) && m2[0].2 == "/extra", "{m2:?}");
    let r = e
        .docker(&[
            "run",
            "--name",
            "n1",
            "-v",
            "named:/data",
            "volimg",
            "cat",
            "/data/seed",
        ])
        .ok();
    assert_eq!(r.out(), "seeded");
    let m3 = mounts_of(&e, "n1");
    assert_eq!(m3.len(), 1, "no anonymous volume under a named one: {m3:?}");
    assert_eq!((m3[0].1.as_str(), m3[0].2.as_str()), ("named", "/data"));
    // A volume with content is not filled again.
    std::fs::remove_file(mountpoint(&e, "named").join("seed")).unwrap();
    std::fs::write(mountpoint(&e, "named").join("mine"), "x").unwrap();
    let r = e
        .docker(&["run", "--rm", "-v", "named:/data", "volimg", "ls", "/data"])
        .ok();
    assert_eq!(r.out(), "mine");
    // nocopy: a new volume stays empty.
    let r = e
        .docker(&[
            "run",
            "--rm",
            "-v",
            "bare:/data:nocopy",
            "volimg",
            "ls",
            "-A",
            "/data",
        ])
        .ok();
    assert_eq!(r.out(), "", "nocopy volume was filled");
    e.docker(&["volume", "rm", "bare"]).ok();

    // ps --filter volume: by name, by destination.
    let ps = |f: &str| -> BTreeSet<String> {
        e.docker(&["ps", "-a", "--filter", f, "--format", "{{.Names}}"])
            .ok()
            .out()
            .lines()
            .map(String::from)
            .collect()
    };
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(ps("volume=named"), set(&["n1"]));
    assert_eq!(ps(&format!("volume={anon1}")), set(&["a1"]));
    assert_eq!(ps("volume=/data"), set(&["a1", "n1"]));
    assert_eq!(ps("volume=/extra"), set(&["a2"]));
    assert_eq!(ps("volume=nosuch"), set(&[]));

    // volume ls and system df agree: every volume, and which are in use.
    let names = volume_names(&e);
    assert_eq!(names, set(&[anon1.as_str(), anon2.as_str(), "named"]));
    let df = e
        .docker(&[
            "system",
            "df",
            "--format",
            "{{.Type}}|{{.TotalCount}}|{{.Active}}",
        ])
        .ok();
    assert!(
        df.stdout.lines().any(|l| l == "Local Volumes|3|3"),
        "system df: {df:?}"
    );
    e.docker(&["rm", "a2"]).ok();
    let df = e
        .docker(&[
            "system",
            "df",
            "--format",
            "{{.Type}}|{{.TotalCount}}|{{.Active}}",
        ])
        .ok();
    assert!(
        df.stdout.lines().any(|l| l == "Local Volumes|3|2"),
        "system df after a user went: {df:?}"
    );
    assert!(volume_names(&e).contains(&anon2), "rm without -v took it");

    // rm -v takes the anonymous volume, a named one stays.
    e.docker(&["rm", "-v", "a1"]).ok();
    assert!(!volume_names(&e).contains(anon1), "rm -v left {anon1}");
    assert!(!vols.join(anon1).exists());
    e.docker(&["rm", "-v", "n1"]).ok();
    assert!(
        volume_names(&e).contains("named"),
        "rm -v took a named volume"
    );

    // --rm takes the anonymous volumes of the run, and only those.
    let before = volume_names(&e);
    let r = e
        .docker(&["run", "--rm", "-v", "/more", "volimg", "cat", "/data/seed"])
        .ok();
    assert_eq!(r.out(), "seeded");
    assert_eq!(volume_names(&e), before, "--rm left anonymous volumes");

    e.docker(&["volume", "rm", &anon2, "named"]).ok();
    assert!(volume_names(&e).is_empty());
}
