//! Docker's image endpoints through the real CLI (and bollard): pull with
//! progress, list / inspect / history, tag and rmi (with the in-use
//! conflicts), save → rmi → load round trips, hostile archives, import and
//! prune.

use std::collections::BTreeSet;
use std::io::Read;

use crate::support::catalog;
use crate::support::docker::DockerEnv;
use crate::support::images::BuiltImage;
use crate::support::layers::busybox_tar;

/// Pushes a busybox variant (told apart by a label) as `test/<repo>:<tag>`.
async fn push(e: &DockerEnv, repo: &str, tag: &str, cmd: &[&str]) -> (String, BuiltImage) {
    let built = catalog::busybox()
        .label("berth.e2e.images", repo)
        .cmd(cmd)
        .build();
    let name = built.push_tag(&e.reg, &format!("test/{repo}"), tag).await;
    (name, built)
}

/// `docker images` as `repo:tag id` lines.
fn listed(e: &DockerEnv, extra: &[&str]) -> BTreeSet<String> {
    let mut args = vec![
        "images",
        "--no-trunc",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    ];
    args.extend_from_slice(extra);
    e.docker(&args)
        .ok()
        .out()
        .lines()
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn pull_streams_progress_and_status() {
    let e = DockerEnv::without_pull("").await;
    let (name, built) = push(&e, "pulled", "v1", &["sh"]).await;
    let r = e.docker(&["pull", &name]).ok();
    let layer = &built.layers[0].digest["sha256:".len()..][..12];
    for want in [
        "v1: Pulling from test/pulled".to_string(),
        format!("{layer}: Pull complete"),
        format!("Digest: {}", built.manifest_digest),
        format!("Status: Downloaded newer image for {name}"),
    ] {
        assert!(r.stdout.contains(&want), "missing {want:?} in {r:?}");
    }
    // The same pull again changes nothing.
    let again = e.docker(&["pull", &name]).ok();
    assert!(
        again
            .stdout
            .contains(&format!("Status: Image is up to date for {name}")),
        "{again:?}"
    );
    assert!(
        again.stdout.contains(&format!("{layer}: Already exists")),
        "{again:?}"
    );

    let missing_tag = name.replace(":v1", ":nope");
    let r = e.docker(&["pull", &missing_tag]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains(&format!(
            "manifest for {missing_tag} not found: manifest unknown"
        )),
        "{r:?}"
    );
    let r = e.docker(&["pull", &format!("{}/test/nothing-here:v1", e.reg.addr())]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("repository does not exist") || r.stderr.contains("not found"),
        "{r:?}"
    );
    // Neither failure left an image.
    assert_eq!(listed(&e, &[]).len(), 1);
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let ev = e
        .docker(&[
            "events",
            "--since",
            "0",
            "--until",
            &until,
            "--filter",
            "type=image",
            "--format",
            "{{.Action}} {{.Actor.ID}}",
        ])
        .ok();
    assert_eq!(
        ev.out().lines().collect::<Vec<_>>(),
        vec![format!("pull {name}"), format!("pull {name}")],
        "{ev:?}"
    );
}

#[tokio::test]
async fn images_are_listed_and_inspected() {
    let e = DockerEnv::without_pull("").await;
    let (name, built) = push(&e, "inspected", "v2", &["echo", "hi"]).await;
    e.docker(&["pull", "-q", &name]).ok();
    assert_eq!(
        listed(&e, &[]),
        BTreeSet::from([format!("{} {}", name, built.id())])
    );
    let short = e.docker(&["images", "-q"]).ok();
    assert_eq!(short.out(), &built.id()["sha256:".len()..][..12]);
    let r = e
        .docker(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{json .Config.Cmd}}",
            &name,
        ])
        .ok();
    assert_eq!(r.out(), format!("{} [\"echo\",\"hi\"]", built.id()));
    let r = e
        .docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoTags}} {{len .RootFS.Layers}} {{.GraphDriver.Name}} {{.Os}} {{index .Config.Labels \"berth.e2e.images\"}}",
            &built.id()[7..19],
        ])
        .ok();
    assert_eq!(r.out(), format!("[\"{name}\"] 1 overlay2 linux inspected"));
    // A plain term goes to the configured index (the harness points it at a
    // closed loopback port): a clear error naming it.
    let r = e.docker(&["search", "busybox"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("127.0.0.1:9"), "{r:?}");
    let r = e.docker(&["image", "inspect", "nope:nope"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("No such image: nope:nope"), "{r:?}");

    // Filters: reference globs and dangling.
    let r = e
        .docker(&["images", "--filter", "reference=*/test/insp*", "-q"])
        .ok();
    assert_eq!(r.out().lines().count(), 1, "{r:?}");
    let r = e
        .docker(&["images", "--filter", "reference=*/test/other*", "-q"])
        .ok();
    assert_eq!(r.out(), "", "{r:?}");
    let r = e
        .docker(&["images", "--filter", "dangling=true", "-q"])
        .ok();
    assert_eq!(r.out(), "", "{r:?}");

    let h = e
        .docker(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.CreatedBy}}",
            &name,
        ])
        .ok();
    assert_eq!(
        h.out(),
        format!("{} berth-e2e layer 0", built.id()),
        "{h:?}"
    );
}

