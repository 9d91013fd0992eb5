//! `docker commit` benchmark: a container that wrote 50 MB (pseudo-random
//! text, so gzip has work to do: five 10 MB files and a thousand small
//! ones), committed with the real docker CLI against berthd (a layer tar
//! gzip-compressed with digests and diff id, and the snapshot copied from
//! the upper dir), next to `tar -czf` of the same upper dir (GNU tar and
//! gzip, the lower bound of any layer writer). Median and p90.
//!
//! `cargo bench --bench commit` runs 5 of each after a warm-up; under
//! `cargo test` it checks the plumbing with one of each and 5 MB written.

#[path = "../support/mod.rs"]
mod support;

use std::process::Command;

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
    let (n, mb) = if full { (5, 10) } else { (1, 1) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let e = rt.block_on(DockerEnv::new(""));
    // Five files of `mb` MB of random letters and digits (gzip saves about
    // a quarter), and 1000 files of 1 KiB.
    let script = format!(
        "for i in 1 2 3 4 5; do tr -dc 'a-zA-Z0-9' < /dev/urandom | head -c {} > /data$i; done; \
         mkdir /small; i=0; while [ $i -lt 1000 ]; do head -c 1024 /data1 > /small/$i; i=$((i+1)); done",
        mb * 1_000_000
    );
    run({
        let mut c = e.command(&["run", "--name", "wrote", &e.busybox, "sh", "-c", &script]);
        c.env("DOCKER_CLI_HINTS", "false");
        c
    })
    .ok();
    let id = e
        .docker(&["inspect", "-f", "{{.Id}}", "wrote"])
        .ok()
        .out()
        .to_string();
    let upper = e.d.root().join("containers").join(&id).join("upper");
    assert!(upper.join("data1").is_file(), "{}", upper.display());
    let scratch = tempfile::tempdir().expect("scratch");
    let out = scratch.path().join("upper.tar.gz");
    let tar_czf = || {
        let t = Instant::now();
        let s = Command::new("tar")
            .arg("-czf")
            .arg(&out)
            .arg("-C")
            .arg(&upper)
            .arg(".")
            .status()
            .expect("tar");
        assert!(s.success());
        t.elapsed()
    };
    let commit = |i: usize| {
        let t = Instant::now();
        e.docker(&["commit", "wrote", &format!("bench:commit{i}")])
            .ok();
        t.elapsed()
    };
    // Warm-up: the page cache holds the upper dir for both.
    commit(0);
    // The committed layer is the largest blob (busybox's is ~1 MB).
    let layer_size = std::fs::read_dir(e.d.root().join("blobs/sha256"))
        .expect("blobs")
        .flatten()
        .filter_map(|b| b.metadata().ok().map(|m| m.len()))
        .max()
        .unwrap_or(0);
    e.docker(&["rmi", "bench:commit0"]).ok();
    tar_czf();
    let mut commits = Vec::new();
    let mut tars = Vec::new();
    for i in 1..=n {
        commits.push(commit(i));
        // Each commit made a new image; drop it so the next one works as hard.
        e.docker(&["rmi", &format!("bench:commit{i}")]).ok();
        tars.push(tar_czf());
    }
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!(
        "{} MB written in the container; the committed layer is {:.1} MB, tar -czf gives {:.1} MB",
        5 * mb + 1,
        layer_size as f64 / 1e6,
        size as f64 / 1e6
    );
    report("docker commit (layer tar.gz + snapshot)", &mut commits);
    report("tar -czf of the same upper dir", &mut tars);
    e.docker(&["rm", "wrote"]).ok();
    drop(e);
}
