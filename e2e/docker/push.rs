//! `docker push`, `docker login`, `docker search` and distribution inspect
//! against Debian's docker-registry on 127.0.0.1 (open and with htpasswd
//! auth): a pushed image removed locally and pulled back with docker and
//! with CRI PullImage has the digest the push reported; a second push finds
//! every layer there; a push to another repository of the same registry
//! mounts; a registry with a small `push_chunk_bytes` gets chunked uploads;
//! a built image pushes and pulls back the same; the Docker SDK for Python
//! logs in, pushes and inspects the distribution.

use std::process::Command;

use k8s_cri::v1::AuthConfig;

use crate::support::cri;
use crate::support::docker::{DockerEnv, Run};
use crate::support::registry::TestRegistry;

/// The digest from the CLI's `t: digest: sha256:… size: N` line.
fn pushed_digest(r: &Run) -> String {
    r.stdout
        .lines()
        .find_map(|l| l.split_once(": digest: ").map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest line in the push output: {r:?}"))
        .to_string()
}

fn repo_digests(e: &DockerEnv, image: &str) -> String {
    e.docker(&["image", "inspect", "-f", "{{json .RepoDigests}}", image])
        .ok()
        .stdout
}

#[tokio::test]
async fn push_pull_back_with_docker_and_cri_and_push_again() {
    // The push target: a second registry whose blobs go up in 64 KiB chunks.
    let target = TestRegistry::start().await;
    let e = DockerEnv::new(&format!(
        "  \"{}\": {{push_chunk_bytes: 65536}}\ndocker:\n  search_index: http://127.0.0.1:9\n",
        target.addr()
    ))
    .await;
    let name = target.image("x/y:t");
    e.docker(&["tag", &e.busybox, &name]).ok();
    let first = e.docker(&["push", &name]).ok();
    println!("docker push:\n{}", first.stdout);
    assert!(first.stdout.contains("Pushed"), "{first:?}");
    assert!(
        first.stdout.contains(&format!(
            "The push refers to repository [{}]",
            target.image("x/y")
        )),
        "{first:?}"
    );
    let digest = pushed_digest(&first);
    // busybox's layer is bigger than a chunk: it went up in PATCHes.
    let patches = target.count_ok("PATCH", "/v2/x/y/blobs/uploads/").await;
    assert!(patches >= 2, "chunked upload expected: {patches} PATCHes");
    assert!(
        repo_digests(&e, &name).contains(&format!("{}@{digest}", target.image("x/y"))),
        "the push records the repo digest"
    );

    // Again: everything is there.
    let again = e.docker(&["push", &name]).ok();
    assert!(again.stdout.contains("Layer already exists"), "{again:?}");
    assert!(!again.stdout.contains("Pushed"), "{again:?}");
    assert_eq!(pushed_digest(&again), digest);

    // Another repository of busybox's own registry: the layer is mounted.
    let sibling = e.reg.image("x/sibling:t");
    e.docker(&["tag", &e.busybox, &sibling]).ok();
    let mounted = e.docker(&["push", &sibling]).ok();
    println!("docker push (mount):\n{}", mounted.stdout);
    assert!(
        mounted.stdout.contains("Mounted from test/busybox"),
        "{mounted:?}"
    );

    // Gone locally, then back with docker: the same manifest.
    e.docker(&["rmi", &name, &sibling, &e.busybox]).ok();
    assert_ne!(e.docker(&["image", "inspect", &name]).code, 0);
    let pulled = e.docker(&["pull", &name]).ok();
    assert!(pulled.stdout.contains(&digest), "{pulled:?}");
    assert!(repo_digests(&e, &name).contains(&digest));
    let ran = e
        .docker(&["run", "--rm", &name, "echo", "pushed-and-back"])
        .ok();
    assert_eq!(ran.out(), "pushed-and-back");

    // And with CRI PullImage, as crictl does.
    e.docker(&["rmi", &name]).ok();
    let mut images = e.d.image_client().await;
    cri::pull_ok(&mut images, &name).await;
    let st = cri::status(&mut images, &name).await.expect("pulled image");
    assert!(
        st.repo_digests
            .iter()
            .any(|d| d == &format!("{}@{digest}", target.image("x/y"))),
        "{:?}",
        st.repo_digests
    );

    // Search through the catalog (distribution has no /v1/search).
    let found = e.docker(&["search", &target.image("x")]).ok();
    assert!(found.stdout.contains(&target.image("x/y")), "{found:?}");
    let none = e.docker(&["search", &target.image("nothing-like-it")]).ok();
    assert!(!none.stdout.contains("x/y"), "{none:?}");
    // A plain term goes to the configured index, which is not there.
    let failed = e.docker(&["search", "busybox"]);
    assert_ne!(failed.code, 0, "{failed:?}");
    assert!(failed.stderr.contains("failed to search"), "{failed:?}");

    // Unknown local image: Docker's message.
    let missing = e.docker(&["push", &target.image("x/none:t")]);
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("An image does not exist locally"),
        "{missing:?}"
    );
}

