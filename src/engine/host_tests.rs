//! Engine logic on a fake host (`host_fake.rs`): create rollback, exits and
//! restart policies, recovery when the daemon starts again. No root, crun or
//! CNI plugin is needed: the image is imported through the image service's
//! own path (a one-layer tar owned by whoever runs the test).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;

use super::container::DockerCreate;
use super::docker::OWNER_LABEL;
use super::exits;
use super::host_fake::{FakeHost, Op};
use super::records::{new_id, ContainerRecord, ContainerState, ExitPolicy, Restart};
use super::{Engine, Error};
use crate::config::Config;
use crate::image::archive::{LoadLayer, Spooled};
use crate::image::digest::Digest;

const IMAGE: &str = "docker.io/library/tiny:latest";

/// A temp root, state dir and CNI config for engines on one fake host.
struct Bed {
    dir: tempfile::TempDir,
    fake: FakeHost,
    config: Arc<Config>,
}

impl Bed {
    fn new() -> Bed {
        let dir = tempfile::tempdir().expect("temp dir");
        let (conf, bin) = (dir.path().join("cni/net.d"), dir.path().join("cni/bin"));
        for d in [&conf, &bin] {
            std::fs::create_dir_all(d).expect("cni dirs");
        }
        // A default network whose plugin exists (the fake does the ADD).
        std::fs::write(
            conf.join("10-test.conflist"),
            r#"{"cniVersion":"1.0.0","name":"test","plugins":[{"type":"bridge"}]}"#,
        )
        .expect("conflist");
        let plugin = bin.join("bridge");
        std::fs::write(&plugin, "#!/bin/sh\nexit 1\n").expect("plugin");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755))
            .expect("plugin mode");
        let mut config = Config {
            root: dir.path().join("root"),
            state: dir.path().join("state"),
            ..Config::default()
        };
        config.cni.conf_dir = conf;
        config.cni.bin_dirs = vec![bin];
        config.cni.builtin_network = false;
        Bed {
            dir,
            fake: FakeHost::new(),
            config: Arc::new(config),
        }
    }

    /// An engine on the bed's root and fake host.
    async fn open(&self) -> Arc<Engine> {
        let e = Engine::open_with(self.config.clone(), self.fake.ops())
            .await
            .expect("the engine opens on a fake host");
        Arc::new(e)
    }

    /// An engine holding the test image.
    async fn open_with_image(&self) -> Arc<Engine> {
        let e = self.open().await;
        import_image(&e, self.dir.path()).await;
        e
    }
}

/// Imports a one-layer image (one file, owned by the caller, so that the
/// unpack's chown needs no privilege) through [`crate::image::ImageService::register`].
async fn import_image(e: &Engine, dir: &Path) {
    let mut b = tar::Builder::new(Vec::new());
    let body = b"hello\n";
    let mut h = tar::Header::new_ustar();
    h.set_size(body.len() as u64);
    h.set_mode(0o755);
    h.set_uid(nix::unistd::geteuid().as_raw().into());
    h.set_gid(nix::unistd::getegid().as_raw().into());
    h.set_cksum();
    b.append_data(&mut h, "hello", &body[..])
        .expect("tar entry");
    let tar = b.into_inner().expect("tar");
    let digest = Digest::of(&tar);
    let path = dir.join("layer.tar");
    std::fs::write(&path, &tar).expect("layer file");
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [digest.to_string()]},
    });
    let layer = LoadLayer {
        file: Spooled {
            path,
            size: tar.len() as u64,
            digest,
        },
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
    };
    e.images
        .register(
            serde_json::to_vec(&config).expect("config"),
            vec![layer],
            None,
            vec![IMAGE.into()],
        )
        .await
        .expect("the image imports");
}

fn pod_config(name: &str, docker: bool) -> cri::PodSandboxConfig {
    let mut labels = std::collections::HashMap::new();
    if docker {
        labels.insert(OWNER_LABEL.to_string(), "docker".to_string());
    }
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        }),
        hostname: name.into(),
        labels,
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(name: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: vec!["/hello".into()],
        ..Default::default()
    }
}

