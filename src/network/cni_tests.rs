//! The caller against fake plugins (shell scripts that log their input):
//! chain order, prevResult, runtimeConfig, the cache across instances,
//! rollback of a failed ADD, errors, and the readiness watcher.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::testutil::{attachment, net, who, Fixture};
use super::*;

#[tokio::test]
async fn add_chains_results_and_del_repeats_add_input_after_restart() {
    let f = Fixture::new();
    f.ok_plugin("a", 10);
    f.ok_plugin("b", 11);
    f.ok_plugin("c", 12);
    let net = net(
        json!([{"type": "a"}, {"type": "b", "capabilities": {"portMappings": true}}, {"type": "c"}]),
    );
    let att = attachment("pod1");
    let res = f.cni().add(&net, &att).await.unwrap();
    assert_eq!(
        pod_ips(&res),
        ["10.1.2.12".parse::<std::net::IpAddr>().unwrap()]
    );

    let calls = f.calls();
    assert_eq!(who(&calls), ["ADD a", "ADD b", "ADD c"]);
    let bin_path = format!(
        "{}:{}",
        f.conf.join("nothing-here").display(),
        f.bin.display()
    );
    for c in &calls {
        assert_eq!(c["containerId"], "pod1");
        assert_eq!(c["netns"], "/proc/1/ns/net");
        assert_eq!(c["ifname"], "eth0");
        assert_eq!(c["args"], "IgnoreUnknown=1;K8S_POD_NAME=web");
        assert_eq!(c["path"], bin_path.as_str());
        assert_eq!(c["stdin"]["name"], "testnet");
        assert_eq!(c["stdin"]["cniVersion"], "1.0.0");
    }
    assert!(calls[0]["stdin"].get("prevResult").is_none());
    assert_eq!(
        calls[1]["stdin"]["prevResult"]["ips"][0]["address"],
        "10.1.2.10/24"
    );
    assert_eq!(
        calls[2]["stdin"]["prevResult"]["ips"][0]["address"],
        "10.1.2.11/24"
    );
    assert!(calls[0]["stdin"].get("runtimeConfig").is_none());
    assert_eq!(
        calls[1]["stdin"]["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    );
    let add_b_stdin = calls[1]["stdin"].clone();

    // A new caller (a daemon restart) with the config gone: the cache has it.
    let cache_file = f.cache.join("testnet-pod1.json");
    assert!(cache_file.exists());
    let cni = f.cni();
    let cached = cni.cached("pod1").await.unwrap();
    assert_eq!(cached.len(), 1);
    assert_eq!(cached[0].cni_result().unwrap(), res);
    cni.check("pod1", Path::new("/proc/1/ns/net"))
        .await
        .unwrap();
    let calls = f.calls();
    assert_eq!(who(&calls), ["CHECK a", "CHECK b", "CHECK c"]);
    assert!(calls.iter().all(|c| c["stdin"]["prevResult"] == res.raw));

    cni.del("pod1", Some(Path::new("/run/netns/berth-no-such-netns")))
        .await
        .unwrap();
    let calls = f.calls();
    assert_eq!(who(&calls), ["DEL c", "DEL b", "DEL a"]);
    for c in &calls {
        assert_eq!(c["netns"], "", "a missing netns is passed as empty");
        assert_eq!(c["args"], "IgnoreUnknown=1;K8S_POD_NAME=web");
        assert_eq!(c["stdin"]["prevResult"], res.raw);
    }
    let mut del_b = calls[1]["stdin"].clone();
    del_b["prevResult"] = add_b_stdin["prevResult"].clone();
    assert_eq!(
        del_b, add_b_stdin,
        "DEL gets ADD's config and runtimeConfig"
    );
    assert!(!cache_file.exists());

    // Idempotent: no record and no default network means nothing to run.
    cni.del("pod1", None).await.unwrap();
    assert!(f.calls().is_empty());
    let e = cni
        .check("pod1", Path::new("/proc/1/ns/net"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), CniErrorKind::NotFound);
}

#[tokio::test]
async fn del_without_record_uses_the_default_network() {
    let f = Fixture::new();
    f.ok_plugin("a", 10);
    f.ok_plugin("b", 11);
    let list =
        json!({"cniVersion": "1.0.0", "name": "dflt", "plugins": [{"type": "a"}, {"type": "b"}]});
    std::fs::write(f.conf.join("10-dflt.conflist"), list.to_string()).unwrap();
    // A live namespace: its path is passed on.
    f.cni()
        .del("pod2", Some(Path::new("/proc/self/ns/net")))
        .await
        .unwrap();
    let calls = f.calls();
    assert_eq!(who(&calls), ["DEL b", "DEL a"]);
    assert_eq!(calls[0]["netns"], "/proc/self/ns/net");
    assert_eq!(calls[0]["args"], "IgnoreUnknown=1");
    assert!(calls[0]["stdin"].get("prevResult").is_none());
}

#[tokio::test]
async fn failed_add_is_undone_and_reports_the_plugin_error() {
    let f = Fixture::new();
    f.ok_plugin("a", 10);
    f.plugin(
        "bad",
        r#"[ "$CNI_COMMAND" = ADD ] && { echo '{"cniVersion":"1.0.0","code":7,"msg":"boom","details":"no luck"}'; exit 1; }
exit 0"#,
    );
    f.ok_plugin("c", 12);
    let net = net(json!([{"type": "a"}, {"type": "bad"}, {"type": "c"}]));
    let e = f.cni().add(&net, &attachment("pod3")).await.unwrap_err();
    match &e {
        CniError::Plugin {
            plugin,
            command,
            code,
            msg,
            details,
        } => {
            assert_eq!((plugin.as_str(), *command, *code), ("bad", "ADD", 7));
            assert_eq!((msg.as_str(), details.as_str()), ("boom", "no luck"));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(
        e.to_string(),
        "cni plugin bad failed on ADD (code 7): boom: no luck"
    );
    assert_eq!(
        who(&f.calls()),
        ["ADD a", "ADD bad", "DEL c", "DEL bad", "DEL a"]
    );
    assert!(f.cni().cached("pod3").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_del_keeps_the_record_for_a_retry() {
    let f = Fixture::new();
    f.ok_plugin("a", 10);
    let net = net(json!([{"type": "a"}]));
    f.cni().add(&net, &attachment("pod4")).await.unwrap();
    f.plugin("a", "echo 'panic: broken' >&2\nexit 2");
    let e = f.cni().del("pod4", None).await.unwrap_err();
    assert!(matches!(e, CniError::Exit { .. }), "{e:?}");
    assert!(e.to_string().contains("panic: broken"), "{e}");
    assert_eq!(f.cni().cached("pod4").await.unwrap().len(), 1);
    f.ok_plugin("a", 10);
    f.cni().del("pod4", None).await.unwrap();
    assert!(f.cni().cached("pod4").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_record_left_by_a_crash_mid_add_still_drives_del() {
    let f = Fixture::new();
    f.ok_plugin("a", 10);
    f.plugin(
        "hang",
        "[ \"$CNI_COMMAND\" = ADD ] && exec sleep 30\nexit 0",
    );
    let net = net(json!([{"type": "a"}, {"type": "hang", "capabilities": {"bandwidth": true}}]));
    let mut cni = f.cni();
    cni.plugin_timeout = Duration::from_secs(2);
    // Timing out is an error like any other: DEL undoes it at once.
    let e = cni.add(&net, &attachment("pod5")).await.unwrap_err();
    assert!(matches!(e, CniError::Timeout { .. }), "{e:?}");
    assert_eq!(who(&f.calls()), ["ADD a", "ADD hang", "DEL hang", "DEL a"]);
    assert!(cni.cached("pod5").await.unwrap().is_empty());

    // A pending record (what a crash during ADD leaves) keeps its arguments.
    let att6 = attachment("pod6");
    let mut add = Box::pin(cni.add(&net, &att6));
    // Drop the ADD (as a crash would end it) once the second plugin runs.
    while f.logged() < 2 {
        tokio::select! {
            r = &mut add => panic!("ADD ended early: {r:?}"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    drop(add);
    let cached = cni.cached("pod6").await.unwrap();
    assert_eq!(cached.len(), 1);
    assert!(cached[0].result.is_none());
    f.calls();
    let e = cni
        .check("pod6", Path::new("/proc/1/ns/net"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), CniErrorKind::NotFound);
    f.cni().del("pod6", None).await.unwrap();
    let calls = f.calls();
    assert_eq!(who(&calls), ["DEL hang", "DEL a"]);
    assert_eq!(
        calls[0]["stdin"]["runtimeConfig"],
        json!({"bandwidth": {"ingressRate": 1000}})
    );
    assert!(calls[0]["stdin"].get("prevResult").is_none());
}

#[tokio::test]
async fn missing_plugins_and_bad_arguments_fail_before_anything_runs() {
    let f = Fixture::new();
    f.ok_plugin("a", 10);
    let net = net(json!([{"type": "a"}, {"type": "nosuch"}]));
    let e = f.cni().add(&net, &attachment("pod7")).await.unwrap_err();
    assert_eq!(e.kind(), CniErrorKind::FailedPrecondition);
    assert!(e.to_string().contains(&f.bin.display().to_string()), "{e}");
    let ok = self::net(json!([{"type": "a"}]));
    for (id, ifname, netns) in [
        ("../x", "eth0", "/proc/1/ns/net"),
        ("pod8", "", "/proc/1/ns/net"),
        ("pod8", "eth0", "relative"),
    ] {
        let mut att = Attachment::new(id, netns);
        att.ifname = ifname.into();
        let e = f.cni().add(&ok, &att).await.unwrap_err();
        assert_eq!(e.kind(), CniErrorKind::InvalidArgument, "{e}");
    }
    assert!(f.calls().is_empty());
    assert!(!f.cache.exists() || std::fs::read_dir(&f.cache).unwrap().next().is_none());
}

#[tokio::test]
async fn check_is_skipped_when_disabled_or_before_0_4() {
    let f = Fixture::new();
    f.ok_plugin("a", 10);
    for (version, disable) in [("1.0.0", true), ("0.3.1", false)] {
        let net = NetworkConfigList::from_value(
            json!({"cniVersion": version, "name": "n", "disableCheck": disable, "plugins": [{"type": "a"}]}),
            Path::new(""),
        )
        .unwrap();
        f.cni().add(&net, &attachment("pod9")).await.unwrap();
        f.calls();
        f.cni()
            .check("pod9", Path::new("/proc/1/ns/net"))
            .await
            .unwrap();
        assert!(f.calls().is_empty());
        f.cni().del("pod9", None).await.unwrap();
        let calls = f.calls();
        // 0.3.x DEL gets no prevResult.
        assert_eq!(
            calls[0]["stdin"].get("prevResult").is_some(),
            version == "1.0.0"
        );
    }
}

#[tokio::test]
async fn plugin_versions_asks_the_plugin() {
    let f = Fixture::new();
    f.plugin(
        "v",
        r#"echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'"#,
    );
    assert_eq!(
        f.cni().plugin_versions("v").await.unwrap(),
        ["0.4.0", "1.0.0"]
    );
}

#[tokio::test]
async fn readiness_follows_the_config_directory() {
    let f = Fixture::new();
    f.ok_plugin("a", 10);
    let state = NetworkState::start(
        f.conf.clone(),
        vec![f.bin.clone()],
        false,
        Duration::from_millis(50),
    );
    let reason = state.ready().unwrap_err();
    assert!(reason.contains("no cni network config found"), "{reason}");
    let mut rx = state.subscribe();

    let list = json!({"cniVersion": "1.0.0", "name": "late", "plugins": [{"type": "a"}]});
    std::fs::write(f.conf.join("10-late.conflist"), list.to_string()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|r| r.is_ok()))
        .await
        .expect("the watcher saw the new config")
        .unwrap();
    assert_eq!(state.ready().unwrap().name, "late");

    // A plugin removed later makes the network not ready again.
    std::fs::remove_file(f.bin.join("a")).unwrap();
    let now = state.rescan().await;
    assert!(now.unwrap_err().contains("\"a\" not found"));
    assert!(state.ready().is_err());
}
