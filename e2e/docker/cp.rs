//! `docker cp` both ways through the archive API, for running and stopped
//! containers; missing paths; archives that try to leave the container.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::docker::DockerEnv;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn cp_round_trips_files_and_directories() {
    let e = DockerEnv::new("").await;
    e.docker(&["run", "-d", "--name", "box", &e.busybox, "sleep", "300"])
        .ok();
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    let file = h.join("note.txt");
    std::fs::write(&file, "a note\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o750)).unwrap();
    let dir = h.join("tree");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/deep.txt"), "deep\n").unwrap();
    std::fs::set_permissions(dir.join("sub"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("sub/deep.txt", dir.join("link")).unwrap();

    e.docker(&["cp", file.to_str().unwrap(), "box:/tmp/"]).ok();
    e.docker(&["cp", dir.to_str().unwrap(), "box:/tmp/tree"])
        .ok();

    let back = h.join("back");
    std::fs::create_dir(&back).unwrap();
    e.docker(&["cp", "box:/tmp/note.txt", back.to_str().unwrap()])
        .ok();
    e.docker(&["cp", "box:/tmp/tree", back.to_str().unwrap()])
        .ok();
    assert_eq!(
        std::fs::read_to_string(back.join("note.txt")).unwrap(),
        "a note\n"
    );
    assert_eq!(mode(&back.join("note.txt")), 0o750);
    assert_eq!(
        std::fs::read_to_string(back.join("tree/sub/deep.txt")).unwrap(),
        "deep\n"
    );
    assert_eq!(mode(&back.join("tree/sub")), 0o700);
    assert_eq!(
        std::fs::read_link(back.join("tree/link")).unwrap(),
        Path::new("sub/deep.txt")
    );

    // Content of a directory only (`dir/.`), to stdout as a tar.
    let tar = e.command(&["cp", "box:/tmp/tree/.", "-"]).output().unwrap();
    assert!(tar.status.success());
    let mut a = tar::Archive::new(&tar.stdout[..]);
    let names: Vec<String> = a
        .entries()
        .unwrap()
        .map(|x| x.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with("sub/deep.txt")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("tree")), "{names:?}");

    let missing = e.docker(&["cp", "box:/no/such/file", back.to_str().unwrap()]);
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("Could not find the file"),
        "{missing:?}"
    );
    e.docker(&["rm", "-f", "box"]).ok();
}

#[tokio::test]
async fn cp_into_a_created_container_is_seen_when_it_runs() {
    let e = DockerEnv::new("").await;
    e.docker(&["create", "--name", "later", &e.busybox, "cat", "/given.txt"])
        .ok();
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("given.txt");
    std::fs::write(&file, "before start\n").unwrap();
    e.docker(&["cp", file.to_str().unwrap(), "later:/given.txt"])
        .ok();
    e.docker(&["start", "later"]).ok();
    assert_eq!(e.docker(&["wait", "later"]).ok().out(), "0");
    assert_eq!(e.docker(&["logs", "later"]).ok().stdout, "before start\n");
    // And out of the exited container.
    let out = e
        .command(&["cp", "later:/given.txt", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut a = tar::Archive::new(&out.stdout[..]);
    let mut entry = a.entries().unwrap().next().unwrap().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
    assert_eq!(text, "before start\n");
    e.docker(&["rm", "-f", "later"]).ok();
}

/// A raw `PUT /containers/{id}/archive` (the CLI never sends such tars).
async fn put_archive(e: &DockerEnv, container: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = tokio::net::UnixStream::connect(e.docker_socket())
        .await
        .unwrap();
    let head = format!(
        "PUT /v1.47/containers/{container}/archive?path={path} HTTP/1.1\r\nHost: docker\r\n\
         Content-Type: application/x-tar\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // A refusal may come (and the connection close) before the whole body
    // is sent: the answer is what counts.
    let _ = s.write_all(body).await;
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp).await;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let code = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, resp)
}

/// A tar of one entry with a raw name (tar::Builder refuses `..`).
fn raw_tar(name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(data.len() as u64);
    let field = &mut h.as_old_mut().name;
    field[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        h.set_link_name_literal(l.as_bytes()).unwrap();
    }
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, data).unwrap();
    b.into_inner().unwrap()
}

#[tokio::test]
async fn archives_cannot_write_outside_the_container() {
    let e = DockerEnv::new("").await;
    e.docker(&["run", "-d", "--name", "target", &e.busybox, "sleep", "300"])
        .ok();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("escaped");
    let climb = format!("../../../../../../../../../..{}", victim.display());
    for (what, tar) in [
        (
            "../ climb",
            raw_tar(&climb, tar::EntryType::Regular, b"x", None),
        ),
        (
            "absolute name",
            raw_tar(
                victim.to_str().unwrap(),
                tar::EntryType::Regular,
                b"x",
                None,
            ),
        ),
        (
            "symlink out",
            raw_tar(
                "out",
                tar::EntryType::Symlink,
                b"",
                Some("../../../../../../../../.."),
            ),
        ),
    ] {
        let (code, resp) = put_archive(&e, "target", "/tmp", &tar).await;
        assert_eq!(code, 400, "{what}: {resp}");
    }
    assert!(!victim.exists(), "nothing was written outside");

    // A link planted inside the container that points at the host's path
    // still resolves inside the container.
    let planted = raw_tar(
        "door",
        tar::EntryType::Symlink,
        b"",
        Some(outside.path().to_str().unwrap()),
    );
    let (code, resp) = put_archive(&e, "target", "/tmp", &planted).await;
    assert_eq!(code, 200, "{resp}");
    let through = raw_tar("door/escaped", tar::EntryType::Regular, b"x", None);
    let (code, resp) = put_archive(&e, "target", "/tmp", &through).await;
    assert_eq!(code, 200, "{resp}");
    assert!(
        !victim.exists(),
        "the link was followed inside the container"
    );
    let inside = e
        .command(&[
            "cp",
            &format!("target:{}/escaped", outside.path().display()),
            "-",
        ])
        .output()
        .unwrap();
    assert!(inside.status.success(), "the file landed in the container");

    let (code, _) = put_archive(&e, "target", "/no/such/dir", &through).await;
    assert_eq!(code, 404);
    e.docker(&["rm", "-f", "target"]).ok();
}