/// A Docker container as the Docker door makes one: its own pod, then the
/// container, and the pod removed again when the container's create fails.
async fn docker_create(e: &Engine, name: &str, policy: ExitPolicy) -> Result<String, Error> {
    let pod = e.run_pod_sandbox(pod_config(name, true), "").await?;
    let extras = DockerCreate {
        exit_policy: policy,
        ..Default::default()
    };
    match e
        .create_docker_container(&pod, container_config(name), new_id(), extras)
        .await
    {
        Ok(id) => Ok(id),
        Err(err) => {
            e.remove_pod_sandbox(&pod)
                .await
                .expect("the pod of a failed create is removed");
            Err(err)
        }
    }
}

async fn docker_run(e: &Engine, name: &str, policy: ExitPolicy) -> String {
    let id = docker_create(e, name, policy).await.expect("create");
    e.start_container(&id).await.expect("start");
    id
}

fn policy(restart: Restart) -> ExitPolicy {
    ExitPolicy {
        restart,
        auto_remove: false,
    }
}

/// Waits (up to 10 s) until `cond` holds for the stored record of `id`.
async fn until(e: &Engine, id: &str, what: &str, cond: impl Fn(&ContainerRecord) -> bool) {
    for _ in 0..500 {
        if e.container(id).is_ok_and(|r| cond(&r)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}: {:?}", e.container(id).ok());
}

/// Runs the exit handler of `e` until the returned sender is dropped.
fn watch_exits(e: &Arc<Engine>) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(exits::run(e.clone(), async move {
        let _ = rx.await;
    }));
    tx
}

/// Nothing of a failed `docker create` is left: no record, no pod, nothing
/// mounted or pinned, no network, no held snapshots, no directories.
fn assert_nothing_left(bed: &Bed, e: &Engine) {
    assert!(
        e.containers().expect("list").is_empty(),
        "a container record is left"
    );
    assert!(e.pods().expect("list").is_empty(), "a pod is left");
    assert!(
        bed.fake.mounted().is_empty(),
        "still mounted: {:?}",
        bed.fake.mounted()
    );
    assert!(
        bed.fake.pinned().is_empty(),
        "still pinned: {:?}",
        bed.fake.pinned()
    );
    assert!(
        bed.fake.attached().is_empty(),
        "still attached: {:?}",
        bed.fake.attached()
    );
    assert!(
        e.images.snapshot_holds().keys().is_empty(),
        "snapshots still held"
    );
    for dir in [
        bed.config.state.join("containers"),
        bed.config.root.join("containers"),
        bed.config.state.join("pods"),
    ] {
        let left: Vec<_> = std::fs::read_dir(&dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
    }
}

#[tokio::test]
async fn a_failed_monitor_create_rolls_back_the_container_and_its_pod() {
    let bed = Bed::new();
    let e = bed.open_with_image().await;
    bed.fake.fail(Op::Spawn);
    let err = docker_create(&e, "web", ExitPolicy::default())
        .await
        .expect_err("the create fails");
    assert!(
        matches!(&err, Error::Runtime { what, message } if what.starts_with("create container") && message.contains("fake: create failed")),
        "{err:?}"
    );
    // The rootfs was mounted, then unmounted; the runtime's state deleted.
    assert_eq!(
        bed.fake.calls_of("mount ").len(),
        1,
        "{:?}",
        bed.fake.calls()
    );
    bed.fake.assert_called("unmount ");
    bed.fake.assert_called("delete ");
    bed.fake.assert_called("cni del ");
    assert_nothing_left(&bed, &e);
    // The same create succeeds once the runtime does.
    bed.fake.heal(Op::Spawn);
    let id = docker_create(&e, "web", ExitPolicy::default())
        .await
        .expect("create");
    assert_eq!(
        e.container(&id).expect("record").state,
        ContainerState::Created
    );
    assert_eq!(bed.fake.status_of(&id), Some("created"));
}

#[tokio::test]
async fn a_failed_rootfs_mount_rolls_back_without_a_monitor() {
    let bed = Bed::new();
    let e = bed.open_with_image().await;
    bed.fake.fail(Op::Mount);
    let err = docker_create(&e, "web", ExitPolicy::default())
        .await
        .expect_err("the create fails");
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("failed to mount overlay")),
        "{err:?}"
    );
    assert!(
        bed.fake.calls_of("spawn ").is_empty(),
        "{:?}",
        bed.fake.calls()
    );
    assert_nothing_left(&bed, &e);
}

