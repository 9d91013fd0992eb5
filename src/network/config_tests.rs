//! Config loading, capability filtering, CNI_ARGS, result parsing and the
//! pod attachment — no plugin runs here.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::attach::{cni_args, plugin_config};
use super::config::scan;
use super::*;

/// A bin dir holding executable stand-ins for `names`.
fn bin_dir(root: &Path, names: &[&str]) -> PathBuf {
    let dir = root.join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    for n in names {
        let p = dir.join(n);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn list(name: &str, types: &[&str]) -> String {
    let plugins: Vec<Value> = types.iter().map(|t| json!({"type": t})).collect();
    json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins}).to_string()
}

#[test]
fn first_valid_file_in_lexical_order_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let bins = vec![bin_dir(tmp.path(), &["bridge", "portmap"])];
    let conf = tmp.path().join("net.d");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(conf.join("20-b.conflist"), list("b", &["bridge"])).unwrap();
    std::fs::write(
        conf.join("10-a.conflist"),
        list("a", &["bridge", "portmap"]),
    )
    .unwrap();
    std::fs::write(conf.join("05-notes.txt"), "not a config").unwrap();
    std::fs::create_dir(conf.join("01-dir.conflist")).unwrap();
    let net = load_default(&conf, &bins).unwrap().unwrap();
    assert_eq!(net.name, "a");
    assert_eq!(net.cni_version, "1.0.0");
    assert_eq!(
        net.plugin_types().collect::<Vec<_>>(),
        ["bridge", "portmap"]
    );
    assert_eq!(net.path, conf.join("10-a.conflist"));
}

#[test]
fn invalid_files_are_skipped_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let bins = vec![bin_dir(tmp.path(), &["bridge"]), tmp.path().join("nobin")];
    let conf = tmp.path().join("net.d");
    std::fs::create_dir(&conf).unwrap();
    let files = [
        ("00-garbage.conflist", "{not json".to_string()),
        (
            "01-noname.conflist",
            json!({"cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]}).to_string(),
        ),
        (
            "02-noversion.conflist",
            json!({"name": "x", "plugins": [{"type": "bridge"}]}).to_string(),
        ),
        (
            "03-oldversion.conflist",
            json!({"name": "x", "cniVersion": "0.2.0", "plugins": [{"type": "bridge"}]})
                .to_string(),
        ),
        (
            "04-empty.conflist",
            json!({"name": "x", "cniVersion": "1.0.0", "plugins": []}).to_string(),
        ),
        (
            "05-notype.conflist",
            json!({"name": "x", "cniVersion": "1.0.0", "plugins": [{}]}).to_string(),
        ),
        ("06-badtype.conflist", list("x", &["../bridge"])),
        ("07-badname.conflist", list("../x", &["bridge"])),
        ("08-missing.conflist", list("x", &["bridge", "nosuch"])),
        ("09-good.conflist", list("good", &["bridge"])),
    ];
    for (f, body) in &files {
        std::fs::write(conf.join(f), body).unwrap();
    }
    let s = scan(&conf, &bins).unwrap();
    assert_eq!(s.chosen.unwrap().name, "good");
    assert_eq!(s.skipped.len(), 9, "{:#?}", s.skipped);
    let missing = &s.skipped[8];
    assert!(missing.contains("08-missing.conflist"), "{missing}");
    assert!(missing.contains("\"nosuch\" not found in"), "{missing}");
    assert!(
        missing.contains(&bins[1].display().to_string()),
        "{missing}"
    );

    std::fs::remove_file(conf.join("09-good.conflist")).unwrap();
    let s = scan(&conf, &bins).unwrap();
    assert!(s.chosen.is_none());
    let reason = s.reason(&conf);
    assert!(
        reason.starts_with("no valid cni network config in"),
        "{reason}"
    );
    assert!(load_default(&conf, &bins).unwrap().is_none());
}

#[test]
fn builtin_network_stands_in_only_for_a_dir_without_files() {
    let tmp = tempfile::tempdir().unwrap();
    let all = ["bridge", "host-local", "portmap", "firewall", "bandwidth"];
    let bins = vec![bin_dir(tmp.path(), &all)];
    let conf = tmp.path().join("net.d");

    // Missing and empty directories get the built-in network...
    let net = load_default_or_builtin(&conf, &bins, true)
        .unwrap()
        .unwrap();
    assert_eq!(net.name, "berth");
    assert_eq!(net.path, Path::new(config::BUILTIN_PATH));
    assert_eq!(net.plugins[0]["bridge"], "berth0");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(conf.join("README.txt"), "not a config").unwrap();
    assert_eq!(
        load_default_or_builtin(&conf, &bins, true)
            .unwrap()
            .unwrap()
            .name,
        "berth"
    );
    // ...but not when it is switched off.
    assert!(load_default_or_builtin(&conf, &bins, false)
        .unwrap()
        .is_none());

    // A broken file keeps the node not ready rather than switching networks.
    std::fs::write(conf.join("10-typo.conflist"), "{").unwrap();
    let s = scan(&conf, &bins).unwrap().or_builtin(&bins);
    assert!(s.chosen.is_none());
    assert!(
        s.reason(&conf).contains("10-typo.conflist"),
        "{:?}",
        s.skipped
    );

    // A user's file takes over.
    std::fs::remove_file(conf.join("10-typo.conflist")).unwrap();
    std::fs::write(conf.join("20-mine.conflist"), list("mine", &["bridge"])).unwrap();
    let net = load_default_or_builtin(&conf, &bins, true)
        .unwrap()
        .unwrap();
    assert_eq!(net.name, "mine");
}

#[test]
fn builtin_network_needs_its_plugins() {
    let tmp = tempfile::tempdir().unwrap();
    let bins = vec![bin_dir(tmp.path(), &["bridge", "host-local"])];
    let s = scan(&tmp.path().join("absent"), &bins)
        .unwrap()
        .or_builtin(&bins);
    assert!(s.chosen.is_none());
    let reason = s.reason(tmp.path());
    assert!(
        reason.contains("built-in network") && reason.contains("portmap"),
        "{reason}"
    );
}

#[test]
fn missing_or_empty_dir_has_no_default() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("absent");
    assert!(load_default(&missing, &[]).unwrap().is_none());
    let s = scan(tmp.path(), &[]).unwrap();
    assert!(s.chosen.is_none());
    assert!(s
        .reason(tmp.path())
        .starts_with("no cni network config found in"));
}

