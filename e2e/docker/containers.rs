//! Container life cycle through the docker CLI: run -d, ps (filters and
//! --format), inspect, stop/kill/wait, pause/unpause, rename, rm -f, and CRI
//! containers showing up under dockershim names.

use std::time::Duration;

use crate::support::docker::DockerEnv;
use crate::support::pods;
use crate::support::wait_until;

/// `docker ps -a` names (one per line, sorted).
fn names(e: &DockerEnv, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["ps", "-a", "--format", "{{.Names}}"];
    args.extend_from_slice(extra);
    let mut v: Vec<String> = e
        .docker(&args)
        .ok()
        .out()
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn detached_containers_are_listed_filtered_and_inspected() {
    let e = DockerEnv::new("").await;
    let id = e
        .docker(&[
            "run",
            "-d",
            "--name",
            "web",
            "-l",
            "tier=front",
            "-e",
            "A=1",
            &e.busybox,
            "sleep",
            "300",
        ])
        .ok()
        .out()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    e.docker(&[
        "create",
        "--name",
        "idle",
        "-l",
        "tier=back",
        &e.busybox,
        "true",
    ])
    .ok();
    e.docker(&["run", "--name", "done", &e.busybox, "sh", "-c", "exit 4"]);
    assert_eq!(names(&e, &[]), ["done", "idle", "web"]);
    let running = e.docker(&["ps", "--format", "{{.Names}}"]).ok();
    assert_eq!(running.out(), "web");
    assert_eq!(names(&e, &["--filter", "label=tier=front"]), ["web"]);
    assert_eq!(names(&e, &["--filter", "status=created"]), ["idle"]);
    assert_eq!(names(&e, &["--filter", "exited=4"]), ["done"]);
    assert_eq!(names(&e, &["--filter", "name=do"]), ["done"]);
    assert_eq!(
        names(&e, &["--filter", &format!("id={}", &id[..12])]),
        ["web"]
    );
    assert_eq!(
        names(&e, &["--filter", &format!("ancestor={}", e.busybox)]),
        ["done", "idle", "web"]
    );
    let ps = e
        .docker(&[
            "ps",
            "-a",
            "--filter",
            "name=done",
            "--format",
            "{{.Status}}|{{.Command}}|{{.Image}}",
        ])
        .ok();
    assert!(ps.out().starts_with("Exited (4) "), "{ps:?}");
    assert!(
        ps.out().contains("\"sh -c 'exit 4'\"") || ps.out().contains("sh -c"),
        "{ps:?}"
    );
    assert!(ps.out().ends_with(&format!("|{}", e.busybox)), "{ps:?}");
    let ins = e
        .docker(&[
            "inspect",
            "--format",
            "{{.Name}} {{.State.Status}} {{.State.Running}} {{.Config.Image}} {{index .Config.Labels \"tier\"}} {{.Path}} {{json .Args}}",
            "web",
        ])
        .ok();
    assert_eq!(
        ins.out(),
        format!("/web running true {} front sleep [\"300\"]", e.busybox)
    );
    let env = e
        .docker(&["inspect", "--format", "{{json .Config.Env}}", "web"])
        .ok();
    assert!(env.out().contains("\"A=1\""), "{env:?}");
    let pid = e
        .docker(&["inspect", "--format", "{{.State.Pid}}", "web"])
        .ok();
    let pid: i32 = pid.out().parse().unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(
        cmdline, "sleep\u{0}300\u{0}",
        "State.Pid is the container's process"
    );
    let code = e
        .docker(&["inspect", "--format", "{{.State.ExitCode}}", "done"])
        .ok();
    assert_eq!(code.out(), "4");
    let missing = e.docker(&["inspect", "nosuch"]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("No such"), "{missing:?}");
    e.docker(&["rm", "-f", "web", "idle", "done"]).ok();
    assert!(names(&e, &[]).is_empty());
}

#[tokio::test]
async fn stop_kill_wait_restart() {
    let e = DockerEnv::new("").await;
    // A shell that ignores TERM until killed: stop -t 1 escalates to KILL.
    e.docker(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        &e.busybox,
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 1; done",
    ])
    .ok();
    e.docker(&["stop", "-t", "1", "stubborn"]).ok();
    let st = e
        .docker(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            "stubborn",
        ])
        .ok();
    assert_eq!(st.out(), "exited 137");
    // Started again: the same container, running once more.
    e.docker(&["start", "stubborn"]).ok();
    let st = e
        .docker(&["inspect", "--format", "{{.State.Status}}", "stubborn"])
        .ok();
    assert_eq!(st.out(), "running");
    e.docker(&["kill", "stubborn"]).ok();
    let w = e.docker(&["wait", "stubborn"]).ok();
    assert_eq!(w.out(), "137");
    // kill -s sends the signal asked for; wait returns the exit code.
    e.docker(&[
        "run",
        "-d",
        "--name",
        "polite",
        &e.busybox,
        "sh",
        "-c",
        "trap 'exit 42' USR1; touch /ready; while true; do sleep 1; done",
    ])
    .ok();
    let merged = e
        .docker(&[
            "inspect",
            "--format",
            "{{.GraphDriver.Data.MergedDir}}",
            "polite",
        ])
        .ok()
        .out()
        .to_string();
    let ready = std::path::Path::new(&merged).join("ready");
    wait_until("the trap to be set", Duration::from_secs(30), || {
        let r = ready.exists().then_some(());
        async move { r }
    })
    .await;
    e.docker(&["kill", "-s", "USR1", "polite"]).ok();
    assert_eq!(e.docker(&["wait", "polite"]).ok().out(), "42");
    let r = e.docker(&["kill", "polite"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is not running"), "{r:?}");
    e.docker(&["restart", "-t", "0", "polite"]).ok();
    assert_eq!(
        e.docker(&["inspect", "--format", "{{.State.Running}}", "polite"])
            .ok()
            .out(),
        "true"
    );
    let r = e.docker(&["rm", "polite"]);
    assert_ne!(r.code, 0, "removing a running container needs -f: {r:?}");
    e.docker(&["rm", "-f", "polite", "stubborn"]).ok();
}

#[tokio::test]
async fn pause_unpause_and_rename() {
    let e = DockerEnv::new("").await;
    e.docker(&[
        "run",
        "-d",
        "--name",
        "ticker",
        &e.busybox,
        "sh",
        "-c",
        "while true; do date +%s%N > /tmp/t; sleep 0.1; done",
    ])
    .ok();
    e.docker(&["pause", "ticker"]).ok();
    let st = e
        .docker(&["ps", "--format", "{{.Status}}", "--filter", "status=paused"])
        .ok();
    assert!(st.out().ends_with("(Paused)"), "{st:?}");
    let pid: i32 = e
        .docker(&["inspect", "--format", "{{.State.Pid}}", "ticker"])
        .ok()
        .out()
        .parse()
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let state = status.lines().find(|l| l.starts_with("State:")).unwrap();
    assert!(state.contains("S") || state.contains("D"), "{state}");
    let again = e.docker(&["pause", "ticker"]);
    assert_ne!(again.code, 0, "{again:?}");
    e.docker(&["unpause", "ticker"]).ok();
    assert_eq!(
        e.docker(&["inspect", "--format", "{{.State.Status}}", "ticker"])
            .ok()
            .out(),
        "running"
    );
    e.docker(&["rename", "ticker", "clock"]).ok();
    assert_eq!(names(&e, &[]), ["clock"]);
    e.docker(&["run", "-d", "--name", "other", &e.busybox, "sleep", "100"])
        .ok();
    let clash = e.docker(&["rename", "other", "clock"]);
    assert_eq!(clash.code, 1);
    assert!(clash.stderr.contains("already in use"), "{clash:?}");
    let dup = e.docker(&["create", "--name", "clock", &e.busybox]);
    assert_ne!(dup.code, 0);
    assert!(dup.stderr.contains("is already in use"), "{dup:?}");
    e.docker(&["rm", "-f", "clock", "other"]).ok();
}

#[tokio::test]
async fn cri_containers_appear_in_docker_ps() {
    let e = DockerEnv::new("").await;
    let mut rt = e.d.runtime_client().await;
    let logs = crate::support::short_tempdir("dl");
    let mut pod_cfg = pods::pod_config("kpod", logs.path());
    pod_cfg.metadata.as_mut().unwrap().namespace = "default".into();
    pod_cfg.metadata.as_mut().unwrap().uid = "uid1".into();
    let pod = pods::run_pod(&mut rt, &pod_cfg).await;
    let cfg = pods::container_config("app", &e.busybox, "echo from-cri; sleep 300", "t");
    let id = pods::run(&mut rt, &pod, &cfg, &pod_cfg).await;
    let ps = e
        .docker(&["ps", "--no-trunc", "--format", "{{.ID}} {{.Names}}"])
        .ok();
    assert_eq!(ps.out(), format!("{id} k8s_app_kpod_default_uid1_0"));
    let logs = e.docker(&["logs", "k8s_app_kpod_default_uid1_0"]);
    let exec = e.docker(&["exec", &id[..12], "cat", "/etc/hostname"]);
    // And the other way: a Docker container is a pod CRI lists.
    e.docker(&["run", "-d", "--name", "dk", &e.busybox, "sleep", "100"])
        .ok();
    let listed = pods::list_containers(&mut rt, None).await;
    assert!(
        listed
            .iter()
            .any(|c| c.metadata.as_ref().is_some_and(|m| m.name == "dk")),
        "{listed:?}"
    );
    logs.ok();
    exec.ok();
    e.docker(&["rm", "-f", "dk"]).ok();
    pods::remove_pod(&mut rt, &pod).await.unwrap();
}

/// The status code of a bollard error (0 if it is not a server answer).
fn api_code(e: &bollard::errors::Error) -> u16 {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => *status_code,
        _ => 0,
    }
}

