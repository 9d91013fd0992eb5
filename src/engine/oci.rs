//! The OCI runtime binary (crun, runc, …) driven through its command line.
//! `create` is done by the monitor, which must own the container's stdio;
//! everything else is done here.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::Error;

/// One OCI runtime: its binary and its state directory.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    pub binary: PathBuf,
    pub root: PathBuf,
    /// Global flags before the subcommand (`--systemd-cgroup` with the systemd driver).
    pub flags: Vec<String>,
}

/// Output of a finished command.
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
    pub timed_out: bool,
}

impl OciRuntime {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root).args(&self.flags);
        c.stdin(Stdio::null());
        c.kill_on_drop(true);
        c
    }

    async fn run(&self, what: String, args: &[&str]) -> Result<(), Error> {
        let out = self
            .cmd()
            .args(args)
            .output()
            .await
            .map_err(|e| Error::io(format!("failed to run {}", self.binary.display()), e))?;
        if out.status.success() {
            return Ok(());
        }
        Err(Error::Runtime {
            what,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }

    /// Runs a subcommand that only needs to succeed (`pause`, `resume`).
    pub async fn run_simple(&self, what: String, args: &[&str]) -> Result<(), Error> {
        self.run(what, args).await
    }

    /// Starts a created container.
    pub async fn start(&self, id: &str) -> Result<(), Error> {
        self.run(format!("start container {id}"), &["start", id])
            .await
    }

    /// Sends a signal to the container's init (`all` = every process in it).
    pub async fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), Error> {
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, signal]);
        self.run(format!("signal container {id} with {signal}"), &args)
            .await
    }

    /// Deletes the runtime's state of a container (force: kill it first).
    pub async fn delete(&self, id: &str) -> Result<(), Error> {
        match self
            .run(format!("delete container {id}"), &["delete", "--force", id])
            .await
        {
            Err(Error::Runtime { message, .. })
                if message.contains("does not exist") || message.contains("not found") =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Whether the runtime still keeps state of container `id` (its
    /// directory under `--root`): a container whose process died without a
    /// `delete` still has its state and its cgroup.
    pub fn has_state(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }

    /// The runtime's status of a container (`created`, `running`,
    /// `stopped`…), `None` when it does not know it.
    pub async fn status(&self, id: &str) -> Option<String> {
        let out = self.cmd().args(["state", id]).output().await.ok()?;
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.get("status")?.as_str().map(str::to_string)
    }

    /// Applies new resources (`crun update --resources FILE`).
    pub async fn update(&self, id: &str, resources_json: &Path) -> Result<(), Error> {
        let file = resources_json.to_string_lossy().into_owned();
        self.run(
            format!("update resources of container {id}"),
            &["update", "--resources", &file, id],
        )
        .await
    }

    /// Runs a command inside the container and collects its output.
    /// With a timeout the exec'd process is killed when it runs out.
    pub async fn exec_sync(
        &self,
        id: &str,
        process_json: &Path,
        pid_file: &Path,
        timeout: Option<Duration>,
    ) -> Result<Output, Error> {
        let mut c = self.cmd();
        c.arg("exec")
            .arg("--process")
            .arg(process_json)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = c
            .spawn()
            .map_err(|e| Error::io(format!("failed to run {}", self.binary.display()), e))?;
        let wait = child.wait_with_output();
        tokio::pin!(wait);
        let res = match timeout {
            Some(t) => match tokio::time::timeout(t, &mut wait).await {
                Ok(r) => r,
                Err(_) => {
                    // The runtime waits for the process; kill it, then let the
                    // runtime see it die, so it is gone (reaped) when we answer.
                    if let Some(pid) = std::fs::read_to_string(pid_file)
                        .ok()
                        .and_then(|s| s.trim().parse::<i32>().ok())
                    {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(5), &mut wait).await;
                    return Ok(Output {
                        stdout: vec![],
                        stderr: vec![],
                        exit_code: -1,
                        timed_out: true,
                    });
                }
            },
            None => wait.await,
        };
        let out = res.map_err(|e| Error::internal(format!("exec in {id}: {e}")))?;
        Ok(Output {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.status.code().unwrap_or(-1),
            timed_out: false,
        })
    }
}
