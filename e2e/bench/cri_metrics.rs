//! CRI metrics benchmark: ListPodSandboxMetrics (and, beside it,
//! ListPodSandboxStats, which reads the same sample) with 50 pods of one
//! running container each: time per call, median and p90 of 30 calls after
//! 3 warm-up calls.
//!
//! `cargo bench --bench cri_metrics` runs the full measurement. Under `cargo
//! test` (no `--bench` argument) it checks the plumbing with 2 pods and 2
//! calls. Every pod it made is removed before the daemon stops.

#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::stats::percentile;

use k8s_cri::v1::{ListPodSandboxMetricsRequest, ListPodSandboxStatsRequest};
use support::{catalog, cri, daemon::Berthd, pods, registry::TestRegistry, short_tempdir};

fn report(what: &str, v: &mut [Duration]) {
    v.sort();
    println!(
        "{what}: median {:.2} ms, p90 {:.2} ms (n={})",
        percentile(v, 0.5).as_secs_f64() * 1e3,
        percentile(v, 0.9).as_secs_f64() * 1e3,
        v.len()
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (n_pods, calls) = if full { (50, 30) } else { (2, 2) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let reg = TestRegistry::start().await;
        let d = Berthd::start(&reg.insecure_yaml()).await;
        let mut images = d.image_client().await;
        let mut c = d.runtime_client().await;
        let busybox = catalog::busybox()
            .label("berth.e2e", "bench-metrics")
            .build()
            .push_tag(&reg, "test/busybox", "v1")
            .await;
        cri::pull_ok(&mut images, &busybox).await;
        let logs = short_tempdir("bm");
        let mut ids = Vec::new();
        for i in 0..n_pods {
            let name = format!("metrics-{i}");
            let pod_cfg = pods::pod_config(&name, logs.path());
            let pod = pods::run_pod(&mut c, &pod_cfg).await;
            let cfg =
                pods::container_config("app", &busybox, "exec sleep 1000", &pods::unique("bm"));
            pods::run(&mut c, &pod, &cfg, &pod_cfg).await;
            ids.push(pod);
        }
        let mut metrics = Vec::new();
        let mut stats = Vec::new();
        for i in 0..calls + if full { 3 } else { 0 } {
            let t = Instant::now();
            let m = c
                .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
                .await
                .expect("ListPodSandboxMetrics")
                .into_inner();
            let took = t.elapsed();
            assert_eq!(m.pod_metrics.len(), n_pods);
            let t = Instant::now();
            let s = c
                .list_pod_sandbox_stats(ListPodSandboxStatsRequest { filter: None })
                .await
                .expect("ListPodSandboxStats")
                .into_inner();
            let took_stats = t.elapsed();
            assert_eq!(s.stats.len(), n_pods);
            if !full || i >= 3 {
                metrics.push(took);
                stats.push(took_stats);
            }
        }
        report(
            &format!("ListPodSandboxMetrics, {n_pods} pods"),
            &mut metrics,
        );
        report(&format!("ListPodSandboxStats, {n_pods} pods"), &mut stats);
        for id in ids {
            pods::remove_pod(&mut c, &id)
                .await
                .expect("RemovePodSandbox");
        }
        assert!(pods::list_pods(&mut c).await.is_empty());
    });
}
