//! What the daemon tells a new monitor (`MonitorConfig`, written as
//! `pb::MonitorConfig` to `monitor.pb`; the `monitor.json` of v0 monitors
//! is still read) and the monitor's answer on its stdout (`Ready`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::log::Rotation;
use super::proto::{self, bytes_path, path_bytes, pb, Protocol};

/// What the daemon tells a monitor: `pb::MonitorConfig` in `monitor.pb`
/// (v0 monitors read it as JSON from `monitor.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MonitorConfig {
    pub id: String,
    pub bundle: PathBuf,
    /// The OCI runtime binary.
    pub runtime: PathBuf,
    /// The runtime's `--root` (its state directory).
    pub runtime_root: PathBuf,
    /// Global flags for the runtime, e.g. `--systemd-cgroup`.
    #[serde(default)]
    pub runtime_flags: Vec<String>,
    /// The runtime's own log (JSON lines), read for error messages.
    pub runtime_log: PathBuf,
    pub pid_file: PathBuf,
    pub exit_file: PathBuf,
    /// The CRI log file; `None` discards output.
    pub log_path: Option<PathBuf>,
    /// Rotation of the log file (Docker's `max-size`/`max-file`); absent in
    /// configs of older berths and for CRI containers (the kubelet rotates
    /// their logs itself): the file only grows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_rotation: Option<Rotation>,
    /// Files holding the cgroup's OOM-kill counter (v1 `memory.oom_control`,
    /// v2 `memory.events`), read after the exit.
    #[serde(default)]
    pub oom_files: Vec<PathBuf>,
    /// Where the monitor serves attach, resizes and log reopens (see
    /// [`attach`]); `None`: no socket.
    #[serde(default)]
    pub attach_socket: Option<PathBuf>,
    /// Keep a pipe to the container's stdin for attach clients.
    #[serde(default)]
    pub stdin: bool,
    /// Close the container's stdin when the first stdin client leaves.
    #[serde(default)]
    pub stdin_once: bool,
    /// The spec asks for a terminal (`process.terminal`): the runtime makes
    /// a pty and hands its master over a console socket.
    #[serde(default)]
    pub terminal: bool,
}

impl MonitorConfig {
    /// Writes the config for a new monitor as `monitor.pb` in its bundle;
    /// a v0 `monitor.json` left by an older berthd goes, so the bundle is
    /// v1 from now on. Returns the file's path.
    pub fn write(&self) -> std::io::Result<PathBuf> {
        use prost::Message;
        let path = self.bundle.join(proto::CONFIG_V1);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, pb::MonitorConfig::from(self).encode_to_vec())?;
        std::fs::rename(&tmp, &path)?;
        match std::fs::remove_file(self.bundle.join(proto::CONFIG_V0)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(path)
    }

    /// Reads a config file in the format its name says (`*.json`: v0).
    pub fn read(path: &Path) -> std::io::Result<MonitorConfig> {
        use prost::Message;
        let b = std::fs::read(path)?;
        match path.extension() {
            Some(e) if e == "json" => serde_json::from_slice(&b).map_err(proto::invalid),
            _ => pb::MonitorConfig::decode(b.as_slice())
                .map(MonitorConfig::from)
                .map_err(proto::invalid),
        }
    }

    /// The config the monitor of bundle `dir` was started with, for a new
    /// monitor of the same container. A v0 config is carried over to v1:
    /// its exit file and socket get their v1 names (a v1 monitor must not
    /// write protobuf under a v0 name) and the v0 leftovers go.
    pub fn for_respawn(dir: &Path) -> std::io::Result<MonitorConfig> {
        if Protocol::of_bundle(dir) == Protocol::V1 {
            return MonitorConfig::read(&dir.join(proto::CONFIG_V1));
        }
        let mut cfg = MonitorConfig::read(&dir.join(proto::CONFIG_V0))?;
        if Protocol::of_exit_file(&cfg.exit_file) == Protocol::V0 {
            let _ = std::fs::remove_file(&cfg.exit_file);
            cfg.exit_file.set_extension("pb");
        }
        if let Some(s) = cfg.attach_socket.as_mut() {
            if Protocol::of_socket(s) == Protocol::V0 {
                let _ = std::fs::remove_file(&*s);
                s.set_file_name(proto::SOCKET_V1);
            }
        }
        Ok(cfg)
    }
}

