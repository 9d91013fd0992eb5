//! `docker commit`, `docker diff` and `docker export` with the real CLI
//! (and docker-py's `container.commit()`): the committed image runs under
//! `docker run` and in a CRI pod with the `-c` changes applied, keeps a hard
//! link and an xattr the container's file system had, a running container
//! is paused for the commit and running after; `docker diff` reports A/C/D
//! as Docker does; `docker export` is the merged root file system.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::docker::DockerEnv;
use crate::support::pods;

fn full_id(e: &DockerEnv, name: &str) -> String {
    e.docker(&["inspect", "-f", "{{.Id}}", name])
        .ok()
        .out()
        .to_string()
}

#[tokio::test]
async fn commit_with_changes_runs_and_keeps_links_and_xattrs() {
    let e = DockerEnv::new("").await;
    e.docker(&[
        "run",
        "--name",
        "src",
        &e.busybox,
        "sh",
        "-c",
        "echo hello > /x && ln /x /x2 && mkdir -p /srv && echo s > /srv/s",
    ])
    .ok();
    // An xattr written through the container's own root file system (busybox
    // has no setfattr): overlayfs copies it up into the writable layer.
    let id = full_id(&e, "src");
    let rootfs = e.d.state().join("containers").join(&id).join("rootfs");
    xattr::set(rootfs.join("srv/s"), "user.berth", b"kept").unwrap();

    let out = e
        .docker(&[
            "commit",
            "-c",
            r#"CMD ["cat","/x"]"#,
            "-c",
            "ENV A=1",
            "-m",
            "made by a test",
            "-a",
            "tester",
            "src",
            "committed:v1",
        ])
        .ok();
    assert!(out.out().starts_with("sha256:"), "{out:?}");
    let image_id = out.out().to_string();

    // The image's CMD is the change; ENV reached the config.
    let ran = e.docker(&["run", "--rm", "committed:v1"]).ok();
    assert_eq!(ran.out(), "hello");
    let env = e
        .docker(&["run", "--rm", "committed:v1", "sh", "-c", "echo A=$A"])
        .ok();
    assert_eq!(env.out(), "A=1");
    let inspect = e
        .docker(&[
            "image",
            "inspect",
            "-f",
            "{{json .Config.Cmd}} {{.Comment}} {{.Author}} {{len .RootFS.Layers}}",
            "committed:v1",
        ])
        .ok();
    assert_eq!(inspect.out(), r#"["cat","/x"] made by a test tester 2"#);

    // The hard link is one inode in a container of the committed image.
    let inodes = e
        .docker(&[
            "run",
            "--rm",
            "committed:v1",
            "stat",
            "-c",
            "%i %h",
            "/x",
            "/x2",
        ])
        .ok();
    let lines: Vec<&str> = inodes.out().lines().collect();
    assert_eq!(lines.len(), 2, "{inodes:?}");
    assert_eq!(lines[0], lines[1], "one inode, two links: {inodes:?}");
    assert!(lines[0].ends_with(" 2"), "{inodes:?}");
    // The xattr is in a container of the committed image (read through its
    // rootfs from the host).
    e.docker(&[
        "run",
        "-d",
        "--name",
        "user",
        "committed:v1",
        "sleep",
        "300",
    ])
    .ok();
    let user_root =
        e.d.state()
            .join("containers")
            .join(full_id(&e, "user"))
            .join("rootfs");
    assert_eq!(
        xattr::get(user_root.join("srv/s"), "user.berth").unwrap(),
        Some(b"kept".to_vec())
    );
    e.docker(&["rm", "-f", "user"]).ok();

    // The layer blob itself (through docker save) carries both.
    let save = e.command(&["save", "committed:v1"]).output().unwrap();
    assert!(save.status.success());
    let mut found_link = false;
    let mut found_xattr = false;
    let mut outer = tar::Archive::new(&save.stdout[..]);
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if data.len() < 2 || data[..2] != [0x1f, 0x8b] {
            continue;
        }
        let mut inner = tar::Archive::new(flate2::read::GzDecoder::new(&data[..]));
        let Ok(list) = inner.entries() else { continue };
        for l in list.flatten() {
            let mut l = l;
            let path = l.path().unwrap().display().to_string();
            if path == "x2" && l.header().entry_type() == tar::EntryType::Link {
                found_link = l.link_name().unwrap().unwrap().display().to_string() == "x";
            }
            if path == "srv/s" {
                if let Ok(Some(p)) = l.pax_extensions() {
                    found_xattr = p.flatten().any(|r| {
                        r.key().ok() == Some("SCHILY.xattr.user.berth")
                            && r.value_bytes() == b"kept"
                    });
                }
            }
        }
    }
    assert!(found_link, "x2 is a tar hard link to x in the layer");
    assert!(found_xattr, "srv/s carries its xattr in the layer");

    // CRI sees the committed image and runs it in a pod.
    let mut images = e.d.image_client().await;
    let listed = images
        .list_images(k8s_cri::v1::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.images.iter().any(|i| i.id == image_id
            && i.repo_tags
                .iter()
                .any(|t| t == "docker.io/library/committed:v1")),
        "{listed:?}"
    );
    let mut rt = e.d.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let pod_cfg = pods::pod_config("committed", logs.path());
    let pod = pods::run_pod(&mut rt, &pod_cfg).await;
    let mut c = pods::container_config("committed", "committed:v1", "", "committed");
    c.command.clear();
    c.args.clear();
    let ctr = pods::run(&mut rt, &pod, &c, &pod_cfg).await;
    let st = pods::wait_exited(&mut rt, &ctr).await;
    assert_eq!(st.exit_code, 0);
    let text = std::fs::read_to_string(logs.path().join("committed/0.log")).unwrap();
    let lines: Vec<String> = pods::parse_log(&text).into_iter().map(|l| l.msg).collect();
    assert_eq!(lines, vec!["hello"], "the committed CMD ran");
    pods::stop_pod(&mut rt, &pod).await.unwrap();
    pods::remove_pod(&mut rt, &pod).await.unwrap();

    // Changes that are not allowed, and a missing container.
    let bad = e.docker(&["commit", "-c", "RUN true", "src", "bad:v1"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("not a valid change command"), "{bad:?}");
    let missing = e.docker(&["commit", "nosuch", "bad:v1"]);
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains("No such container"), "{missing:?}");
    e.docker(&["rm", "src"]).ok();
}