#[tokio::test]
async fn a_failed_cni_add_rolls_back_the_pod() {
    let bed = Bed::new();
    let e = bed.open_with_image().await;
    bed.fake.fail(Op::CniAdd);
    let err = e
        .run_pod_sandbox(pod_config("web", false), "")
        .await
        .expect_err("the pod fails");
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("fake: ADD failed")),
        "{err:?}"
    );
    assert_eq!(bed.fake.calls_of("cni add ").len(), 1);
    // Its namespaces were pinned and its /dev/shm mounted, then undone.
    bed.fake.assert_called("pin ");
    bed.fake.assert_called("unpin ");
    assert_nothing_left(&bed, &e);
}

#[tokio::test]
async fn a_failed_start_records_the_exit_and_kills_what_runs() {
    let bed = Bed::new();
    let e = bed.open_with_image().await;
    let id = docker_create(&e, "web", ExitPolicy::default())
        .await
        .expect("create");
    bed.fake.fail(Op::Start);
    let err = e.start_container(&id).await.expect_err("the start fails");
    assert!(matches!(err, Error::Runtime { .. }), "{err:?}");
    let rec = e.container(&id).expect("record");
    assert_eq!(rec.state, ContainerState::Exited);
    assert_eq!((rec.exit_code, rec.reason.as_str()), (128, "StartError"));
    assert_eq!(bed.fake.calls_of(&format!("kill {id} KILL")).len(), 1);
}

#[tokio::test]
async fn on_failure_2_restarts_twice_then_stays_exited() {
    let bed = Bed::new();
    let e = bed.open_with_image().await;
    let _exits = watch_exits(&e);
    let id = docker_run(&e, "web", policy(Restart::OnFailure { max_retries: 2 })).await;
    for n in 1..=2 {
        bed.fake.exit(&id, 1);
        until(&e, &id, &format!("restart {n}"), |r| {
            r.restart_count == n && r.state == ContainerState::Running
        })
        .await;
    }
    bed.fake.exit(&id, 1);
    until(&e, &id, "the last exit", |r| {
        r.state == ContainerState::Exited
    })
    .await;
    // Longer than the next back-off (400 ms): no third restart comes.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let rec = e.container(&id).expect("record");
    assert_eq!(rec.state, ContainerState::Exited);
    assert_eq!((rec.exit_code, rec.restart_count), (1, 2));
    assert_eq!(bed.fake.calls_of(&format!("spawn {id}")).len(), 3);
    assert_eq!(bed.fake.calls_of(&format!("start {id}")).len(), 3);
}

/// Runs a container under `restart`, lets it exit with `code`, waits for
/// its one restart, then stops it as a user would; returns its record at
/// once and again after the next back-off would have passed.
async fn restarted_once_then_user_stopped(
    restart: Restart,
    code: i32,
) -> (ContainerRecord, ContainerRecord, usize) {
    let bed = Bed::new();
    let e = bed.open_with_image().await;
    let _exits = watch_exits(&e);
    let id = docker_run(&e, "web", policy(restart)).await;
    bed.fake.exit(&id, code);
    until(&e, &id, "the restart", |r| {
        r.restart_count == 1 && r.state == ContainerState::Running
    })
    .await;
    e.mark_stopped_by_user(&id).await.expect("mark");
    e.stop_container(&id, Duration::from_secs(5))
        .await
        .expect("stop");
    let stopped = e.container(&id).expect("record");
    // Longer than the next back-off: a restart would have come by now.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let later = e.container(&id).expect("record");
    let spawns = bed.fake.calls_of(&format!("spawn {id}")).len();
    (stopped, later, spawns)
}

#[tokio::test]
async fn always_restarts_a_clean_exit_but_not_after_a_user_stop() {
    let (stopped, later, spawns) = restarted_once_then_user_stopped(Restart::Always, 0).await;
    assert_eq!(stopped.state, ContainerState::Exited);
    // SIGTERM straight to the container's process (143 = 128 + 15).
    assert_eq!(stopped.exit_code, 143);
    assert_eq!(
        (later.state, later.restart_count),
        (ContainerState::Exited, 1)
    );
    assert_eq!(spawns, 2);
}

#[tokio::test]
async fn unless_stopped_restarts_a_failure_but_not_a_user_stop() {
    let (_, later, spawns) = restarted_once_then_user_stopped(Restart::UnlessStopped, 3).await;
    assert_eq!(
        (later.state, later.restart_count),
        (ContainerState::Exited, 1)
    );
    assert!(later.stopped_by_user);
    assert_eq!(spawns, 2);
}

