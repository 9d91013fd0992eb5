//! Debian's containerd 1.6 (`/usr/bin/containerd`) with its own root,
//! state, socket and config, as the baseline of the side-by-side
//! benchmark: its CRI plugin reads CNI configs from a given dir, runs pods
//! through the runc v2 shim with a given OCI runtime binary, and takes its
//! sandbox (pause) image from the local registry over plain HTTP.
//!
//! containerd 1.6 also writes outside its root and state whatever its
//! config says; [`Containerd::stop`] undoes those:
//! * shim sockets under `/run/containerd/s/` (the shim's fixed socket dir);
//! * libcni's result cache dirs under `/var/lib/cni`;
//! * the parent cgroup `/k8s.io` (in every hierarchy) of containers whose
//!   pod has no cgroup parent.
//!
//! Inside its own dirs it leaves the pods' shm and netns bind mounts and the
//! containers' rootfs mounts when it is stopped with pods still there; the
//! stop detaches every mount below its dir.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{StatusRequest, VersionRequest};
use nix::sys::signal::Signal;
use tonic::transport::Channel;

use super::{host, log_file_pair, read_text, short_tempdir, ChildGuard};

/// The binary of Debian's `containerd` package.
pub const CONTAINERD: &str = "/usr/bin/containerd";
/// The shim the `io.containerd.runc.v2` runtime type starts, one per pod.
pub const SHIM: &str = "containerd-shim-runc-v2";
/// Where containerd 1.6's shims put their sockets, whatever the config says.
const SHIM_SOCKET_DIR: &str = "/run/containerd/s";
/// Dirs containerd may create outside its own (see the module docs),
/// deepest first; the stop removes those it created, once empty.
const OUTSIDE_DIRS: &[&str] = &[
    "/run/containerd/s",
    "/run/containerd",
    "/var/lib/cni/results",
    "/var/lib/cni",
];
/// The cgroup containerd puts containers under when the pod has no parent.
const DEFAULT_CGROUP: &str = "k8s.io";
/// How long start-up may take (a safety net, not a timing assertion).
const START_LIMIT: Duration = Duration::from_secs(60);

/// What the CRI plugin is configured with.
pub struct ContainerdConfig<'a> {
    /// `cni.conf_dir`.
    pub cni_conf_dir: &'a Path,
    /// `cni.bin_dir`.
    pub cni_bin_dir: &'a str,
    /// `sandbox_image`, pulled on the first RunPodSandbox if not present.
    pub sandbox_image: &'a str,
    /// `127.0.0.1:PORT` of a plain-HTTP registry (a mirror entry for it).
    pub registry: &'a str,
    /// `BinaryName` of the runc v2 shim: `/usr/sbin/runc` or `/usr/bin/crun`.
    pub runtime_binary: &'a str,
}

/// A running containerd; stopped (and its leftovers removed) on drop.
pub struct Containerd {
    child: Option<ChildGuard>,
    log: PathBuf,
    outside_before: Vec<(PathBuf, bool)>,
    shim_sockets_before: BTreeSet<PathBuf>,
    cgroups_before: Vec<(PathBuf, bool)>,
    // Dropped last, after the process is gone.
    dir: tempfile::TempDir,
}

/// Whether Debian's containerd is installed.
pub fn available() -> bool {
    Path::new(CONTAINERD).is_file()
}

/// The config.toml (version 2) for a containerd living in `dir`.
pub fn config_toml(dir: &Path, c: &ContainerdConfig) -> String {
    let d = dir.display();
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"

[grpc]
  address = "{d}/c.sock"

[ttrpc]
  address = "{d}/c.sock.ttrpc"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d}/opt"
  [{cri}]
    sandbox_image = "{sandbox}"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    # The VM lacks CAP_SYS_RESOURCE (berth clamps the same way).
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_selinux = false
    [{cri}.cni]
      bin_dir = "{bin}"
      conf_dir = "{conf}"
      max_conf_num = 1
    [{cri}.containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [{cri}.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [{cri}.containerd.runtimes.runc.options]
          BinaryName = "{runtime}"
          Root = "{d}/runtime-root"
          SystemdCgroup = false
    [{cri}.registry.mirrors."{reg}"]
      endpoint = ["http://{reg}"]
"#,
        sandbox = c.sandbox_image,
        bin = c.cni_bin_dir,
        conf = c.cni_conf_dir.display(),
        runtime = c.runtime_binary,
        reg = c.registry,
    )
}

fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

fn shim_sockets() -> BTreeSet<PathBuf> {
    std::fs::read_dir(SHIM_SOCKET_DIR)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// `/sys/fs/cgroup/<hierarchy>/k8s.io` for every mounted hierarchy.
fn default_cgroups() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path().join(DEFAULT_CGROUP))
                .collect()
        })
        .unwrap_or_default()
}