impl From<&MonitorConfig> for pb::MonitorConfig {
    fn from(c: &MonitorConfig) -> Self {
        pb::MonitorConfig {
            id: c.id.clone(),
            bundle: path_bytes(&c.bundle),
            runtime: path_bytes(&c.runtime),
            runtime_root: path_bytes(&c.runtime_root),
            runtime_flags: c.runtime_flags.clone(),
            runtime_log: path_bytes(&c.runtime_log),
            pid_file: path_bytes(&c.pid_file),
            exit_file: path_bytes(&c.exit_file),
            log_path: c.log_path.as_deref().map(path_bytes),
            log_rotation: c.log_rotation.map(|r| pb::LogRotation {
                max_size: r.max_size,
                max_files: r.max_files,
            }),
            oom_files: c.oom_files.iter().map(|p| path_bytes(p)).collect(),
            socket: c.attach_socket.as_deref().map(path_bytes),
            stdin: c.stdin,
            stdin_once: c.stdin_once,
            terminal: c.terminal,
        }
    }
}

impl From<pb::MonitorConfig> for MonitorConfig {
    fn from(c: pb::MonitorConfig) -> Self {
        MonitorConfig {
            id: c.id,
            bundle: bytes_path(c.bundle),
            runtime: bytes_path(c.runtime),
            runtime_root: bytes_path(c.runtime_root),
            runtime_flags: c.runtime_flags,
            runtime_log: bytes_path(c.runtime_log),
            pid_file: bytes_path(c.pid_file),
            exit_file: bytes_path(c.exit_file),
            log_path: c.log_path.map(bytes_path),
            log_rotation: c.log_rotation.map(|r| Rotation {
                max_size: r.max_size,
                max_files: r.max_files,
            }),
            oom_files: c.oom_files.into_iter().map(bytes_path).collect(),
            attach_socket: c.socket.map(bytes_path),
            stdin: c.stdin,
            stdin_once: c.stdin_once,
            terminal: c.terminal,
        }
    }
}

/// The monitor's one message to the daemon, on its stdout (sent as a
/// length-delimited `pb::Ready`).
#[derive(Debug, Clone, PartialEq)]
pub enum Ready {
    Pid(i32),
    Error(String),
}

impl From<Ready> for pb::Ready {
    fn from(r: Ready) -> Self {
        let result = match r {
            Ready::Pid(p) => pb::ready::Result::Pid(p),
            Ready::Error(e) => pb::ready::Result::Error(e),
        };
        pb::Ready {
            version: proto::VERSION,
            result: Some(result),
        }
    }
}

impl TryFrom<pb::Ready> for Ready {
    type Error = String;

