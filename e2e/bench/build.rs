//! `docker build` benchmark, the real docker CLI with the classic builder
//! (`DOCKER_BUILDKIT=0`) against berthd: a 5-step Dockerfile (FROM, COPY of
//! a 1 MiB file, RUN writing 4 MiB, ENV, CMD), built cold (`--no-cache`:
//! every step runs, the RUN in a container, its layer committed) and cached
//! (an unchanged rebuild: every step from the build cache). Median and p90
//! of the CLI's wall time.
//!
//! `cargo bench --bench build` runs 10 of each after a warm-up; under
//! `cargo test` it checks the plumbing with one of each.

#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::stats::{ms, percentile};

use support::docker::{run, DockerEnv};

fn report(what: &str, v: &mut [Duration]) {
    v.sort();
    println!(
        "{what}: median {:.1} ms, p90 {:.1} ms (n={})",
        ms(percentile(v, 0.5)),
        ms(percentile(v, 0.9)),
        v.len()
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 10 } else { 1 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let e = rt.block_on(DockerEnv::new(""));
    let ctx = tempfile::tempdir().expect("context dir");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}\nCOPY blob /blob\nRUN dd if=/dev/zero of=/run.bin bs=1024 count=4096 2>/dev/null\nENV BENCH=1\nCMD [\"true\"]\n",
            e.busybox
        ),
    )
    .expect("Dockerfile");
    let blob: Vec<u8> = (0..1u32 << 20)
        .map(|i| i.wrapping_mul(2654435761) as u8)
        .collect();
    std::fs::write(ctx.path().join("blob"), blob).expect("blob");
    let dir = ctx.path().to_str().expect("utf-8 path").to_string();
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "-t", "bench:build"];
        args.extend_from_slice(extra);
        args.push(&dir);
        let mut c = e.command(&args);
        c.env("DOCKER_BUILDKIT", "0");
        let t = Instant::now();
        let r = run(c).ok();
        (t.elapsed(), r.stdout)
    };
    // Warm-up (the base image's snapshots, the CLI's caches).
    build(&["--no-cache"]);
    let mut cold = Vec::new();
    for _ in 0..n {
        let (t, out) = build(&["--no-cache"]);
        assert!(!out.contains("Using cache"), "{out}");
        cold.push(t);
    }
    let mut cached = Vec::new();
    for _ in 0..n {
        let (t, out) = build(&[]);
        assert_eq!(out.matches(" ---> Using cache").count(), 4, "{out}");
        cached.push(t);
    }
    report("docker build, 5 steps, cold (--no-cache)", &mut cold);
    report("docker build, 5 steps, cached", &mut cached);
    assert_eq!(
        e.docker(&["ps", "-aq"]).ok().out(),
        "",
        "no build container left"
    );
    drop(e);
}
