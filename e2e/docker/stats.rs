//! `docker stats` and `docker top` on real containers.

use futures::StreamExt;

use crate::support::docker::DockerEnv;

#[tokio::test]
async fn stats_show_memory_and_cpu() {
    let e = DockerEnv::new("").await;
    e.docker(&["run", "-d", "--name", "idle", &e.busybox, "sleep", "300"])
        .ok();
    e.docker(&[
        "run",
        "-d",
        "--name",
        "busy",
        &e.busybox,
        "sh",
        "-c",
        "while true; do :; done",
    ])
    .ok();

    let s = e
        .docker(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.MemUsage}}",
            "idle",
        ])
        .ok();
    let (name, mem) = s.out().split_once(' ').expect("name and memory");
    assert_eq!(name, "idle");
    let used = mem.split(" / ").next().unwrap();
    assert!(
        !used.starts_with("0B") && !used.is_empty(),
        "memory in use: {mem}"
    );

    let d = e.bollard();
    let one_shot = bollard::query_parameters::StatsOptions {
        stream: false,
        one_shot: true,
    };
    let st = d
        .stats("busy", Some(one_shot.clone()))
        .next()
        .await
        .expect("one sample")
        .expect("stats");
    assert_eq!(st.name.as_deref(), Some("/busy"));
    let cpu = st.cpu_stats.expect("cpu_stats");
    let total = cpu.cpu_usage.and_then(|u| u.total_usage).unwrap_or(0);
    assert!(total > 0, "a busy loop uses CPU");
    assert!(cpu.system_cpu_usage.unwrap_or(0) > 0);
    assert!(cpu.online_cpus.unwrap_or(0) > 0);
    let mem = st.memory_stats.expect("memory_stats");
    assert!(mem.usage.unwrap_or(0) > 0);
    assert!(mem.limit.unwrap_or(0) > 0);

    // Without one-shot, two samples: the previous one fills precpu_stats.
    let two = bollard::query_parameters::StatsOptions {
        stream: false,
        one_shot: false,
    };
    let st = d.stats("busy", Some(two)).next().await.unwrap().unwrap();
    let pre = st
        .precpu_stats
        .and_then(|p| p.cpu_usage)
        .and_then(|u| u.total_usage)
        .unwrap_or(0);
    let now = st
        .cpu_stats
        .and_then(|p| p.cpu_usage)
        .and_then(|u| u.total_usage)
        .unwrap_or(0);
    assert!(pre > 0 && now > pre, "pre {pre} now {now}");

    // A stream keeps sending until the client leaves.
    let streamed: Vec<_> = d
        .stats("idle", None::<bollard::query_parameters::StatsOptions>)
        .take(2)
        .collect()
        .await;
    assert_eq!(streamed.len(), 2);
    assert!(streamed.iter().all(|s| s.is_ok()), "{streamed:?}");

    // A stopped container reports zeros under its name.
    e.docker(&["kill", "busy"]).ok();
    e.docker(&["wait", "busy"]).ok();
    let st = d
        .stats("busy", Some(one_shot))
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.name.as_deref(), Some("/busy"));
    let total = st
        .cpu_stats
        .and_then(|c| c.cpu_usage)
        .and_then(|u| u.total_usage)
        .unwrap_or(0);
    assert_eq!(total, 0);
    e.docker(&["rm", "-f", "idle", "busy"]).ok();
}

#[tokio::test]
async fn top_lists_the_container_processes() {
    let e = DockerEnv::new("").await;
    e.docker(&["run", "-d", "--name", "sleeper", &e.busybox, "sleep", "321"])
        .ok();
    let t = e.docker(&["top", "sleeper"]).ok();
    let mut lines = t.out().lines();
    let titles = lines.next().unwrap();
    assert!(titles.contains("PID") && titles.contains("CMD"), "{titles}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "only the container's process: {rows:?}");
    assert!(rows[0].ends_with("sleep 321"), "{rows:?}");

    let custom = e.docker(&["top", "sleeper", "-o", "pid,comm"]).ok();
    assert!(
        custom.out().lines().nth(1).unwrap().ends_with("sleep"),
        "{custom:?}"
    );

    e.docker(&["kill", "sleeper"]).ok();
    e.docker(&["wait", "sleeper"]).ok();
    let stopped = e.docker(&["top", "sleeper"]);
    assert_ne!(stopped.code, 0);
    assert!(stopped.stderr.contains("is not running"), "{stopped:?}");
    e.docker(&["rm", "-f", "sleeper"]).ok();
}