#[tokio::test]
async fn tag_then_rmi_of_the_tag_only_untags() {
    let e = DockerEnv::new("").await;
    let id = e
        .docker(&["image", "inspect", "--format", "{{.Id}}", &e.busybox])
        .ok()
        .out()
        .to_string();
    e.docker(&["tag", &e.busybox, "mine:1"]).ok();
    assert_eq!(
        listed(&e, &[]),
        BTreeSet::from([format!("{} {id}", e.busybox), format!("mine:1 {id}")])
    );
    let r = e.docker(&["rmi", "mine:1"]).ok();
    assert_eq!(r.out(), "Untagged: mine:1", "{r:?}");
    assert_eq!(
        listed(&e, &[]),
        BTreeSet::from([format!("{} {id}", e.busybox)])
    );
    assert_eq!(e.docker(&["image", "inspect", "mine:1"]).code, 1);
    // The last name goes with the image.
    let r = e.docker(&["rmi", &e.busybox]).ok();
    assert!(
        r.stdout.contains(&format!("Untagged: {}", e.busybox)),
        "{r:?}"
    );
    assert!(r.stdout.contains(&format!("Deleted: {id}")), "{r:?}");
    assert!(listed(&e, &[]).is_empty());
}

#[tokio::test]
async fn rmi_refuses_images_containers_use() {
    let e = DockerEnv::new("").await;
    let id = e
        .docker(&["image", "inspect", "--format", "{{.Id}}", &e.busybox])
        .ok()
        .out()
        .to_string();
    let ctr = e
        .docker(&["run", "-d", &e.busybox, "sleep", "300"])
        .ok()
        .out()
        .to_string();
    for force in [false, true] {
        let mut args = vec!["rmi"];
        if force {
            args.push("-f");
        }
        args.push(&id);
        let r = e.docker(&args);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stderr.contains(&format!(
                "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
                &id[7..19],
                &ctr[..12]
            )),
            "{r:?}"
        );
    }
    let r = e.docker(&["rmi", &e.busybox]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("conflict: unable to remove repository reference")
            && r.stderr
                .contains(&format!("container {} is using", &ctr[..12])),
        "{r:?}"
    );
    assert_eq!(
        listed(&e, &[]),
        BTreeSet::from([format!("{} {id}", e.busybox)])
    );
    e.docker(&["rm", "-f", &ctr]).ok();
    e.docker(&["rmi", &e.busybox]).ok();
    assert!(listed(&e, &[]).is_empty());
}

