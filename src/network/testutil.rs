//! Test helpers: a directory of fake plugins (shell scripts that log how
//! they were called and act out a behaviour) and a caller over it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::*;

pub(crate) struct Fixture {
    _tmp: tempfile::TempDir,
    pub bin: PathBuf,
    pub conf: PathBuf,
    pub cache: PathBuf,
    pub log: PathBuf,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let p = |n: &str| {
            let d = tmp.path().join(n);
            std::fs::create_dir(&d).unwrap();
            d
        };
        Self {
            bin: p("bin"),
            conf: p("net.d"),
            cache: tmp.path().join("cache"),
            log: p("log"),
            _tmp: tmp,
        }
    }

    /// A plugin that logs its call, then acts out `behaviour` (shell).
    pub(crate) fn plugin(&self, name: &str, behaviour: &str) {
        let log = self.log.display();
        let script = format!(
            r#"#!/bin/sh
stdin=$(cat)
n=$(ls "{log}" | wc -l)
cat > "{log}/.tmp$$" <<EOF_
{{"plugin":"{name}","command":"$CNI_COMMAND","containerId":"$CNI_CONTAINERID","netns":"$CNI_NETNS","ifname":"$CNI_IFNAME","args":"$CNI_ARGS","path":"$CNI_PATH","stdin":$stdin}}
EOF_
mv "{log}/.tmp$$" "{log}/$(printf %03d "$n").json"
{behaviour}
"#
        );
        let path = self.bin.join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A plugin whose ADD result gives the pod address 10.1.2.`n`.
    pub(crate) fn ok_plugin(&self, name: &str, n: u8) {
        self.plugin(
            name,
            &format!(
                r#"[ "$CNI_COMMAND" = ADD ] && echo '{{"cniVersion":"1.0.0","interfaces":[{{"name":"eth0","sandbox":"'"$CNI_NETNS"'"}}],"ips":[{{"address":"10.1.2.{n}/24","gateway":"10.1.2.1","interface":0}}]}}'
exit 0"#
            ),
        );
    }

    pub(crate) fn cni(&self) -> Cni {
        Cni::new(
            self.conf.clone(),
            vec![self.conf.join("nothing-here"), self.bin.clone()],
            self.cache.clone(),
        )
    }

    /// How many calls are logged.
    pub(crate) fn logged(&self) -> usize {
        std::fs::read_dir(&self.log)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|e| e == "json")
            })
            .count()
    }

    /// The calls logged so far, in order; the log is emptied.
    pub(crate) fn calls(&self) -> Vec<Value> {
        let mut files: Vec<_> = std::fs::read_dir(&self.log)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                let v = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
                std::fs::remove_file(f).unwrap();
                v
            })
            .collect()
    }
}

pub(crate) fn net(plugins: Value) -> NetworkConfigList {
    NetworkConfigList::from_value(
        json!({"cniVersion": "1.0.0", "name": "testnet", "plugins": plugins}),
        Path::new(""),
    )
    .unwrap()
}

pub(crate) fn attachment(id: &str) -> Attachment {
    let mut att = Attachment::new(id, "/proc/1/ns/net");
    att.args.push(("K8S_POD_NAME".into(), "web".into()));
    let mut caps = Map::new();
    caps.insert(
        "portMappings".into(),
        json!([{"hostPort": 8080, "containerPort": 80}]),
    );
    caps.insert("bandwidth".into(), json!({"ingressRate": 1000}));
    att.capabilities = caps;
    att
}

pub(crate) fn who(calls: &[Value]) -> Vec<String> {
    calls
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["command"].as_str().unwrap(),
                c["plugin"].as_str().unwrap()
            )
        })
        .collect()
}