#[tokio::test]
async fn auto_remove_removes_the_container_and_its_pod() {
    let bed = Bed::new();
    let e = bed.open_with_image().await;
    let _exits = watch_exits(&e);
    let rm = ExitPolicy {
        restart: Restart::No,
        auto_remove: true,
    };
    let id = docker_run(&e, "web", rm).await;
    bed.fake.exit(&id, 0);
    for _ in 0..500 {
        if e.pods().expect("pods").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(e.container(&id), Err(Error::NotFound(_))));
    assert_nothing_left(&bed, &e);
    assert_eq!(
        bed.fake.status_of(&id),
        None,
        "the runtime's state is deleted"
    );
}

#[tokio::test]
async fn a_reopened_engine_recovers_running_and_exited_containers() {
    let bed = Bed::new();
    let e = bed.open_with_image().await;
    let running = docker_run(&e, "running", ExitPolicy::default()).await;
    let failed = docker_run(&e, "failed", policy(Restart::UnlessStopped)).await;
    let always = docker_run(&e, "always", policy(Restart::Always)).await;
    let unless = docker_run(&e, "unless", policy(Restart::UnlessStopped)).await;
    // Stopped by their user while the daemon ran.
    for id in [&always, &unless] {
        e.mark_stopped_by_user(id).await.expect("mark");
        e.stop_container(id, Duration::from_secs(5))
            .await
            .expect("stop");
    }
    // The daemon goes; meanwhile `failed` exits (its monitor writes the exit file).
    let exit_file = e.container(&failed).expect("record").exit_file();
    drop(e);
    bed.fake.exit(&failed, 7);
    for _ in 0..500 {
        if bed.fake.status_of(&failed) == Some("stopped") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(bed.fake.status_of(&failed), Some("stopped"));
    assert!(exit_file.exists());

    let e = bed.open().await;
    let listed: std::collections::HashMap<String, ContainerRecord> = e
        .containers()
        .expect("list")
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[&running].state, ContainerState::Running);
    assert_eq!(listed[&failed].state, ContainerState::Exited);
    assert_eq!(listed[&failed].exit_code, 7);
    assert_eq!(listed[&always].state, ContainerState::Exited);
    assert_eq!(listed[&unless].state, ContainerState::Exited);
    // Every pod kept its namespaces: still ready.
    assert!(e
        .pods()
        .expect("pods")
        .iter()
        .all(|p| p.state == super::records::PodState::Ready));

    // The daemon's start applies the policies: `always` restarts even after a
    // user stop, `unless-stopped` restarts the failure but not the stop,
    // each with its count set back to 0.
    let _exits = watch_exits(&e);
    until(&e, &failed, "the restart of the failed one", |r| {
        r.state == ContainerState::Running
    })
    .await;
    until(&e, &always, "the restart of the always one", |r| {
        r.state == ContainerState::Running
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in [&failed, &always] {
        let r = e.container(id).expect("record");
        assert_eq!((r.state, r.restart_count), (ContainerState::Running, 0));
    }
    assert_eq!(
        e.container(&unless).expect("record").state,
        ContainerState::Exited
    );
    assert_eq!(
        e.container(&running).expect("record").state,
        ContainerState::Running
    );
    // The exit that happened while the daemon was down was recorded once.
    let (events, _) = e.events.subscribe();
    let dies = events
        .iter()
        .filter(|ev| ev.id == failed && ev.action == "die")
        .count();
    assert_eq!(dies, 1, "{events:?}");
    // The running one was never touched by the runtime after the reopen.
    assert_eq!(bed.fake.calls_of(&format!("spawn {running}")).len(), 1);
}

#[tokio::test]
async fn a_failed_infra_start_releases_the_network_and_the_infra() {
    let bed = Bed::new();
    let e = bed.open().await;
    // A shared PID namespace: the pod has an infra process.
    let shared = || {
        let mut cfg = pod_config("shared", false);
        cfg.linux = None;
        cfg
    };
    bed.fake.fail(Op::Start);
    let err = e
        .run_pod_sandbox(shared(), "")
        .await
        .expect_err("the pod fails");
    assert!(
        matches!(&err, Error::Runtime { message, .. } if message.contains("fake: start failed")),
        "{err:?}"
    );
    // Its network came up beside the infra: both are undone.
    assert_eq!(bed.fake.calls_of("spawn ").len(), 1);
    assert_eq!(bed.fake.calls_of("cni add ").len(), 1);
    bed.fake.assert_called("cni del ");
    bed.fake.assert_called("delete ");
    assert_nothing_left(&bed, &e);

    bed.fake.heal(Op::Start);
    let pod = e.run_pod_sandbox(shared(), "").await.expect("the pod runs");
    let rec = e.pod(&pod).expect("record");
    assert!(rec.infra.is_some_and(|p| p.alive()));
    assert_eq!(bed.fake.status_of(&pod), Some("running"));
    assert_eq!(bed.fake.attached(), vec![pod.clone()]);
    e.remove_pod_sandbox(&pod).await.expect("remove");
    assert_eq!(bed.fake.status_of(&pod), None);
    assert_nothing_left(&bed, &e);
}

#[tokio::test]
async fn a_start_a_crash_kept_from_the_record_is_recovered_as_running() {
    let bed = Bed::new();
    let e = bed.open_with_image().await;
    let id = docker_create(&e, "web", ExitPolicy::default())
        .await
        .expect("create");
    bed.fake.start_behind(&id);
    drop(e);
    let e = bed.open().await;
    let rec = e.container(&id).expect("record");
    assert_eq!(rec.state, ContainerState::Running);
    assert!(rec.started_at > 0);
    // Its exit is then seen as any other.
    bed.fake.exit(&id, 2);
    let _exits = watch_exits(&e);
    until(&e, &id, "the exit", |r| r.state == ContainerState::Exited).await;
    assert_eq!(e.container(&id).expect("record").exit_code, 2);
}

#[tokio::test]
async fn pause_resume_and_kill_go_through_the_runtime() {
    let bed = Bed::new();
    let e = bed.open_with_image().await;
    let id = docker_run(&e, "web", ExitPolicy::default()).await;
    e.set_paused(&id, true).await.expect("pause");
    assert!(e.container(&id).expect("record").paused);
    assert_eq!(bed.fake.status_of(&id), Some("paused"));
    let again = e.set_paused(&id, true).await.expect_err("paused already");
    assert!(matches!(again, Error::FailedPrecondition(_)), "{again:?}");
    e.set_paused(&id, false).await.expect("resume");
    assert_eq!(bed.fake.status_of(&id), Some("running"));
    assert_eq!(bed.fake.calls_of("pause ").len(), 1);
    assert_eq!(bed.fake.calls_of("resume ").len(), 1);
    e.kill_container(&id, "SIGINT").await.expect("kill");
    assert_eq!(bed.fake.calls_of(&format!("kill {id} SIGINT")).len(), 1);
    let _exits = watch_exits(&e);
    until(&e, &id, "the exit", |r| r.state == ContainerState::Exited).await;
    // 128 + SIGINT, as the monitor records a death by signal.
    assert_eq!(e.container(&id).expect("record").exit_code, 130);
    let gone = e
        .kill_container(&id, "KILL")
        .await
        .expect_err("not running");
    assert!(matches!(gone, Error::FailedPrecondition(_)), "{gone:?}");
}

/// A pod's infra that died while the daemon was down (the pod is then found
/// not ready) still has its runtime state and cgroup: the stop deletes them
/// (seen in the chaos run: a kill -9 between the infra's kill and its delete
/// left the cgroup behind).
#[tokio::test]
async fn an_infra_that_died_while_the_daemon_was_down_is_deleted_by_the_stop() {
    let bed = Bed::new();
    let e = bed.open().await;
    let mut cfg = pod_config("lost", false);
    cfg.linux = None;
    let pod = e.run_pod_sandbox(cfg, "").await.expect("the pod runs");
    drop(e);
    bed.fake.exit(&pod, 137);
    let e = bed.open().await;
    let rec = e.pod(&pod).expect("record");
    assert_eq!(rec.state, super::records::PodState::NotReady);
    assert!(
        bed.fake.status_of(&pod).is_some(),
        "the runtime still knows it"
    );
    let before = bed.fake.calls_of("delete ").len();
    e.stop_pod_sandbox(&pod).await.expect("stop");
    assert_eq!(bed.fake.calls_of("delete ").len(), before + 1);
    assert_eq!(bed.fake.status_of(&pod), None);
    // Stopped: a second stop costs no runtime call.
    e.stop_pod_sandbox(&pod).await.expect("stop again");
    assert_eq!(bed.fake.calls_of("delete ").len(), before + 1);
    e.remove_pod_sandbox(&pod).await.expect("remove");
    assert_nothing_left(&bed, &e);
}