    fn try_from(r: pb::Ready) -> Result<Self, String> {
        if r.version != proto::VERSION {
            return Err(format!("the monitor speaks protocol version {}", r.version));
        }
        match r.result {
            Some(pb::ready::Result::Pid(p)) => Ok(Ready::Pid(p)),
            Some(pb::ready::Result::Error(e)) => Ok(Ready::Error(e)),
            None => Err("the monitor's answer has neither a pid nor an error".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_of_an_older_berth_has_no_rotation() {
        let old = r#"{"id":"c","bundle":"/b","runtime":"/usr/bin/crun","runtime_root":"/r",
            "runtime_log":"/l","pid_file":"/p","exit_file":"/e","log_path":"/x/0.log"}"#;
        let cfg: MonitorConfig = serde_json::from_str(old).unwrap();
        assert_eq!(cfg.log_rotation, None);
        // Without rotation the config is written as before.
        let back = serde_json::to_string(&cfg).unwrap();
        assert!(!back.contains("log_rotation"), "{back}");
        let rotating = MonitorConfig {
            log_rotation: Some(Rotation {
                max_size: 10,
                max_files: 2,
            }),
            ..cfg
        };
        let again: MonitorConfig =
            serde_json::from_str(&serde_json::to_string(&rotating).unwrap()).unwrap();
        assert_eq!(again.log_rotation, rotating.log_rotation);
    }

    fn sample(dir: &Path) -> MonitorConfig {
        MonitorConfig {
            id: "c1".into(),
            bundle: dir.to_path_buf(),
            runtime: "/usr/bin/crun".into(),
            runtime_root: "/run/crun".into(),
            runtime_flags: vec!["--systemd-cgroup".into()],
            runtime_log: dir.join("runtime.log"),
            pid_file: dir.join("pid"),
            exit_file: dir.join(proto::EXIT_V1),
            log_path: Some("/var/log/pods/p/c/0.log".into()),
            log_rotation: Some(Rotation {
                max_size: 1 << 20,
                max_files: 3,
            }),
            oom_files: vec!["/sys/fs/cgroup/x/memory.events".into()],
            attach_socket: Some(dir.join(proto::SOCKET_V1)),
            stdin: true,
            stdin_once: true,
            terminal: true,
        }
    }

    #[test]
    fn the_config_travels_as_protobuf() {
        let d = tempfile::tempdir().unwrap();
        let cfg = sample(d.path());
        std::fs::write(d.path().join(proto::CONFIG_V0), "{}").unwrap();
        let path = cfg.write().unwrap();
        assert_eq!(path, d.path().join(proto::CONFIG_V1));
        assert!(!d.path().join(proto::CONFIG_V0).exists(), "v0 config gone");
        assert_eq!(MonitorConfig::read(&path).unwrap(), cfg);
        // Unset options stay unset.
        let bare = MonitorConfig {
            log_path: None,
            log_rotation: None,
            attach_socket: None,
            oom_files: vec![],
            runtime_flags: vec![],
            ..cfg
        };
        bare.write().unwrap();
        assert_eq!(MonitorConfig::read(&path).unwrap(), bare);
        assert_eq!(MonitorConfig::for_respawn(d.path()).unwrap(), bare);
    }

    /// A container created by a berthd before `proto/` is restarted with a
    /// v1 monitor: its config is taken over, the v1 names replace the v0
    /// ones (a v1 monitor writing protobuf to `exit.json` would be misread)
    /// and the v0 leftovers go.
    #[test]
    fn a_v0_config_is_carried_over_for_a_new_monitor() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().display().to_string();
        let old = format!(
            r#"{{"id":"c","bundle":"{dir}","runtime":"/usr/bin/crun","runtime_root":"/r",
            "runtime_flags":[],"runtime_log":"{dir}/runtime.log","pid_file":"{dir}/pid",
            "exit_file":"{dir}/exit.json","log_path":null,"oom_files":[],
            "attach_socket":"{dir}/attach.sock","stdin":true,"stdin_once":false,"terminal":false}}"#
        );
        std::fs::write(d.path().join(proto::CONFIG_V0), old).unwrap();
        std::fs::write(d.path().join(proto::EXIT_V0), "{}").unwrap();
        std::fs::write(d.path().join(proto::SOCKET_V0), "").unwrap();
        assert_eq!(Protocol::of_bundle(d.path()), Protocol::V0);
        let cfg = MonitorConfig::for_respawn(d.path()).unwrap();
        assert_eq!(cfg.exit_file, d.path().join(proto::EXIT_V1));
        assert_eq!(cfg.attach_socket, Some(d.path().join(proto::SOCKET_V1)));
        assert!(cfg.stdin && !cfg.terminal);
        assert!(!d.path().join(proto::EXIT_V0).exists());
        assert!(!d.path().join(proto::SOCKET_V0).exists());
        cfg.write().unwrap();
        assert_eq!(Protocol::of_bundle(d.path()), Protocol::V1);
    }

    #[test]
    fn ready_round_trips_and_checks_the_version() {
        use prost::Message;
        for r in [Ready::Pid(42), Ready::Error("no such image".into())] {
            let wire = pb::Ready::from(r.clone()).encode_to_vec();
            let back = pb::Ready::decode(wire.as_slice()).unwrap();
            assert_eq!(Ready::try_from(back).unwrap(), r);
        }
        let later = pb::Ready {
            version: 2,
            result: Some(pb::ready::Result::Pid(1)),
        };
        assert!(Ready::try_from(later).unwrap_err().contains("version 2"));
        let empty = pb::Ready {
            version: proto::VERSION,
            result: None,
        };
        assert!(Ready::try_from(empty).is_err());
    }
}