/// File names in a tar.
fn tar_names(path: &std::path::Path) -> BTreeSet<String> {
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn save_rmi_load_restores_the_same_image() {
    let e = DockerEnv::new("").await;
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("x.tar");
    let id = e
        .docker(&["image", "inspect", "--format", "{{.Id}}", &e.busybox])
        .ok()
        .out()
        .to_string();
    e.docker(&["save", "-o", tarball.to_str().unwrap(), &e.busybox])
        .ok();
    let names = tar_names(&tarball);
    for want in ["manifest.json", "index.json", "oci-layout", "repositories"] {
        assert!(names.contains(want), "{want} missing from {names:?}");
    }
    assert!(
        names.contains(&format!("blobs/sha256/{}", &id[7..])),
        "{names:?}"
    );

    e.docker(&["rmi", &e.busybox]).ok();
    assert!(listed(&e, &[]).is_empty());
    let r = e.docker(&["load", "-i", tarball.to_str().unwrap()]).ok();
    assert!(
        r.stdout.contains(&format!("Loaded image: {}", e.busybox)),
        "{r:?}"
    );
    assert_eq!(
        listed(&e, &[]),
        BTreeSet::from([format!("{} {id}", e.busybox)])
    );
    let r = e.docker(&["run", "--rm", &e.busybox, "echo", "hi"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "hi\n"), "{r:?}");

    // Loading over an existing image is idempotent; `docker load` from stdin works too.
    let data = std::fs::read(&tarball).unwrap();
    let r = e.docker_stdin(&["load"], &data);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(listed(&e, &[]).len(), 1);
}

/// A tar with raw entry names (bypassing the tar crate's path checks).
fn raw_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[tokio::test]
async fn hostile_archives_are_refused_and_leave_nothing() {
    let e = DockerEnv::without_pull("").await;
    let escaping = raw_tar(&[
        ("../../../../tmp/berth-evil", b"gotcha"),
        ("manifest.json", b"[]"),
    ]);
    let r = e.docker_stdin(&["load"], &escaping);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("escapes the archive"), "{r:?}");
    assert!(!std::path::Path::new("/tmp/berth-evil").exists());

    // A manifest that names a file outside, and a blob that lies about its digest.
    let outside = raw_tar(&[(
        "manifest.json",
        br#"[{"Config":"../../etc/passwd","RepoTags":["evil:1"],"Layers":[]}]"#,
    )]);
    let r = e.docker_stdin(&["load"], &outside);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("escapes the archive"), "{r:?}");
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{0}"]}}}}"#,
        "0".repeat(64)
    );
    let liar = format!("blobs/sha256/{}", "1".repeat(64));
    let manifest =
        format!(r#"[{{"Config":"config.json","RepoTags":["evil:2"],"Layers":["{liar}"]}}]"#);
    let lying = raw_tar(&[
        ("config.json", config.as_bytes()),
        (&liar, b"not a layer"),
        ("manifest.json", manifest.as_bytes()),
    ]);
    let r = e.docker_stdin(&["load"], &lying);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("does not match its digest"), "{r:?}");
    // A layer whose content is not what the config's diff ID says.
    let layer = busybox_tar();
    let layer_path = "layer.tar";
    let manifest =
        format!(r#"[{{"Config":"config.json","RepoTags":["evil:3"],"Layers":["{layer_path}"]}}]"#);
    let wrong_diff = raw_tar(&[
        ("config.json", config.as_bytes()),
        (layer_path, layer),
        ("manifest.json", manifest.as_bytes()),
    ]);
    let r = e.docker_stdin(&["load"], &wrong_diff);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.to_lowercase().contains("diff"), "{r:?}");
    assert!(listed(&e, &[]).is_empty());
    for dir in ["snapshots", "blobs/sha256"] {
        let left: Vec<_> = std::fs::read_dir(e.d.root().join(dir))
            .unwrap()
            .map(|d| d.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{dir}: left behind {left:?}");
    }
}

