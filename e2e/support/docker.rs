//! Driving berthd's Docker API with the real `docker` CLI
//! (`/usr/local/bin/docker`) and with `bollard`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::catalog;
use crate::support::daemon::Berthd;
use crate::support::registry::TestRegistry;
use crate::support::short_tempdir;

/// The docker CLI the machines have.
pub const DOCKER: &str = "/usr/local/bin/docker";

/// A registry with busybox pushed, a daemon, and a docker CLI pointed at
/// the daemon's Docker socket (with its own empty client config dir).
pub struct DockerEnv {
    pub reg: TestRegistry,
    pub d: Berthd,
    /// busybox in the registry, by name (`127.0.0.1:<port>/test/busybox:v1`).
    pub busybox: String,
    /// `DOCKER_CONFIG` for the CLI, so the host's ~/.docker is never read.
    pub cli_config: tempfile::TempDir,
}

/// What one CLI run gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with the output unless the command exited 0.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "docker failed: {self:?}");
        self
    }
    /// stdout without its trailing newline.
    pub fn out(&self) -> &str {
        self.stdout.trim_end_matches('\n')
    }
}

impl DockerEnv {
    /// Starts a registry with busybox and a daemon (`extra` daemon YAML), and
    /// pulls busybox through CRI: the image Docker then runs is the one the
    /// kubelet's side pulled (`docker pull` has tests of its own).
    pub async fn new(extra: &str) -> DockerEnv {
        Self::pulled(Path::new(crate::support::daemon::BERTHD), extra).await
    }

    /// [`DockerEnv::new`] with another daemon binary.
    pub async fn pulled(binary: &Path, extra: &str) -> DockerEnv {
        let env = DockerEnv::with_binary(binary, extra).await;
        let mut images = env.d.image_client().await;
        crate::support::cri::pull_ok(&mut images, &env.busybox).await;
        env
    }

    /// [`DockerEnv::new`] without pulling the image.
    pub async fn without_pull(extra: &str) -> DockerEnv {
        Self::with_binary(Path::new(crate::support::daemon::BERTHD), extra).await
    }

    /// [`DockerEnv::without_pull`] with another daemon binary (an older
    /// release's, for upgrade tests).
    pub async fn with_binary(binary: &Path, extra: &str) -> DockerEnv {
        let reg = TestRegistry::start().await;
        let d =
            Berthd::start_binary(binary, &format!("{}{extra}", reg.insecure_yaml()), "debug").await;
        let busybox = catalog::busybox()
            .label("berth.e2e", "docker")
            .build()
            .push_tag(&reg, "test/busybox", "v1")
            .await;
        DockerEnv {
            reg,
            d,
            busybox,
            cli_config: short_tempdir("dc"),
        }
    }

    /// `unix://<docker socket>`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.d.docker_socket().display())
    }

    /// A docker CLI command for this daemon (stdin null unless changed).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.cli_config.path())
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .stdin(Stdio::null());
        c
    }

    /// Runs the CLI to its end.
    pub fn docker(&self, args: &[&str]) -> Run {
        run(self.command(args))
    }

    /// Runs the CLI with `input` on its stdin.
    pub fn docker_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        use std::io::Write;
        let mut c = self.command(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn docker");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("write stdin");
        drop(stdin);
        to_run(child.wait_with_output().expect("wait docker"))
    }

    /// A bollard client on the daemon's socket, speaking the API version
    /// berth advertises (bollard's own default is newer).
    pub fn bollard(&self) -> bollard::Docker {
        let (major, minor) = berth::docker::API_VERSION
            .split_once('.')
            .expect("major.minor");
        bollard::Docker::connect_with_unix(
            &self.d.docker_socket().to_string_lossy(),
            60,
            &bollard::ClientVersion {
                major_version: major.parse().expect("major"),
                minor_version: minor.parse().expect("minor"),
            },
        )
        .expect("bollard client")
    }

    pub fn docker_socket(&self) -> PathBuf {
        self.d.docker_socket()
    }

    pub fn dir(&self) -> &Path {
        self.d.dir()
    }
}

/// Runs a command to its end and collects its output.
pub fn run(mut c: Command) -> Run {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    to_run(c.output().expect("run docker"))
}

fn to_run(o: Output) -> Run {
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

impl Drop for DockerEnv {
    /// Ends the daemon, then whatever it left running (containers, mounts).
    fn drop(&mut self) {
        self.d.kill9();
        crate::support::host::scrub(self.d.dir());
    }
}