#[test]
fn single_plugin_files_become_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let bins = vec![bin_dir(tmp.path(), &["bridge"])];
    let conf = tmp.path().join("net.d");
    std::fs::create_dir(&conf).unwrap();
    let single = json!({"cniVersion": "0.4.0", "name": "one", "type": "bridge", "bridge": "b0"});
    std::fs::write(conf.join("10-one.conf"), single.to_string()).unwrap();
    let net = load_default(&conf, &bins).unwrap().unwrap();
    assert_eq!(net.name, "one");
    assert_eq!(net.cni_version, "0.4.0");
    assert_eq!(net.plugins, vec![single.clone()]);
    assert_eq!(net.raw["plugins"][0], single);

    // .json is read the same way; a .json holding a list is taken as a list.
    std::fs::remove_file(conf.join("10-one.conf")).unwrap();
    std::fs::write(conf.join("10-list.json"), list("lst", &["bridge"])).unwrap();
    assert_eq!(load_default(&conf, &bins).unwrap().unwrap().name, "lst");
}

#[test]
fn plugins_must_be_executable_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = bin_dir(tmp.path(), &["good"]);
    std::fs::write(dir.join("plain"), "").unwrap();
    std::fs::create_dir(dir.join("adir")).unwrap();
    let bins = vec![tmp.path().join("empty"), dir.clone()];
    assert_eq!(find_plugin("good", &bins).unwrap(), dir.join("good"));
    for bad in ["plain", "adir", "absent", "", "../bin/good"] {
        let e = find_plugin(bad, &bins).unwrap_err();
        assert_eq!(e.kind(), CniErrorKind::FailedPrecondition);
        let msg = e.to_string();
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
        assert!(
            msg.contains(&tmp.path().join("empty").display().to_string()),
            "{msg}"
        );
    }
}

#[test]
fn shipped_default_config_is_valid_for_debian_plugins() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/cni");
    let net = NetworkConfigList::from_file(&dir.join("10-berth.conflist")).unwrap();
    assert_eq!(net.name, "berth");
    assert_eq!(net.cni_version, "1.0.0");
    assert_eq!(
        net.plugin_types().collect::<Vec<_>>(),
        ["bridge", "portmap", "firewall", "bandwidth"]
    );
    let bins = [PathBuf::from("/usr/lib/cni")];
    if bins[0].join("bridge").exists() {
        assert_eq!(load_default(&dir, &bins).unwrap().unwrap(), net);
    }
}