#[tokio::test]
async fn import_with_changes_then_prune_dangling() {
    let e = DockerEnv::new("").await;
    let r = e.docker_stdin(
        &[
            "import",
            "--change",
            r#"CMD ["echo", "imported"]"#,
            "--change",
            "ENV GREETING=hello",
            "-",
            "imported:1",
        ],
        busybox_tar(),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let id = r.out().to_string();
    assert!(id.starts_with("sha256:"), "{r:?}");
    let r = e.docker(&["run", "--rm", "imported:1"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "imported\n"), "{r:?}");
    let r = e
        .docker(&["run", "--rm", "imported:1", "sh", "-c", "echo $GREETING"])
        .ok();
    assert_eq!(r.out(), "hello");

    // An unnamed import is dangling; prune removes it and nothing else.
    let r = e.docker_stdin(&["import", "-"], busybox_tar());
    assert_eq!(r.code, 0, "{r:?}");
    // Same content, same config apart from the creation time: a second image.
    let dangling = r.out().to_string();
    assert_ne!(dangling, id);
    let r = e
        .docker(&["images", "--no-trunc", "--filter", "dangling=true", "-q"])
        .ok();
    assert_eq!(r.out(), dangling);
    let r = e.docker(&["image", "prune", "-f"]).ok();
    assert!(r.stdout.contains(&format!("deleted: {dangling}")), "{r:?}");
    assert!(r.stdout.contains("Total reclaimed space"), "{r:?}");
    let left = listed(&e, &[]);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&format!("imported:1 {id}")), "{left:?}");
}

#[tokio::test]
async fn bollard_pulls_lists_and_inspects() {
    use bollard::query_parameters::{CreateImageOptionsBuilder, ListImagesOptions};
    use futures::StreamExt;

    let e = DockerEnv::without_pull("").await;
    let (name, built) = push(&e, "bollard", "b1", &["sh"]).await;
    let client = e.bollard();
    let (image, tag) = name.rsplit_once(':').unwrap();
    let opts = CreateImageOptionsBuilder::default()
        .from_image(image)
        .tag(tag)
        .build();
    let msgs: Vec<_> = client.create_image(Some(opts), None, None).collect().await;
    let statuses: Vec<String> = msgs
        .into_iter()
        .map(|m| m.expect("pull message").status.unwrap_or_default())
        .collect();
    assert!(
        statuses.contains(&format!("Status: Downloaded newer image for {name}")),
        "{statuses:?}"
    );
    let list = client.list_images(None::<ListImagesOptions>).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, built.id());
    assert_eq!(list[0].repo_tags, vec![name.clone()]);
    let img = client.inspect_image(&name).await.unwrap();
    assert_eq!(img.id.as_deref(), Some(built.id()));
    assert_eq!(img.root_fs.and_then(|r| r.layers).map(|l| l.len()), Some(1));

    // A pull error after the stream began would be an errorDetail; before,
    // it is an ordinary error response.
    let opts = CreateImageOptionsBuilder::default()
        .from_image(image)
        .tag("missing")
        .build();
    let msgs: Vec<_> = client.create_image(Some(opts), None, None).collect().await;
    assert!(
        msgs.iter().any(|m| m.is_err()),
        "a missing tag must fail: {msgs:?}"
    );
    let mut tarball = Vec::new();
    let mut stream = client.export_image(&name);
    while let Some(chunk) = stream.next().await {
        tarball.extend_from_slice(&chunk.unwrap());
    }
    let mut names = Vec::new();
    let mut a = tar::Archive::new(&tarball[..]);
    for entry in a.entries().unwrap() {
        let mut entry = entry.unwrap();
        let n = entry.path().unwrap().to_string_lossy().into_owned();
        if n == "manifest.json" {
            let mut s = String::new();
            entry.read_to_string(&mut s).unwrap();
            assert!(s.contains(&name), "{s}");
        }
        names.push(n);
    }
    assert!(names.iter().any(|n| n == "index.json"), "{names:?}");
}