#[tokio::test]
async fn push_to_an_htpasswd_registry_needs_login() {
    let auth = TestRegistry::start_with_htpasswd("pusher", "s3cret").await;
    let e = DockerEnv::new("").await;
    let name = auth.image("x/y:t");
    e.docker(&["tag", &e.busybox, &name]).ok();
    let refused = e.docker(&["push", &name]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        format!("{}{}", refused.stdout, refused.stderr).contains("unauthorized"),
        "{refused:?}"
    );

    let wrong = e.docker(&["login", "-u", "pusher", "-p", "nope", auth.addr()]);
    assert_ne!(wrong.code, 0, "{wrong:?}");
    assert!(wrong.stderr.contains("401"), "{wrong:?}");
    let login = e
        .docker(&["login", "-u", "pusher", "-p", "s3cret", auth.addr()])
        .ok();
    assert!(login.stdout.contains("Login Succeeded"), "{login:?}");
    let config = std::fs::read_to_string(e.cli_config.path().join("config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&config).unwrap();
    {
        use base64::Engine as _;
        let stored = v["auths"][auth.addr()]["auth"].as_str().unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(stored)
            .unwrap_or_default();
        assert_eq!(decoded, b"pusher:s3cret", "{config}");
    }

    let pushed = e.docker(&["push", &name]).ok();
    let digest = pushed_digest(&pushed);
    let found = e.docker(&["search", &auth.image("x")]).ok();
    assert!(found.stdout.contains(&auth.image("x/y")), "{found:?}");

    e.docker(&["rmi", &name]).ok();
    let pulled = e.docker(&["pull", &name]).ok();
    assert!(pulled.stdout.contains(&digest), "{pulled:?}");
    e.docker(&["rmi", &name]).ok();

    let mut images = e.d.image_client().await;
    let creds = AuthConfig {
        username: "pusher".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    cri::pull_with_auth(&mut images, &name, Some(creds))
        .await
        .expect("CRI pull with credentials");
    let st = cri::status(&mut images, &name).await.expect("pulled image");
    assert!(
        st.repo_digests.iter().any(|d| d.ends_with(&digest)),
        "{:?}",
        st.repo_digests
    );
}

#[tokio::test]
async fn a_built_image_pushes_and_pulls_back_the_same() {
    let e = DockerEnv::new("").await;
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN echo made-by-berth > /made\nCMD [\"cat\", \"/made\"]\n",
            e.busybox
        ),
    )
    .unwrap();
    let name = e.reg.image("built/app:1");
    let mut build = e.command(&["build", "-t", &name, ctx.path().to_str().unwrap()]);
    build.env("DOCKER_BUILDKIT", "0");
    crate::support::docker::run(build).ok();
    let pushed = e.docker(&["push", &name]).ok();
    assert!(pushed.stdout.contains("Pushed"), "{pushed:?}");
    let digest = pushed_digest(&pushed);
    e.docker(&["rmi", &name]).ok();
    let pulled = e.docker(&["pull", &name]).ok();
    assert!(pulled.stdout.contains(&digest), "{pulled:?}");
    let ran = e.docker(&["run", "--rm", &name]).ok();
    assert_eq!(ran.out(), "made-by-berth");
}

#[tokio::test]
async fn docker_sdk_for_python_logs_in_pushes_and_inspects_the_distribution() {
    let auth = TestRegistry::start_with_htpasswd("sdk", "pw").await;
    let e = DockerEnv::new("").await;
    let repo = auth.image("sdk/busybox");
    e.docker(&["tag", &e.busybox, &format!("{repo}:v2")]).ok();
    let script = r#"
import sys, json, docker
c = docker.DockerClient(base_url=sys.argv[1])
registry, repo = sys.argv[2], sys.argv[3]
try:
    c.login(username="sdk", password="wrong", registry=registry)
    print("login-wrong ok")
except docker.errors.APIError as err:
    print("login-wrong", err.status_code)
r = c.login(username="sdk", password="pw", registry=registry)
print("login", r["Status"])
out = c.images.push(repo, tag="v2")
lines = [json.loads(l) for l in out.splitlines() if l.strip()]
aux = [l["aux"] for l in lines if "aux" in l]
print("errors", [l["error"] for l in lines if "error" in l])
print("aux", aux[0]["Tag"], aux[0]["Digest"])
d = c.api.inspect_distribution(repo + ":v2")
print("distribution", d["Descriptor"]["digest"], d["Descriptor"]["mediaType"])
print("platforms", [p["os"] + "/" + p["architecture"] for p in d["Platforms"]])
"#;
    let out = Command::new(crate::support::python())
        .env("DOCKER_CONFIG", e.cli_config.path())
        .arg("-c")
        .arg(script)
        .arg(e.host())
        .arg(auth.addr())
        .arg(&repo)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "login-wrong 401", "{stdout}");
    assert_eq!(lines[1], "login Login Succeeded", "{stdout}");
    assert_eq!(lines[2], "errors []", "{stdout}");
    let aux_digest = lines[3]
        .strip_prefix("aux v2 ")
        .unwrap_or_else(|| panic!("{stdout}"));
    let dist: Vec<&str> = lines[4].split(' ').collect();
    assert_eq!(dist[0], "distribution", "{stdout}");
    assert_eq!(dist[1], aux_digest, "{stdout}");
    assert!(dist[2].contains("manifest"), "{stdout}");
    assert!(lines[5].contains("linux/"), "{stdout}");
}
