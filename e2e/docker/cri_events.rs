//! `docker events` shows what the CRI door did: the engine publishes the
//! events inside its operations, so a CRI pull, ExecSync, StopContainer and
//! RemoveImage appear once each, as the same Docker operations would.

use crate::support::docker::DockerEnv;
use crate::support::{cri, pods};

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn cri_operations_appear_once_in_docker_events() {
    let e = DockerEnv::without_pull("").await;
    let since = (now_secs() - 1).to_string();
    let mut images = e.d.image_client().await;
    let mut rt = e.d.runtime_client().await;
    let image_id = cri::pull_ok(&mut images, &e.busybox).await;
    let logs = crate::support::short_tempdir("ce");
    let pod_cfg = pods::pod_config("evpod", logs.path());
    let pod = pods::run_pod(&mut rt, &pod_cfg).await;
    // Ends on TERM (a shell as pid 1 has no default TERM action).
    let cfg = pods::container_config(
        "evc",
        &e.busybox,
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        "t",
    );
    let id = pods::run(&mut rt, &pod, &cfg, &pod_cfg).await;
    let r = pods::exec(&mut rt, &id, &["sh", "-c", "exit 3"], 0)
        .await
        .unwrap();
    assert_eq!(r.exit_code, 3);
    pods::stop(&mut rt, &id, 30).await.unwrap();
    pods::remove(&mut rt, &id).await.unwrap();
    pods::remove_pod(&mut rt, &pod).await.unwrap();
    let img = cri::status(&mut images, &e.busybox).await.expect("pulled");
    let names = img.repo_tags.len() + img.repo_digests.len();
    cri::remove(&mut images, &e.busybox).await.unwrap();

    let until = (now_secs() + 1).to_string();
    let ev = e
        .docker(&[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--format",
            "{{.Type}}|{{.Action}}|{{.Actor.ID}}|{{index .Actor.Attributes \"signal\"}}|{{index .Actor.Attributes \"exitCode\"}}|{{index .Actor.Attributes \"execID\"}}",
        ])
        .ok();
    let lines: Vec<Vec<&str>> = ev.out().lines().map(|l| l.split('|').collect()).collect();
    let count = |kind: &str, action: &str| {
        lines
            .iter()
            .filter(|f| f.first() == Some(&kind) && f.get(1) == Some(&action))
            .count()
    };
    let one = |kind: &str, action: &str| -> Vec<&str> {
        let found: Vec<&Vec<&str>> = lines
            .iter()
            .filter(|f| f.first() == Some(&kind) && f.get(1) == Some(&action))
            .collect();
        assert_eq!(found.len(), 1, "{kind} {action} once in {ev:?}");
        found[0].clone()
    };
    assert_eq!(one("image", "pull")[2], e.busybox);
    let create = one("container", "exec_create: sh -c exit 3");
    let start = one("container", "exec_start: sh -c exit 3");
    let die = one("container", "exec_die");
    assert_eq!((create[2], die[2]), (id.as_str(), id.as_str()));
    assert!(!create[5].is_empty(), "an execID: {create:?}");
    assert_eq!((start[5], die[5]), (create[5], create[5]));
    assert_eq!(die[4], "3", "{die:?}");
    let kill = one("container", "kill");
    assert_eq!((kill[2], kill[3]), (id.as_str(), "TERM"));
    assert_eq!(one("container", "stop")[2], id);
    assert_eq!(one("container", "die")[4], "0");
    assert!(names >= 1, "{img:?}");
    assert_eq!(count("image", "untag"), names, "{ev:?}");
    assert_eq!(one("image", "delete")[2], image_id);
    // The order Docker gives them.
    let pos = |action: &str| lines.iter().position(|f| f.get(1) == Some(&action));
    assert!(
        pos("kill") < pos("die") && pos("die") < pos("stop"),
        "{ev:?}"
    );
    assert!(pos("untag") < pos("delete"), "{ev:?}");
}