#[tokio::test]
async fn diff_lists_added_changed_and_deleted() {
    let e = DockerEnv::new("").await;
    e.docker(&[
        "run",
        "--name",
        "d",
        &e.busybox,
        "sh",
        "-c",
        "echo a > /added && echo more >> /etc/passwd && rm /etc/group && mkdir -p /var/new/dir",
    ])
    .ok();
    let diff = e.docker(&["diff", "d"]).ok();
    let lines: Vec<&str> = diff.out().lines().collect();
    assert_eq!(
        lines,
        vec![
            "A /added",
            "C /etc",
            "D /etc/group",
            "C /etc/passwd",
            "C /var",
            "A /var/new",
            "A /var/new/dir",
        ],
        "{diff:?}"
    );

    // export: the merged root file system, as tar -t lists it.
    let exported = e.command(&["export", "d"]).output().unwrap();
    assert!(exported.status.success());
    let mut tar_t = Command::new("tar")
        .arg("-t")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tar_t
        .stdin
        .take()
        .unwrap()
        .write_all(&exported.stdout)
        .unwrap();
    let listed = tar_t.wait_with_output().unwrap();
    assert!(listed.status.success());
    let names = String::from_utf8_lossy(&listed.stdout);
    let names: Vec<&str> = names.lines().collect();
    for want in [
        "added",
        "bin/busybox",
        "bin/sh",
        "etc/passwd",
        "var/new/dir/",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    assert!(!names.contains(&"etc/group"), "{names:?}");
    // A container that never ran: the image's files, and no changes.
    e.docker(&["create", "--name", "fresh", &e.busybox, "true"])
        .ok();
    let fresh = e.command(&["export", "fresh"]).output().unwrap();
    assert!(fresh.status.success());
    let mut a = tar::Archive::new(&fresh.stdout[..]);
    let n = a.entries().unwrap().count();
    assert!(n > 10, "{n} entries");
    let none = e.docker(&["diff", "fresh"]).ok();
    assert_eq!(none.out(), "", "a container that never ran changed nothing");
    let missing = e.docker(&["diff", "nosuch"]);
    assert_ne!(missing.code, 0);
    e.docker(&["rm", "d", "fresh"]).ok();
}

#[tokio::test]
async fn commit_pauses_a_running_container() {
    let e = DockerEnv::new("").await;
    e.docker(&[
        "run",
        "-d",
        "--name",
        "busy",
        &e.busybox,
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /counter; sleep 0.1; done",
    ])
    .ok();
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    std::thread::sleep(std::time::Duration::from_millis(300));
    e.docker(&["commit", "busy", "busy:snap"]).ok();
    let state = e
        .docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Paused}}",
            "busy",
        ])
        .ok();
    assert_eq!(state.out(), "running false");
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let events = e
        .docker(&[
            "events",
            "--since",
            &start.to_string(),
            "--until",
            &until.to_string(),
            "--filter",
            "container=busy",
            "--format",
            "{{.Action}}",
        ])
        .ok();
    let actions: Vec<&str> = events.out().lines().collect();
    let pos = |a: &str| actions.iter().position(|x| *x == a);
    let (p, u, c) = (pos("pause"), pos("unpause"), pos("commit"));
    assert!(p.is_some() && u.is_some() && c.is_some(), "{actions:?}");
    assert!(
        p < u && u < c,
        "paused for the diff, resumed, committed: {actions:?}"
    );
    // The counter the container wrote is in the image.
    let counter = e
        .docker(&["run", "--rm", "busy:snap", "cat", "/counter"])
        .ok();
    assert!(counter.out().parse::<u64>().is_ok(), "{counter:?}");
    // --pause=false commits without freezing it.
    e.docker(&["commit", "--pause=false", "busy", "busy:nopause"])
        .ok();
    e.docker(&["rm", "-f", "busy"]).ok();
}

#[tokio::test]
async fn docker_py_commits_a_container() {
    let e = DockerEnv::new("").await;
    let script = r#"
import sys, docker
c = docker.DockerClient(base_url=sys.argv[1])
ctr = c.containers.run(sys.argv[2], ["sh", "-c", "echo py > /py"], detach=True)
ctr.wait()
img = ctr.commit(repository="pycommit", tag="v1", changes=["ENV FROM_PY=yes"], message="py")
print(img.id.startswith("sha256:"), img.tags)
print(c.containers.run("pycommit:v1", ["sh", "-c", "cat /py; echo $FROM_PY"], remove=True).decode())
ctr.remove()
"#;
    let out = Command::new(crate::support::python())
        .arg("-c")
        .arg(script)
        .arg(e.host())
        .arg(&e.busybox)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines, ["True ['pycommit:v1']", "py", "yes"], "{stdout}");
}