#[test]
fn runtime_config_holds_only_declared_capabilities() {
    let net = NetworkConfigList::from_value(
        json!({"cniVersion": "1.0.0", "name": "n", "plugins": [
            {"type": "bridge", "name": "ignored", "cniVersion": "0.1.0"},
            {"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}},
            {"type": "bandwidth", "capabilities": {"bandwidth": true, "dns": true},
             "runtimeConfig": {"stale": 1}},
        ]}),
        Path::new(""),
    )
    .unwrap();
    let mut caps = Map::new();
    caps.insert(
        "portMappings".into(),
        json!([{"hostPort": 80, "containerPort": 8080}]),
    );
    caps.insert("bandwidth".into(), json!({"ingressRate": 1000}));
    caps.insert("ipRanges".into(), json!([]));
    let prev = json!({"cniVersion": "1.0.0", "ips": []});

    let first = plugin_config(&net, 0, None, &caps);
    assert_eq!(first["name"], "n");
    assert_eq!(first["cniVersion"], "1.0.0");
    assert!(first.get("prevResult").is_none());
    assert!(first.get("runtimeConfig").is_none());

    let pm = plugin_config(&net, 1, Some(&prev), &caps);
    assert_eq!(pm["prevResult"], prev);
    assert_eq!(
        pm["runtimeConfig"],
        json!({"portMappings": caps["portMappings"]})
    );

    let bw = plugin_config(&net, 2, Some(&prev), &caps);
    assert_eq!(
        bw["runtimeConfig"],
        json!({"bandwidth": {"ingressRate": 1000}})
    );
    // With nothing to give, a plugin's own runtimeConfig is left alone.
    let bw = plugin_config(&net, 2, None, &Map::new());
    assert_eq!(bw["runtimeConfig"], json!({"stale": 1}));
}

#[test]
fn cni_args_carry_ignore_unknown() {
    let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(cni_args(&[]).unwrap(), "IgnoreUnknown=1");
    assert_eq!(
        cni_args(&[
            kv("K8S_POD_NAME", "web"),
            kv("K8S_POD_NAMESPACE", "default")
        ])
        .unwrap(),
        "IgnoreUnknown=1;K8S_POD_NAME=web;K8S_POD_NAMESPACE=default"
    );
    assert_eq!(
        cni_args(&[kv("IgnoreUnknown", "true"), kv("A", "b")]).unwrap(),
        "IgnoreUnknown=true;A=b"
    );
    for bad in [kv("A;B", "c"), kv("A=B", "c"), kv("A", "b;c"), kv("", "x")] {
        let e = cni_args(&[bad]).unwrap_err();
        assert_eq!(e.kind(), CniErrorKind::InvalidArgument);
    }
}

#[test]
fn named_networks_load_by_file_name_with_plugins_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let bins = vec![bin_dir(tmp.path(), &["bridge", "portmap"])];
    let dir = tmp.path().join("nets");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(load_named(&dir, "absent", &bins).unwrap().is_none());
    std::fs::write(
        dir.join("mynet.conflist"),
        list("mynet", &["bridge", "portmap"]),
    )
    .unwrap();
    let net = load_named(&dir, "mynet", &bins).unwrap().unwrap();
    assert_eq!(net.name, "mynet");
    assert_eq!(
        net.plugin_types().collect::<Vec<_>>(),
        ["bridge", "portmap"]
    );
    // The file's own name must agree with the network it holds.
    std::fs::write(dir.join("other.conflist"), list("mynet", &["bridge"])).unwrap();
    let e = load_named(&dir, "other", &bins).unwrap_err();
    assert!(e.to_string().contains("not \"other\""), "{e}");
    std::fs::write(dir.join("fw.conflist"), list("fw", &["bridge", "firewall"])).unwrap();
    assert!(matches!(
        load_named(&dir, "fw", &bins),
        Err(CniError::PluginNotFound { .. })
    ));
    assert!(matches!(
        load_named(&dir, "../x", &bins),
        Err(CniError::InvalidArgument { .. })
    ));
}
