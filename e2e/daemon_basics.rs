//! The daemon as a process: what it answers first, its sockets, start-up
//! refusals and shutdown.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use k8s_cri::v1::{CheckpointContainerRequest, StatusRequest, VersionRequest};
use tonic::Code;

use crate::support::daemon::{config_yaml, run_to_exit, Berthd};
use crate::support::short_tempdir;

#[tokio::test]
async fn version_names_berth_and_cri_v1() {
    let d = Berthd::start("").await;
    let mut rt = d.runtime_client().await;
    let v = rt
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .expect("Version")
        .into_inner();
    assert_eq!(v.runtime_name, "berth");
    assert_eq!(v.runtime_api_version, "v1");
    assert!(
        v.runtime_version.starts_with(env!("CARGO_PKG_VERSION")),
        "runtime_version {:?} is the crate version",
        v.runtime_version
    );
}

#[tokio::test]
async fn status_reports_runtime_and_network_conditions() {
    let d = Berthd::start("").await;
    let mut rt = d.runtime_client().await;
    let resp = rt
        .status(StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner();
    assert!(
        resp.info.is_empty(),
        "info only when verbose: {:?}",
        resp.info
    );
    let conditions = resp.status.expect("Status carries a status").conditions;
    for wanted in ["RuntimeReady", "NetworkReady"] {
        assert!(
            conditions.iter().any(|c| c.r#type == wanted),
            "{wanted} condition missing: {conditions:#?}"
        );
    }
    for c in conditions.iter().filter(|c| !c.status) {
        assert!(
            !c.reason.is_empty() && !c.message.is_empty(),
            "a false condition says why: {c:?}"
        );
    }
    let verbose = rt
        .status(StatusRequest { verbose: true })
        .await
        .expect("verbose Status")
        .into_inner();
    assert!(!verbose.info.is_empty(), "verbose Status has info");
    for (key, value) in &verbose.info {
        serde_json::from_str::<serde_json::Value>(value)
            .unwrap_or_else(|err| panic!("info[{key}] is not JSON ({err}): {value}"));
    }
}

#[tokio::test]
async fn checkpoint_of_an_unknown_container_is_not_found() {
    let d = Berthd::start("").await;
    let mut rt = d.runtime_client().await;
    let err = rt
        .checkpoint_container(CheckpointContainerRequest {
            container_id: "nope".into(),
            location: "/tmp/nope.tar".into(),
            timeout: 0,
        })
        .await
        .expect_err("CheckpointContainer");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(!std::path::Path::new("/tmp/nope.tar").exists());
}

#[tokio::test]
async fn second_daemon_on_same_root_refuses_to_start() {
    let d = Berthd::start("").await;
    let other = short_tempdir("bd2");
    let mine = format!("root: {}/root\n", other.path().display());
    let config =
        config_yaml(other.path(), "").replace(&mine, &format!("root: {}\n", d.root().display()));
    assert!(config.contains(&d.root().display().to_string()));

    let (status, stderr) = run_to_exit(&config, Duration::from_secs(60));
    let status = status.expect("the second berthd must exit, not run");
    assert!(!status.success(), "second berthd exit status: {status}");
    assert!(
        stderr.contains(&d.root().display().to_string()),
        "the refusal names the root in use: {stderr}"
    );
    assert!(
        !other.path().join("state/berth.sock").exists(),
        "the refused daemon opened no socket"
    );
    // The first daemon is unharmed.
    let mut rt = d.runtime_client().await;
    rt.version(VersionRequest::default())
        .await
        .expect("first daemon still answers");
}

#[tokio::test]
async fn cri_socket_is_mode_0660() {
    let d = Berthd::start("").await;
    let meta = std::fs::metadata(d.socket()).expect("CRI socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "CRI socket mode");
    if let Ok(meta) = std::fs::metadata(d.docker_socket()) {
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o660,
            "Docker socket mode"
        );
    }
}

#[tokio::test]
async fn sigterm_exits_cleanly_and_removes_sockets() {
    let mut d = Berthd::start("").await;
    assert!(d.socket().exists());
    let status = d.stop();
    assert!(status.success(), "exit on SIGTERM: {status}\n{}", d.log());
    assert!(!d.socket().exists(), "CRI socket removed");
    assert!(!d.docker_socket().exists(), "Docker socket removed");
}

#[tokio::test]
async fn unknown_config_key_is_refused_with_its_path() {
    let dir = short_tempdir("bdc");
    let config = config_yaml(dir.path(), "").replacen("  socket: ", "  sockett: ", 1);
    assert!(config.contains("cri:\n  sockett: "));
    let (status, stderr) = run_to_exit(&config, Duration::from_secs(60));
    let status = status.expect("berthd must exit on a bad config");
    assert!(!status.success(), "exit status {status}");
    assert!(stderr.contains("cri.sockett"), "names the key: {stderr}");
}

#[tokio::test]
async fn bad_config_value_is_refused_with_its_path() {
    let dir = short_tempdir("bdc");
    let config = config_yaml(dir.path(), "runtime:\n  cgroup_driver: [not, a, driver]\n");
    let (status, stderr) = run_to_exit(&config, Duration::from_secs(60));
    let status = status.expect("berthd must exit on a bad config");
    assert!(!status.success(), "exit status {status}");
    assert!(
        stderr.contains("runtime.cgroup_driver"),
        "names the key: {stderr}"
    );
}