impl Containerd {
    /// Starts containerd and waits until its CRI plugin answers `Status`
    /// with the runtime and the network ready.
    pub async fn start(c: &ContainerdConfig<'_>) -> Result<Containerd, String> {
        let dir = short_tempdir("ctd");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, config_toml(dir.path(), c))
            .map_err(|e| format!("write {}: {e}", config.display()))?;
        let log = dir.path().join("containerd.log");
        let mut d = Containerd {
            child: None,
            log,
            outside_before: OUTSIDE_DIRS
                .iter()
                .map(|p| (PathBuf::from(p), exists(Path::new(p))))
                .collect(),
            shim_sockets_before: shim_sockets(),
            cgroups_before: default_cgroups()
                .into_iter()
                .map(|p| {
                    let e = exists(&p);
                    (p, e)
                })
                .collect(),
            dir,
        };
        let (out, err) = log_file_pair(&d.log);
        let child = Command::new(CONTAINERD)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawn {CONTAINERD}: {e}"))?;
        d.child = Some(ChildGuard::new(child));
        d.wait_ready().await?;
        Ok(d)
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        while start.elapsed() < START_LIMIT {
            if let Some(status) = self.child.as_mut().and_then(ChildGuard::try_wait) {
                return Err(format!("containerd exited during start-up ({status})"));
            }
            if self.socket().exists() {
                match self.ready().await {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e,
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "containerd not ready after {START_LIMIT:?}: {last}"
        ))
    }

    async fn ready(&self) -> Result<(), String> {
        let ch = super::cri::connect_unix(self.socket())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut rc = RuntimeServiceClient::new(ch);
        rc.version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .map_err(|e| format!("Version: {e}"))?;
        let status = rc
            .status(StatusRequest { verbose: false })
            .await
            .map_err(|e| format!("Status: {e}"))?
            .into_inner()
            .status
            .unwrap_or_default();
        if status.conditions.len() >= 2 && status.conditions.iter().all(|c| c.status) {
            Ok(())
        } else {
            Err(format!("Status: {:?}", status.conditions))
        }
    }

    /// The dir holding config, root, state, sockets and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CRI (and containerd API) socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    /// containerd's pid (panics when it is not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("containerd running").pid()
    }

    /// Everything containerd wrote to stdout and stderr.
    pub fn log(&self) -> String {
        read_text(&self.log)
    }

    /// A CRI RuntimeService client over the socket.
    pub async fn runtime_client(&self) -> RuntimeServiceClient<Channel> {
        let ch = super::cri::connect_unix(self.socket())
            .await
            .expect("connect to containerd's socket");
        RuntimeServiceClient::new(ch).max_decoding_message_size(64 << 20)
    }

    /// A CRI ImageService client over the socket.
    pub async fn image_client(&self) -> ImageServiceClient<Channel> {
        let ch = super::cri::connect_unix(self.socket())
            .await
            .expect("connect to containerd's socket");
        ImageServiceClient::new(ch).max_decoding_message_size(64 << 20)
    }

    /// SIGTERM (SIGKILL after 30 s), then removes what containerd and its
    /// shims left: containers still known to the OCI runtime, shims, mounts
    /// below its dir, its shim sockets, and the dirs and cgroups outside its
    /// dir that it created. Returns what could not be removed.
    pub fn stop(&mut self) -> Vec<String> {
        if let Some(mut child) = self.child.take() {
            child.signal(Signal::SIGTERM);
            if child.wait_timeout(Duration::from_secs(30)).is_none() {
                child.kill();
            }
        }
        let mut problems = Vec::new();
        self.remove_containers();
        // Shims name the socket (below the dir) on their command line;
        // scrub kills them and detaches every mount below the dir.
        host::scrub(self.dir.path());
        for m in host::mounts_under(self.dir.path()) {
            problems.push(format!("mount left: {}", m.mount_point.display()));
        }
        for s in shim_sockets().difference(&self.shim_sockets_before) {
            if let Err(e) = std::fs::remove_file(s) {
                problems.push(format!("remove shim socket {}: {e}", s.display()));
            }
        }
        for (p, existed) in self.outside_before.iter().chain(&self.cgroups_before) {
            if !existed && exists(p) {
                if let Err(e) = std::fs::remove_dir(p) {
                    problems.push(format!("remove {} (containerd made it): {e}", p.display()));
                }
            }
        }
        problems
    }

    /// Kills and deletes every container in the shim's OCI runtime root
    /// (`<dir>/runtime-root/<namespace>/<id>`); nothing after a clean run.
    fn remove_containers(&self) {
        let roots = std::fs::read_dir(self.dir.path().join("runtime-root"))
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_else(|_| Vec::<PathBuf>::new());
        let binary = runtime_binary_of(&read_text(&self.dir.path().join("config.toml")));
        for root in roots {
            let ids: Vec<String> = std::fs::read_dir(&root)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            for id in ids {
                for args in [
                    vec!["kill", "--all", &id, "KILL"],
                    vec!["delete", "--force", &id],
                ] {
                    let _ = Command::new(&binary)
                        .arg("--root")
                        .arg(&root)
                        .args(&args)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
    }
}

/// The `BinaryName` in a config written by [`config_toml`].
fn runtime_binary_of(config: &str) -> String {
    config
        .lines()
        .find_map(|l| l.trim().strip_prefix("BinaryName = "))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "runc".into())
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            for p in self.stop() {
                eprintln!("containerd cleanup: {p}");
            }
        }
    }
}
