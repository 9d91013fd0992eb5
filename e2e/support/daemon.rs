//! A real `berthd` in a temp dir, reached over its CRI unix socket.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::VersionRequest;
use nix::sys::signal::Signal;
use tonic::transport::Channel;

use super::{log_file_pair, read_text, short_tempdir, ChildGuard};

/// The daemon binary cargo built for this test or benchmark.
pub const BERTHD: &str = env!("CARGO_BIN_EXE_berthd");

/// The berthd a benchmark measures: `BERTH_BENCH_BERTHD` (e.g.
/// `target/dist/berthd` from `config/build.sh`, what a node runs, with its
/// static berth-monitor beside it), else this build's.
pub fn bench_berthd() -> PathBuf {
    std::env::var_os("BERTH_BENCH_BERTHD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BERTHD))
}

/// How long start-up may take before the harness gives up (debug builds).
const START_LIMIT: Duration = Duration::from_secs(60);

/// A running `berthd` with its own root, state and sockets; killed on drop.
///
/// Dropping it fails the test if the daemon's log shows a panic (the panic
/// hook's `panicked at …` line, or Rust's default one): every panic that a
/// request, stream or container can reach is a bug, even one the catch-panic
/// layer answered.
pub struct Berthd {
    /// The daemon binary (this build's, or an older release's).
    binary: PathBuf,
    config: PathBuf,
    /// `RUST_LOG` for the daemon.
    log_filter: String,
    log: PathBuf,
    child: Option<ChildGuard>,
    // Dropped last, after the process is gone.
    dir: tempfile::TempDir,
}

/// The YAML config for a daemon living in `dir`, plus caller YAML (`extra`,
/// e.g. a `registries:` section). Unless `extra` has its own `cni:` section,
/// the daemon's CNI config dir is `dir/cni` (see [`LOOPBACK_CONFLIST`]).
pub fn config_yaml(dir: &Path, extra: &str) -> String {
    let d = dir.display();
    // A caller's `docker:` keys join the default section, unless they name
    // their own socket (then the caller's section is the whole of it).
    let (docker_extra, extra) = take_section(extra, "docker:");
    // `docker search` of a plain term asks the configured index: in tests a
    // loopback port nothing listens on, never the public index.
    let search = if docker_extra.contains("search_index:") {
        ""
    } else {
        "  search_index: \"http://127.0.0.1:9\"\n"
    };
    let docker = if docker_extra
        .lines()
        .any(|l| l.trim_start().starts_with("socket:"))
    {
        format!("docker:\n{search}{docker_extra}")
    } else {
        format!("docker:\n  socket: {d}/state/docker.sock\n{search}{docker_extra}")
    };
    let extra = extra.as_str();
    let cni = if has_cni_section(extra) {
        String::new()
    } else {
        format!("cni:\n  conf_dir: {d}/cni\n")
    };
    // A caller's `cri:` keys join the daemon's own `cri:` section.
    let (cri_extra, extra) = take_section(extra, "cri:");
    format!(
        "root: {d}/root\n\
         state: {d}/state\n\
         cri:\n  socket: {d}/state/berth.sock\n  streaming_address: \"127.0.0.1:0\"\n\
         {cri_extra}\
         {docker}\
         metrics:\n  address: \"127.0.0.1:0\"\n\
         {cni}{extra}"
    )
}

/// Splits the indented body of a top-level `header` section out of `yaml`.
fn take_section(yaml: &str, header: &str) -> (String, String) {
    let (mut body, mut rest, mut inside) = (String::new(), String::new(), false);
    for line in yaml.lines() {
        if line == header {
            inside = true;
            continue;
        }
        if inside && (line.starts_with(' ') || line.is_empty()) {
            body.push_str(line);
            body.push('\n');
            continue;
        }
        inside = false;
        rest.push_str(line);
        rest.push('\n');
    }
    (body, rest)
}

/// A CNI network of the real `loopback` plugin only: pods get a working
/// network namespace (lo up, no address beyond loopback) without touching the
/// host's bridges or iptables. Tests of pod networking bring their own config.
pub const LOOPBACK_CONFLIST: &str =
    r#"{"cniVersion": "1.0.0", "name": "berth-e2e-lo", "plugins": [{"type": "loopback"}]}"#;

fn has_cni_section(extra: &str) -> bool {
    extra.lines().any(|l| l.starts_with("cni:"))
}

impl Berthd {
    /// Starts a daemon with the standard config plus `extra` YAML and waits
    /// until its CRI socket answers `Version`.
    pub async fn start(extra: &str) -> Berthd {
        Self::start_logging(extra, "debug").await
    }

    /// Like [`Berthd::start`] with `RUST_LOG` set to `filter` (a benchmark
    /// runs the daemon at `info`, as it would run on a node).
    pub async fn start_logging(extra: &str, filter: &str) -> Berthd {
        Self::start_binary(Path::new(BERTHD), extra, filter).await
    }

    /// Like [`Berthd::start_logging`] with another daemon binary (an older
    /// release's, for upgrade tests).
    pub async fn start_binary(binary: &Path, extra: &str, filter: &str) -> Berthd {
        let dir = short_tempdir("bd");
        let config = dir.path().join("berth.yaml");
        std::fs::write(&config, config_yaml(dir.path(), extra)).expect("write berthd config");
        if !has_cni_section(extra) {
            let cni = dir.path().join("cni");
            std::fs::create_dir_all(&cni).expect("create cni conf dir");
            std::fs::write(cni.join("10-loopback.conflist"), LOOPBACK_CONFLIST)
                .expect("write loopback conflist");
        }
        let mut d = Berthd {
            binary: binary.to_path_buf(),
            config,
            log_filter: filter.to_string(),
            log: dir.path().join("berthd.log"),
            child: None,
            dir,
        };
        d.spawn_and_wait().await;
        d
    }

    async fn spawn_and_wait(&mut self) {
        let (out, err) = log_file_pair(&self.log);
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", &self.log_filter)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn berthd");
        self.child = Some(ChildGuard::new(child));
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().and_then(ChildGuard::try_wait) {
                panic!(
                    "berthd exited during start-up ({status}); log:\n{}",
                    self.log()
                );
            }
            if self.socket().exists() {
                if let Ok(mut rt) = self.try_runtime_client().await {
                    let req = VersionRequest {
                        version: "v1".into(),
                    };
                    if rt.version(req).await.is_ok() {
                        return;
                    }
                }
            }
            assert!(
                start.elapsed() < START_LIMIT,
                "berthd did not answer Version; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The temp dir holding config, root, state and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `root:` — persistent state (blobs, snapshots, metadata).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `state:` — runtime state.
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The CRI socket.
    pub fn socket(&self) -> PathBuf {
        self.state().join("berth.sock")
    }

    /// The Docker API socket.
    pub fn docker_socket(&self) -> PathBuf {
        self.state().join("docker.sock")
    }

    /// The config file this daemon was started with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The daemon's pid (panics when it is not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("berthd running").pid()
    }

    /// The daemon's pid, if it is running.
    pub fn pid_if_running(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    /// Everything the daemon wrote to stdout and stderr, across restarts.
    pub fn log(&self) -> String {
        read_text(&self.log)
    }

    /// `<root>/blobs/sha256/<hex>` for a `sha256:<hex>` digest.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root().join("blobs/sha256").join(super::hex_of(digest))
    }

    /// `<root>/snapshots/<chain-id hex>`.
    pub fn snapshot_dir(&self, chain_id: &str) -> PathBuf {
        self.root().join("snapshots").join(super::hex_of(chain_id))
    }

    /// Names of the entries under `<root>/snapshots` (empty if missing).
    pub fn snapshot_entries(&self) -> std::collections::BTreeSet<String> {
        std::fs::read_dir(self.root().join("snapshots"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        super::cri::connect_unix(self.socket()).await
    }

    async fn try_runtime_client(
        &self,
    ) -> Result<RuntimeServiceClient<Channel>, tonic::transport::Error> {
        Ok(RuntimeServiceClient::new(self.channel().await?))
    }

    /// A channel to the CRI socket, or why there is none (the daemon is down).
    pub async fn try_cri_channel(&self) -> Result<Channel, tonic::transport::Error> {
        self.channel().await
    }

    /// A channel to the CRI socket (for clients of any service).
    pub async fn cri_channel(&self) -> Channel {
        self.channel().await.expect("connect to CRI socket")
    }

    /// A CRI ImageService client over the unix socket.
    pub async fn image_client(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await.expect("connect to CRI socket"))
            .max_decoding_message_size(64 << 20)
    }

    /// A CRI RuntimeService client over the unix socket.
    pub async fn runtime_client(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await.expect("connect to CRI socket"))
            .max_decoding_message_size(64 << 20)
    }

    /// SIGKILL the daemon and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// SIGTERM, then wait (up to 60 s) for the daemon to exit; panics if it
    /// does not. Returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("berthd running");
        child.signal(Signal::SIGTERM);
        match child.wait_timeout(Duration::from_secs(60)) {
            Some(status) => status,
            None => panic!("berthd ignored SIGTERM for 60 s; log:\n{}", self.log()),
        }
    }

    /// Starts the daemon again with the same config, root and state; stops
    /// it first (SIGTERM) if it is still running.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(status.success(), "berthd exit on SIGTERM: {status}");
        }
        self.spawn_and_wait().await;
    }

    /// Stops the daemon (SIGTERM) and starts `binary` in its place, with the
    /// same config, root and state: an upgrade.
    pub async fn replace_binary(&mut self, binary: &Path) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(status.success(), "berthd exit on SIGTERM: {status}");
        }
        self.binary = binary.to_path_buf();
        self.spawn_and_wait().await;
    }

    /// Whether the daemon process is still alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().is_none(),
            None => false,
        }
    }
}

/// What a panic leaves in a berthd log.
pub const PANIC_MARK: &str = "panicked at ";

impl Drop for Berthd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let log = self.log();
        if let Some(line) = log.lines().find(|l| l.contains(PANIC_MARK)) {
            panic!("berthd panicked during the test: {line}\nlog:\n{log}");
        }
    }
}

/// Runs `berthd --config <config>` to completion (for start-up failures):
/// returns the exit status, or `None` if it was still running after
/// `limit` (then it is killed), and its stderr.
pub fn run_to_exit(config: &str, limit: Duration) -> (Option<ExitStatus>, String) {
    let dir = short_tempdir("bx");
    let path = dir.path().join("berth.yaml");
    std::fs::write(&path, config).expect("write config");
    let err_path = dir.path().join("stderr.log");
    let err = std::fs::File::create(&err_path).expect("create stderr log");
    let child = Command::new(BERTHD)
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn berthd");
    let mut guard = ChildGuard::new(child);
    let status = guard.wait_timeout(limit);
    drop(guard);
    (status, read_text(&err_path))
}
