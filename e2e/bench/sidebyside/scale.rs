//! Scale: many pods with one container each, started a few at a time on
//! berth alone (issue 14's 250 pods, 10 at a time): the time from
//! RunPodSandbox to a started container per pod (p50/p90/p99/max), and
//! berthd's RSS while they run and once all are up. The pods are removed
//! afterwards (also timed, all at once at the same parallelism).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::report::percentile_of as percentile;
use super::{create, pod_config, remove_pod, start, stop_pod, BenchResult, Side};

/// Pods and parallelism of the full run.
pub const PODS: usize = 250;
pub const PARALLEL: usize = 10;

pub async fn scale(s: &mut Side, image: &str, n: usize, parallel: usize) -> BenchResult<String> {
    let cfgs = (0..n)
        .map(|_| pod_config(s))
        .collect::<BenchResult<Vec<_>>>()?;
    let side: &Side = s;
    let pid = side.daemon.pid();
    let rss_before = crate::support::host::rss_kib(pid).unwrap_or(0);
    let mut rss_max = rss_before;
    let t0 = Instant::now();
    let mut starts = Vec::with_capacity(n);
    let mut pods = Vec::with_capacity(n);
    let mut up = futures::stream::iter(cfgs.into_iter().map(|cfg| async move {
        let t = Instant::now();
        let req = k8s_cri::v1::RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        };
        let mut rc = side.rc.clone();
        let pod = super::call("RunPodSandbox", rc.run_pod_sandbox(req))
            .await?
            .pod_sandbox_id;
        let c = create(side, &pod, &cfg, image, "exec sleep 1000").await?;
        start(side, &c).await?;
        Ok::<_, String>((pod, t.elapsed()))
    }))
    .buffer_unordered(parallel);
    while let Some(r) = up.next().await {
        let (pod, took) = r?;
        pods.push(pod);
        starts.push(took);
        rss_max = rss_max.max(crate::support::host::rss_kib(pid).unwrap_or(0));
    }
    drop(up);
    let all_up = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_up = crate::support::host::rss_kib(pid).unwrap_or(0);
    let t1 = Instant::now();
    let mut down = futures::stream::iter(pods.iter().map(|p| async move {
        stop_pod(side, p).await?;
        remove_pod(side, p).await
    }))
    .buffer_unordered(parallel);
    while let Some(r) = down.next().await {
        r?;
    }
    drop(down);
    let all_down = t1.elapsed();
    let rss_after = crate::support::host::rss_kib(pid).unwrap_or(0);

    starts.sort();
    let ms = |d: Option<Duration>| {
        d.map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
            .unwrap_or_else(|| "-".into())
    };
    let mib = |k: u64| k as f64 / 1024.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nscale: {n} pods with one container each, {parallel} at a time (berth)\n\
         | RunPodSandbox → started container | p50 | p90 | p99 | max |\n|---|---|---|---|---|\n\
         | ms | {} | {} | {} | {} |",
        ms(percentile(&starts, 50)),
        ms(percentile(&starts, 90)),
        ms(percentile(&starts, 99)),
        ms(starts.last().copied()),
    );
    let _ = writeln!(
        out,
        "all {n} up in {:.1} s, all stopped and removed in {:.1} s\n\
         berthd RSS: {:.1} MiB before, {:.1} MiB max while starting, {:.1} MiB with {n} pods up, {:.1} MiB after removal",
        all_up.as_secs_f64(),
        all_down.as_secs_f64(),
        mib(rss_before),
        mib(rss_max),
        mib(rss_up),
        mib(rss_after),
    );
    Ok(out)
}
