//! Pull benchmark: berthd's PullImage against a baseline of `skopeo copy`
//! plus `tar -xzf` of every layer, for the same ~50 MB multi-layer gzip
//! image on the same loopback registry. Prints medians and their ratio.
//!
//! `cargo bench --bench pull` runs the full measurement. Under `cargo test`
//! (no `--bench` argument) it only checks the plumbing once with the small
//! busybox image, so the test suite stays quick.

#[path = "../support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::catalog;
use support::cri;
use support::daemon::Berthd;
use support::registry::TestRegistry;

const ITERATIONS: usize = 5;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(run(full));
}

async fn run(full: bool) {
    let built_at = Instant::now();
    let (image, iterations) = if full {
        (catalog::big_image(6), ITERATIONS)
    } else {
        (catalog::busybox(), 1)
    };
    let img = image.build();
    let total: usize = img.layers.iter().map(|l| l.data.len()).sum();
    eprintln!(
        "pull bench: {} layers, {:.1} MB compressed, built in {:?}",
        img.layers.len(),
        total as f64 / 1e6,
        built_at.elapsed()
    );
    let reg = TestRegistry::start().await;
    let name = img.push_tag(&reg, "bench/big", "v1").await;

    let mut berth = Vec::new();
    for i in 0..iterations {
        // A fresh daemon and root each time: nothing is cached.
        let d = Berthd::start(&reg.insecure_yaml()).await;
        let mut c = d.image_client().await;
        let start = Instant::now();
        cri::pull(&mut c, &name)
            .await
            .unwrap_or_else(|err| panic!("berthd pull: {err:?}\n{}", d.log()));
        let took = start.elapsed();
        let st = cri::status(&mut c, &name).await.expect("image pulled");
        assert_eq!(st.id, img.id(), "pulled the benchmark image");
        eprintln!("  berthd pull #{i}: {took:?}");
        berth.push(took);
    }

    let mut baseline = Vec::new();
    for i in 0..iterations {
        let dir = support::short_tempdir("bench");
        let start = Instant::now();
        skopeo_and_untar(&name, dir.path());
        let took = start.elapsed();
        eprintln!("  skopeo copy + tar -xzf #{i}: {took:?}");
        baseline.push(took);
    }

    let b = median(&mut berth);
    let s = median(&mut baseline);
    println!("berthd PullImage median:        {b:?}");
    println!("skopeo copy + tar -xzf median:  {s:?}");
    println!(
        "ratio berth/baseline:           {:.2}",
        b.as_secs_f64() / s.as_secs_f64()
    );
}

/// The baseline: fetch with skopeo into a `dir:` layout, then unpack each
/// layer in order into one rootfs with tar.
fn skopeo_and_untar(name: &str, dir: &Path) {
    let layout = dir.join("img");
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{name}"))
        .arg(format!("dir:{}", layout.display()))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    let rootfs = dir.join("rootfs");
    std::fs::create_dir(&rootfs).expect("rootfs dir");
    for layer in manifest["layers"].as_array().expect("layers") {
        let digest = layer["digest"].as_str().expect("layer digest");
        let blob = layout.join(support::hex_of(digest));
        let status = Command::new("tar")
            .arg("-xzf")
            .arg(&blob)
            .arg("-C")
            .arg(&rootfs)
            .status()
            .expect("run tar");
        assert!(status.success(), "tar -xzf {}", blob.display());
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
