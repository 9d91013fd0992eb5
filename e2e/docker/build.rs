//! `docker build` with Docker's classic builder (`DOCKER_BUILDKIT=0`) and
//! the Docker SDK for Python's `images.build`: a multi-stage Dockerfile
//! from a context with a `.dockerignore`, the image run by `docker run`
//! and by a CRI pod, an unchanged rebuild served from the cache step by
//! step, a failing RUN with its exit code, and `docker builder prune`.

use std::path::Path;
use std::process::Command;

use crate::support::docker::{run, DockerEnv, Run};
use crate::support::pods;

/// The CLI with the classic builder.
fn build_cmd(e: &DockerEnv, args: &[&str]) -> Command {
    let mut c = e.command(args);
    c.env("DOCKER_BUILDKIT", "0");
    c
}

fn build(e: &DockerEnv, args: &[&str]) -> Run {
    run(build_cmd(e, args))
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// The multi-stage build's RUN printed its line (not only its step).
fn ran(out: &str) -> bool {
    out.lines().any(|l| l == "built-in-run")
}

const MULTI_STAGE: &str = r#"# escape=\
ARG BASE
FROM ${BASE} AS builder
ARG GREETING=hello
ENV OUT=/out
WORKDIR /work
COPY src/ ./src/
RUN mkdir -p $OUT && cat src/*.txt > $OUT/all.txt \
    && echo "$GREETING from $(pwd)" > $OUT/greeting \
    && ls -a src > $OUT/listing && echo built-in-run

FROM ${BASE}
LABEL org.example.stage=final
COPY --from=builder /out /app/
COPY --chown=1000:1000 data.txt /app/data.txt
USER 1000
WORKDIR /app
HEALTHCHECK --interval=30s --retries=2 CMD true
CMD ["cat", "/app/greeting"]
"#;

fn multi_stage_context() -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    let d = ctx.path();
    write(d, "Dockerfile", MULTI_STAGE);
    write(d, ".dockerignore", "# not sent\n*.log\nsrc/secret*\n");
    write(d, "src/a.txt", "A\n");
    write(d, "src/b.txt", "B\n");
    write(d, "src/secret.txt", "do not copy\n");
    write(d, "data.txt", "data\n");
    write(d, "junk.log", "junk\n");
    ctx
}

#[tokio::test]
async fn multi_stage_build_runs_and_rebuilds_from_cache() {
    let e = DockerEnv::new("").await;
    let ctx = multi_stage_context();
    let dir = ctx.path().to_str().unwrap();
    let base = format!("BASE={}", e.busybox);
    let args = [
        "build",
        "--build-arg",
        &base,
        "--build-arg",
        "GREETING=hi",
        "-t",
        "built:v1",
        "-t",
        "built:other",
        dir,
    ];
    let first = build(&e, &args).ok();
    let out = &first.stdout;
    for want in [
        "Step 1/14 : FROM ${BASE} AS builder",
        "Step 6/14 : RUN mkdir -p $OUT",
        "Step 14/14 : CMD [\"cat\", \"/app/greeting\"]",
        "Successfully built ",
        "Successfully tagged built:v1",
        "Successfully tagged built:other",
    ] {
        assert!(out.contains(want), "missing {want:?} in {first:?}");
    }
    assert!(
        !out.contains("Using cache"),
        "a first build uses no cache: {out}"
    );
    assert!(ran(out), "the RUN's output is streamed: {out}");

    // The image runs as built.
    let r = |cmd: &[&str]| {
        let mut a = vec!["run", "--rm", "built:v1"];
        a.extend_from_slice(cmd);
        e.docker(&a).ok().out().to_string()
    };
    assert_eq!(r(&[]), "hi from /work");
    assert_eq!(r(&["cat", "/app/all.txt"]), "A\nB");
    assert_eq!(
        r(&["cat", "/app/listing"]),
        ".\n..\na.txt\nb.txt",
        ".dockerignore keeps src/secret.txt out"
    );
    assert_eq!(r(&["id", "-u"]), "1000");
    assert_eq!(r(&["pwd"]), "/app");
    assert_eq!(r(&["stat", "-c", "%u:%g", "/app/data.txt"]), "1000:1000");
    assert_eq!(r(&["stat", "-c", "%u", "/app/all.txt"]), "0");
    let inspect = e
        .docker(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.User}} {{.Config.WorkingDir}} {{.Config.Healthcheck.Interval}} {{.Config.Healthcheck.Retries}} {{index .Config.Labels \"org.example.stage\"}} {{len .RootFS.Layers}}",
            "built:v1",
        ])
        .ok();
    // busybox has one layer; the final stage adds two COPY layers and WORKDIR
    // /app exists by then (made by the COPY), so it adds none.
    assert_eq!(inspect.out(), "1000 /app 30s 2 final 3");
    let id = e
        .docker(&["image", "inspect", "--format", "{{.Id}}", "built:v1"])
        .ok()
        .out()
        .to_string();
    assert!(first
        .stdout
        .contains(&format!("Successfully built {}", &id[7..19])));
    // History: one entry per step, newest first, over busybox's.
    let hist = e
        .docker(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.CreatedBy}}",
            "built:v1",
        ])
        .ok();
    let lines: Vec<&str> = hist.out().lines().collect();
    assert!(
        lines[0].contains(r#"CMD ["cat","/app/greeting"]"#),
        "{hist:?}"
    );
    assert!(lines[5].contains("COPY --from=builder"), "{hist:?}");
    assert!(
        lines[6].contains("LABEL org.example.stage=final"),
        "{hist:?}"
    );
    // Intermediate images are not listed; the build's containers are gone.
    let images = e.docker(&["images", "-q", "--no-trunc"]).ok();
    let ids: std::collections::BTreeSet<&str> = images.out().lines().collect();
    assert_eq!(ids.len(), 2, "busybox and the build: {images:?}");
    assert_eq!(e.docker(&["ps", "-aq"]).ok().out(), "");

    // An unchanged rebuild takes every step from the cache.
    let again = build(&e, &args).ok();
    assert_eq!(
        again.stdout.matches(" ---> Using cache").count(),
        12,
        "all 12 steps after the FROMs: {again:?}"
    );
    assert!(!ran(&again.stdout), "RUN did not run again");
    assert!(again
        .stdout
        .contains(&format!("Successfully built {}", &id[7..19])));
    // A changed source file misses from its COPY on: ARG, ENV, WORKDIR
    // of the first stage and LABEL of the second (right on busybox) hit.
    write(ctx.path(), "src/b.txt", "B2\n");
    let changed = build(&e, &args).ok();
    assert_eq!(
        changed.stdout.matches(" ---> Using cache").count(),
        4,
        "{changed:?}"
    );
    assert!(ran(&changed.stdout));
    assert_eq!(r(&["cat", "/app/all.txt"]), "A\nB2");
    // nocache runs everything again.
    let mut nocache = vec!["build", "--no-cache"];
    nocache.extend_from_slice(&args[1..]);
    let fresh = build(&e, &nocache).ok();
    assert!(!fresh.stdout.contains("Using cache") && ran(&fresh.stdout));

    // CRI sees the image and runs it in a pod.
    let mut images = e.d.image_client().await;
    let listed = images
        .list_images(k8s_cri::v1::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.images.iter().any(|i| i
            .repo_tags
            .iter()
            .any(|t| t == "docker.io/library/built:v1")),
        "{listed:?}"
    );
    let mut rt = e.d.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let pod_cfg = pods::pod_config("built", logs.path());
    let pod = pods::run_pod(&mut rt, &pod_cfg).await;
    let mut c = pods::container_config(
        "built",
        "built:v1",
        "cat /app/greeting /app/data.txt",
        "built",
    );
    c.command.clear();
    c.args = vec![];
    let ctr = pods::run(&mut rt, &pod, &c, &pod_cfg).await;
    let st = pods::wait_exited(&mut rt, &ctr).await;
    assert_eq!(st.exit_code, 0);
    let text = std::fs::read_to_string(logs.path().join("built/0.log")).unwrap();
    let lines: Vec<String> = pods::parse_log(&text).into_iter().map(|l| l.msg).collect();
    assert_eq!(lines, vec!["hi from /work"], "the image's CMD ran");
    pods::stop_pod(&mut rt, &pod).await.unwrap();
    pods::remove_pod(&mut rt, &pod).await.unwrap();

    // docker builder prune empties the cache: the next build runs every step.
    let pruned = e.docker(&["builder", "prune", "-f"]).ok();
    assert!(
        pruned.stdout.contains("Total reclaimed space"),
        "{pruned:?}"
    );
    let after = build(&e, &args).ok();
    assert!(!after.stdout.contains("Using cache"), "{after:?}");
}

#[tokio::test]
async fn failing_run_reports_its_exit_code() {
    let e = DockerEnv::new("").await;
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        &format!(
            "FROM {}\nRUN echo before-fail && exit 3\nRUN echo never\n",
            e.busybox
        ),
    );
    let r = build(&e, &["build", "-t", "broken", ctx.path().to_str().unwrap()]);
    assert_eq!(r.code, 3, "the CLI exits with the RUN's code: {r:?}");
    assert!(r.stdout.contains("before-fail"), "{r:?}");
    assert!(!r.stdout.contains("never"), "{r:?}");
    assert!(
        r.stderr.contains(
            "The command '/bin/sh -c echo before-fail && exit 3' returned a non-zero code: 3"
        ),
        "{r:?}"
    );
    let images = e.docker(&["images", "-q", "broken"]).ok();
    assert_eq!(images.out(), "", "no image is tagged by a failed build");
    // As Docker does (rm without forcerm), the failed step's container stays.
    let left = e.docker(&["ps", "-a", "--format", "{{.Status}}"]).ok();
    assert!(left.out().starts_with("Exited (3)"), "{left:?}");
    // With --force-rm it goes too.
    e.docker(&["container", "prune", "-f"]).ok();
    let r = build(
        &e,
        &[
            "build",
            "--force-rm",
            "-t",
            "broken",
            ctx.path().to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 3);
    assert_eq!(e.docker(&["ps", "-aq"]).ok().out(), "");
    // A Dockerfile that does not parse names its line; a missing one is named.
    write(ctx.path(), "Dockerfile", "FROM busybox\nBOGUS x\n");
    let r = build(&e, &["build", ctx.path().to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("Dockerfile parse error line 2: unknown instruction: BOGUS"),
        "{r:?}"
    );
    let r = build(
        &e,
        &[
            "build",
            "-f",
            "nope/Dockerfile",
            ctx.path().to_str().unwrap(),
        ],
    );
    assert_ne!(r.code, 0);
}

/// The Docker SDK for Python: `images.build(fileobj=…)` with a Dockerfile
/// and with a tar context (`custom_context`).
#[tokio::test]
async fn python_sdk_builds_from_a_file_object() {
    let e = DockerEnv::new("").await;
    let script = format!(
        r#"
import io, tarfile, docker
c = docker.DockerClient(base_url={host:?})
def run(image):
    ctr = c.containers.run(image, detach=True)
    assert ctr.wait()["StatusCode"] == 0
    out = ctr.logs()
    ctr.remove()
    return out
df = b"FROM {base}\nENV WHO=sdk\nRUN echo made-by-$WHO > /made\nCMD cat /made\n"
img, logs = c.images.build(fileobj=io.BytesIO(df), tag="sdk:file", rm=True)
text = "".join(l.get("stream", "") for l in logs)
assert "Step 3/4 : RUN echo made-by-$WHO > /made" in text, text
assert img.tags == ["sdk:file"], img.tags
out = run("sdk:file")
assert out == b"made-by-sdk\n", out

buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as t:
    for name, data in [("Dockerfile", b"FROM {base}\nCOPY hello.txt /hello.txt\nCMD cat /hello.txt\n"), ("hello.txt", b"from a tar\n")]:
        info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
buf.seek(0)
img2, _ = c.images.build(fileobj=buf, custom_context=True, encoding="gzip", tag="sdk:tar")
assert run(img2.id) == b"from a tar\n"
try:
    c.images.build(fileobj=io.BytesIO(b"FROM {base}\nRUN exit 7\n"))
    raise SystemExit("a failing build did not raise")
except docker.errors.BuildError as err:
    assert "returned a non-zero code: 7" in str(err), err
print("sdk-ok")
"#,
        host = e.host(),
        base = e.busybox
    );
    let out = Command::new(crate::support::python())
        .arg("-c")
        .arg(&script)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("sdk-ok"),
        "python: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A gzip tar holding `inner/f.txt` owned by 123:456.
fn archive() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let data = b"from-archive\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o640);
    h.set_uid(123);
    h.set_gid(456);
    h.set_cksum();
    b.append_data(&mut h, "inner/f.txt", &data[..]).unwrap();
    let plain = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    gz.finish().unwrap()
}

#[tokio::test]
async fn instructions_targets_labels_quiet_and_stdin() {
    let e = DockerEnv::new("").await;
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "ARG BASE\nFROM ${BASE} AS base\nONBUILD RUN echo triggered > /onbuild\n\
         FROM base AS child\nSHELL [\"/bin/sh\", \"-e\", \"-c\"]\nADD files.tar.gz /opt/\n\
         ADD plain.txt /opt/plain.txt\nEXPOSE 8080 53/udp\nVOLUME /data\nSTOPSIGNAL SIGINT\n\
         ENTRYPOINT [\"/bin/sh\", \"-c\"]\nCMD [\"cat /onbuild /opt/inner/f.txt\"]\n\
         FROM base AS never\nRUN exit 9\n",
    );
    std::fs::write(ctx.path().join("files.tar.gz"), archive()).unwrap();
    write(ctx.path(), "plain.txt", "plain\n");
    let base = format!("BASE={}", e.busybox);
    let dir = ctx.path().to_str().unwrap();
    let args = [
        "build",
        "-q",
        "--target",
        "child",
        "--label",
        "built.by=e2e",
        "--build-arg",
        &base,
        "--build-arg",
        "UNUSED=1",
        "-t",
        "every:v1",
        dir,
    ];
    let quiet = build(&e, &args).ok();
    let id = quiet.out();
    assert!(
        id.starts_with("sha256:") && id.len() == 71 && !quiet.stdout.contains("Step"),
        "-q prints only the id: {quiet:?}"
    );
    let run_out = e.docker(&["run", "--rm", "every:v1"]).ok();
    assert_eq!(
        run_out.out(),
        "triggered\nfrom-archive",
        "ONBUILD fired, ADD unpacked"
    );
    let owner = e
        .docker(&[
            "run",
            "--rm",
            "--entrypoint",
            "stat",
            "every:v1",
            "-c",
            "%u:%g %a",
            "/opt/inner/f.txt",
            "/opt/plain.txt",
        ])
        .ok();
    assert_eq!(
        owner.out(),
        "123:456 640\n0:0 644",
        "archive owners kept, COPY'd file root's"
    );
    let f = e
        .docker(&[
            "image", "inspect", "--format",
            "{{json .Config.ExposedPorts}} {{json .Config.Volumes}} {{.Config.StopSignal}} {{index .Config.Labels \"built.by\"}} {{json .Config.Entrypoint}} {{json .Config.OnBuild}}",
            "every:v1",
        ])
        .ok();
    assert_eq!(
        f.out(),
        r#"{"53/udp":{},"8080/tcp":{}} {"/data":{}} SIGINT e2e ["/bin/sh","-c"] null"#
    );
    // Not quiet: the cached rebuild, and the unused build argument named.
    let loud: Vec<&str> = args.iter().copied().filter(|a| *a != "-q").collect();
    let again = build(&e, &loud).ok();
    assert!(
        again
            .stdout
            .contains("[Warning] One or more build-args [UNUSED] were not consumed"),
        "{again:?}"
    );
    assert!(
        again.stdout.contains("Step 11/11 : CMD"),
        "the target's steps only: {again:?}"
    );
    assert!(!again.stdout.contains("exit 9"));
    assert!(
        again
            .stdout
            .contains(&format!("Successfully built {}", &id[7..19])),
        "{again:?}"
    );

    // `docker build -` sends the Dockerfile alone as the body.
    let df = format!("FROM {}\nRUN echo from-stdin > /x\nCMD cat /x\n", e.busybox);
    let mut c = build_cmd(&e, &["build", "-t", "stdin:v1", "-"]);
    c.stdin(std::process::Stdio::piped());
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), df.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        e.docker(&["run", "--rm", "stdin:v1"]).ok().out(),
        "from-stdin"
    );
}

/// Debian's docker-compose 1.29 builds a service's `build:` context
/// (through its docker-py, not the CLI).
#[tokio::test]
async fn compose_builds_a_service() {
    let e = DockerEnv::new("").await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "app/Dockerfile",
        &format!(
            "FROM {}\nARG WHO\nCOPY msg /msg\nRUN echo \"$WHO\" >> /msg\nCMD cat /msg\n",
            e.busybox
        ),
    );
    write(dir.path(), "app/msg", "hello\n");
    write(
        dir.path(),
        "docker-compose.yml",
        "version: \"3.7\"\nservices:\n  app:\n    build:\n      context: ./app\n      args:\n        WHO: compose\n    image: composed:v1\n",
    );
    let mut c = Command::new("docker-compose");
    c.args(["-p", "berthbuild", "build"])
        .current_dir(dir.path())
        .env("DOCKER_HOST", e.host())
        .env("DOCKER_CONFIG", e.cli_config.path())
        .env_remove("DOCKER_BUILDKIT")
        .env_remove("COMPOSE_DOCKER_CLI_BUILD");
    let r = run(c);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains("Using cache"), "{r:?}");
    assert!(
        r.stdout.contains("Successfully tagged composed:v1")
            || r.stderr.contains("Successfully tagged composed:v1"),
        "{r:?}"
    );
    assert_eq!(
        e.docker(&["run", "--rm", "composed:v1"]).ok().out(),
        "hello\ncompose"
    );

    // The build cache is on disk: after a daemon restart (and its start-up
    // garbage collection) the same build is served from it.
    let mut e = e;
    e.d.restart().await;
    let ctxdir = dir.path().join("app");
    let again = build(
        &e,
        &[
            "build",
            "--build-arg",
            "WHO=compose",
            "-t",
            "composed:v1",
            ctxdir.to_str().unwrap(),
        ],
    )
    .ok();
    assert_eq!(
        again.stdout.matches(" ---> Using cache").count(),
        4,
        "{again:?}"
    );
}

/// The paths in the last layer of `image`, from `docker save`.
fn last_layer_paths(e: &DockerEnv, image: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("img.tar");
    e.docker(&["save", "-o", out.to_str().unwrap(), image]).ok();
    let mut a = tar::Archive::new(std::fs::File::open(&out).unwrap());
    a.unpack(dir.path().join("x")).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("x/manifest.json")).unwrap())
            .unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    let last = dir
        .path()
        .join("x")
        .join(layers.last().unwrap().as_str().unwrap());
    let f = std::fs::File::open(last).unwrap();
    let mut gz = flate2::read::MultiGzDecoder::new(f);
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut gz, &mut plain).unwrap();
    let mut t = tar::Archive::new(&plain[..]);
    t.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

/// A RUN's layer holds what the command changed — files, deletions as
/// whiteouts, a replaced directory as an opaque one — and not the mount
/// points the runtime made for the build container.
#[tokio::test]
async fn run_layers_hold_only_the_changes() {
    let e = DockerEnv::new("").await;
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        &format!(
            "FROM {}\nRUN echo hi > /hi && rm /etc/group && mkdir -p /srv/old && rm -rf /srv && mkdir /srv && echo new > /srv/only\n",
            e.busybox
        ),
    );
    build(
        &e,
        &["build", "-t", "changes:v1", ctx.path().to_str().unwrap()],
    )
    .ok();
    let mut paths = last_layer_paths(&e, "changes:v1");
    paths.sort();
    let ls = e
        .docker(&[
            "run",
            "--rm",
            "changes:v1",
            "sh",
            "-c",
            "cat /hi; ls /srv; test -e /etc/group || echo no-group",
        ])
        .ok();
    assert_eq!(ls.out(), "hi\nonly\nno-group");
    for p in ["hi", "etc/.wh.group", "srv/only"] {
        assert!(paths.iter().any(|x| x == p), "{p} missing from {paths:?}");
    }
    for p in &paths {
        assert!(
            ![
                "etc/hosts",
                "etc/resolv.conf",
                "etc/hostname",
                "proc/",
                "sys/",
                "dev/"
            ]
            .contains(&p.as_str()),
            "a runtime mount point was committed: {paths:?}"
        );
    }
}
