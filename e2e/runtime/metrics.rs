//! `/metrics` against a daemon running real pods: the runtime families count
//! what the CRI API reports, requests are counted by method and code, and
//! promtool (Debian's `prometheus` package) finds nothing wrong.

use super::Env;
use crate::support::pods;

/// The metrics address the daemon logged (`metrics.address` is port 0 in tests).
pub(super) fn metrics_addr(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("serving metrics"))
        .unwrap_or_else(|| panic!("no 'serving metrics' line in the daemon log:\n{log}"));
    let at = line.find("address=").expect("address field") + "address=".len();
    line[at..].split_whitespace().next().unwrap().to_string()
}

pub(super) async fn scrape(addr: &str) -> String {
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics");
    assert!(resp.status().is_success(), "{}", resp.status());
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    resp.text().await.unwrap()
}

/// The value of the sample whose name-and-labels part equals `series`.
pub(super) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn runtime_metrics_follow_pods_and_containers() {
    let mut env = Env::new().await;
    let addr = metrics_addr(&super::strip_ansi(&env.d.log()));

    let pod_cfg = env.pod_config("metrics");
    let pod = env.pod(&pod_cfg).await;
    let (long, _) = env.container("long", "sleep 1000");
    let (short, _) = env.container("short", "exit 0");
    let long_id = env.run(&pod, &long, &pod_cfg).await;
    let short_id = env.run(&pod, &short, &pod_cfg).await;
    pods::wait_exited(&mut env.rt, &short_id).await;

    let text = scrape(&addr).await;
    assert_eq!(
        sample(&text, "berth_pods{state=\"ready\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "berth_containers{state=\"running\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "berth_containers{state=\"exited\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "berth_monitor_processes"),
        Some(1.0),
        "only the running container's monitor lives"
    );
    assert_eq!(
        sample(&text, "berth_container_start_duration_seconds_count"),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "berth_requests_total{api=\"cri\",code=\"OK\",method=\"RunPodSandbox\"}"
        ),
        Some(1.0),
        "{text}"
    );
    let mem = text
        .lines()
        .find(|l| {
            l.starts_with("berth_container_memory_working_set_bytes{") && l.contains(&long_id)
        })
        .unwrap_or_else(|| panic!("no memory sample for the running container:\n{text}"));
    assert!(
        mem.contains("name=\"long\"") && mem.contains("pod=\"metrics\""),
        "{mem}"
    );
    let bytes: f64 = mem.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(bytes > 0.0, "{mem}");
    assert_eq!(
        sample(&text, "berth_image_pulls_total{result=\"success\"}"),
        Some(1.0)
    );

    // A failing call is counted under its gRPC code.
    let err = pods::start(&mut env.rt, &short_id).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let text = scrape(&addr).await;
    assert_eq!(
        sample(&text, "berth_requests_total{api=\"cri\",code=\"FailedPrecondition\",method=\"StartContainer\"}"),
        Some(1.0),
        "{text}"
    );

    if std::path::Path::new("/usr/bin/promtool").exists() {
        let mut child = std::process::Command::new("/usr/bin/promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have promtool (e2e/test.sh installs prometheus)"
        );
        eprintln!("promtool not installed; skipping its check");
    }

    env.remove_all_pods().await;
    let text = scrape(&addr).await;
    assert_eq!(sample(&text, "berth_pods{state=\"ready\"}"), Some(0.0));
    assert_eq!(sample(&text, "berth_monitor_processes"), Some(0.0));
}