#[tokio::test]
async fn api_level_life_cycle_with_bollard() {
    use bollard::models::{ContainerCreateBody, HostConfig};
    use bollard::query_parameters::{
        CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
        RemoveContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder,
        WaitContainerOptionsBuilder,
    };
    use futures::StreamExt;

    let e = DockerEnv::new("").await;
    let api = e.bollard();
    assert_eq!(api.ping().await.unwrap(), "OK");
    let v = api.version().await.unwrap();
    assert_eq!(v.api_version.as_deref(), Some(berth::docker::API_VERSION));
    let body = ContainerCreateBody {
        image: Some(e.busybox.clone()),
        cmd: Some(vec!["sh".into(), "-c".into(), "exit 5".into()]),
        labels: Some([("k".to_string(), "v".to_string())].into()),
        host_config: Some(HostConfig {
            memory: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            cap_add: Some(vec!["NET_ADMIN".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = api
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name("api1").build()),
            body.clone(),
        )
        .await
        .unwrap();
    // The same name again: 409.
    let dup = api
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name("api1").build()),
            body,
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&dup), 409, "{dup}");
    let ins = api
        .inspect_container("api1", None::<InspectContainerOptions>)
        .await
        .unwrap();
    let hc = ins.host_config.unwrap();
    assert_eq!(hc.memory, Some(64 << 20));
    assert_eq!(hc.nano_cpus, Some(500_000_000));
    assert_eq!(ins.state.unwrap().status.unwrap().to_string(), "created");
    api.start_container(&created.id, None::<StartContainerOptions>)
        .await
        .unwrap();
    // (bollard sends the request when the stream is first polled, so
    // `not-running`, which also answers for a container that already exited.)
    let mut wait = api.wait_container(
        &created.id,
        Some(
            WaitContainerOptionsBuilder::new()
                .condition("not-running")
                .build(),
        ),
    );
    let exit = tokio::time::timeout(Duration::from_secs(60), wait.next())
        .await
        .expect("wait answers")
        .unwrap();
    // bollard turns a non-zero StatusCode into an error carrying it.
    match exit {
        Err(bollard::errors::Error::DockerContainerWaitError { code, .. }) => assert_eq!(code, 5),
        other => panic!("unexpected wait result {other:?}"),
    }
    // Starting a running container is 304; stopping an exited one too.
    let stop = api
        .stop_container(
            "api1",
            Some(StopContainerOptionsBuilder::new().t(1).build()),
        )
        .await;
    assert!(
        stop.is_ok() || stop.as_ref().is_err_and(|e| api_code(e) == 304),
        "{stop:?}"
    );
    let listed = api
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&[("label", vec!["k=v"])].into())
                .build(),
        ))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].names.as_deref(), Some(&["/api1".to_string()][..]));
    let missing = api
        .inspect_container("nope", None::<InspectContainerOptions>)
        .await
        .unwrap_err();
    assert_eq!(api_code(&missing), 404);
    let bad = api
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .filters(&[("status", vec!["sleepy"])].into())
                .build(),
        ))
        .await
        .unwrap_err();
    assert_eq!(api_code(&bad), 400);
    api.remove_container(
        "api1",
        Some(RemoveContainerOptionsBuilder::new().force(true).build()),
    )
    .await
    .unwrap();
    let gone = api
        .remove_container(
            "api1",
            None::<bollard::query_parameters::RemoveContainerOptions>,
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&gone), 404);
}

#[tokio::test]
async fn events_stream_container_life_cycle() {
    let e = DockerEnv::new("").await;
    let since = e.docker(&["version", "--format", "{{.Server.Os}}"]).ok();
    assert_eq!(since.out(), "linux");
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let id = e
        .docker(&[
            "run", "-d", "--name", "ev", &e.busybox, "sh", "-c", "exit 2",
        ])
        .ok()
        .out()
        .to_string();
    e.docker(&["wait", "ev"]).ok();
    e.docker(&["rm", "ev"]).ok();
    let until = start + 600;
    let ev = e
        .docker(&[
            "events",
            "--since",
            &start.to_string(),
            "--until",
            &(std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 1)
            .to_string(),
            "--filter",
            "container=ev",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}} {{index .Actor.Attributes \"exitCode\"}}",
        ])
        .ok();
    let _ = until;
    let lines: Vec<&str> = ev.out().lines().map(str::trim).collect();
    assert_eq!(
        lines,
        ["create ev", "start ev", "die ev 2", "destroy ev"],
        "{ev:?} for {id}"
    );
}

#[tokio::test]
async fn update_prune_df_and_info_counts() {
    let e = DockerEnv::new("").await;
    e.docker(&[
        "run",
        "-d",
        "--name",
        "busy",
        "-m",
        "64m",
        "-v",
        "dfvol:/data",
        &e.busybox,
        "sleep",
        "300",
    ])
    .ok();
    e.docker(&["create", "--name", "idle", &e.busybox, "true"])
        .ok();
    let info = e
        .docker(&[
            "info",
            "--format",
            "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}} {{.Images}}",
        ])
        .ok();
    assert_eq!(info.out(), "2 1 1 1");
    // update reaches the cgroup: memory.limit_in_bytes (v1) or memory.max (v2).
    e.docker(&["update", "-m", "96m", "--memory-swap", "-1", "busy"])
        .ok();
    let pid = e
        .docker(&["inspect", "--format", "{{.State.Pid}}", "busy"])
        .ok();
    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", pid.out())).unwrap();
    let limit = cgroup
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            if ctrl.split(',').any(|c| c == "memory") {
                std::fs::read_to_string(format!(
                    "/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"
                ))
                .ok()
            } else if ctrl.is_empty() {
                std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max")).ok()
            } else {
                None
            }
        })
        .expect("the container's memory limit file");
    assert_eq!(limit.trim(), (96u64 << 20).to_string());
    let hc = e
        .docker(&["inspect", "--format", "{{.HostConfig.Memory}}", "busy"])
        .ok();
    assert_eq!(hc.out(), (96u64 << 20).to_string());
    let df = e
        .docker(&[
            "system",
            "df",
            "--format",
            "{{.Type}} {{.TotalCount}} {{.Active}}",
        ])
        .ok();
    let lines: Vec<&str> = df.out().lines().collect();
    assert_eq!(lines[0], "Images 1 1", "{df:?}");
    assert_eq!(lines[1], "Containers 2 1", "{df:?}");
    assert_eq!(lines[2], "Local Volumes 1 1", "{df:?}");
    // prune removes the stopped container only.
    let pruned = e.docker(&["container", "prune", "-f"]).ok();
    assert!(pruned.stdout.contains("Deleted Containers:"), "{pruned:?}");
    assert_eq!(names(&e, &[]), ["busy"]);
    e.docker(&["rm", "-f", "busy"]).ok();
}
