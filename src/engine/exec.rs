//! Streaming exec and port-forward targets: the engine checks the container
//! or pod and prepares what the streaming server runs; the streaming server
//! owns the process's stdio.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::oci::OciRuntime;
use super::records::{new_id, PodState};
use super::{Engine, Error};

/// A `crun exec` ready to be started: its process file is written and is
/// removed again when this is dropped.
pub struct PreparedExec {
    pub container_id: String,
    pub(crate) runtime: OciRuntime,
    pub(crate) process_path: PathBuf,
    /// Where the runtime writes the exec'd process's pid.
    pub pid_path: PathBuf,
}

impl PreparedExec {
    /// The runtime command; with a console socket the process gets a terminal
    /// whose master end the runtime sends over that socket.
    pub fn command(&self, console_socket: Option<&Path>) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.runtime.binary);
        c.arg("--root")
            .arg(&self.runtime.root)
            .args(&self.runtime.flags)
            .arg("exec")
            .arg("--process")
            .arg(&self.process_path)
            .arg("--pid-file")
            .arg(&self.pid_path);
        if let Some(sock) = console_socket {
            c.arg("--console-socket").arg(sock);
        }
        c.arg(&self.container_id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// The exec'd process, once the runtime has written its pid file.
    pub fn pid(&self) -> Option<i32> {
        read_pid(&self.pid_path)
    }
}

/// The pid in a runtime's pid file, once it is written.
pub fn read_pid(pid_file: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

impl Drop for PreparedExec {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.process_path);
        let _ = std::fs::remove_file(&self.pid_path);
    }
}

/// Where a container's monitor serves attach: `monitor.sock`, or the
/// `attach.sock` of a monitor an older berthd started (the name tells the
/// client the protocol, see [`crate::monitor::proto`]).
/// Long paths are bound and reached through `/proc/self/fd`
/// ([`crate::monitor::attach::socket_path`]), so every container has one.
pub fn attach_socket_path(container_dir: &Path) -> Option<PathBuf> {
    use crate::monitor::proto::Protocol;
    Some(Protocol::of_bundle(container_dir).socket_in(container_dir))
}

/// What an exec changes in the container's process beyond its args (Docker's
/// exec options); the default keeps the container's own.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// `KEY=value` entries that replace or extend the container's env.
    pub env: Vec<String>,
    /// The working directory; `None` keeps the container's.
    pub cwd: Option<String>,
    /// `user[:group]`, names or numbers, resolved in the container's
    /// `/etc/passwd` and `/etc/group`; `None` keeps the container's user.
    pub user: Option<String>,
    /// Every capability the host has.
    pub privileged: bool,
}

impl Engine {
    /// The attach socket of container `id`, created or running: Docker
    /// attaches before it starts a container, and the monitor serves the
    /// socket from create on.
    pub fn attach_socket_early(&self, id: &str) -> Result<PathBuf, Error> {
        let rec = self
            .refreshed(id)?
            .ok_or_else(|| Error::NotFound(format!("container {id} not found")))?;
        if rec.state == super::records::ContainerState::Exited {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        attach_socket_path(&rec.dir)
            .filter(|p| p.exists())
            .ok_or_else(|| {
                Error::FailedPrecondition(format!("container {id} has no attach socket"))
            })
    }

    /// The attach socket of running container `id`.
    pub fn attach_socket(&self, id: &str) -> Result<PathBuf, Error> {
        let rec = self.running(id)?;
        attach_socket_path(&rec.dir)
            .filter(|p| p.exists())
            .ok_or_else(|| {
                Error::FailedPrecondition(format!("container {id} has no attach socket"))
            })
    }

    /// Checks that `id` is a running container and `cmd` is runnable in it.
    pub fn check_exec(&self, id: &str, cmd: &[String]) -> Result<(), Error> {
        self.running(id)?;
        if cmd.is_empty() {
            return Err(Error::InvalidArgument("exec needs a command".into()));
        }
        Ok(())
    }

    /// Writes the process spec of an exec of `cmd` in container `id`: the
    /// container's own process (user, env, cwd, capabilities) with new args;
    /// a terminal starts at `size` (width, height) when given.
    pub fn prepare_exec(
        &self,
        id: &str,
        cmd: Vec<String>,
        tty: bool,
        size: Option<(u16, u16)>,
    ) -> Result<PreparedExec, Error> {
        self.prepare_exec_with(id, cmd, tty, size, &ExecOptions::default())
    }

    /// [`Engine::prepare_exec`] with env, working dir, user and privilege
    /// of the exec's own.
    pub fn prepare_exec_with(
        &self,
        id: &str,
        cmd: Vec<String>,
        tty: bool,
        size: Option<(u16, u16)>,
        opts: &ExecOptions,
    ) -> Result<PreparedExec, Error> {
        self.check_exec(id, &cmd)?;
        let rec = self.container(id)?;
        let spec = oci_spec::runtime::Spec::load(rec.dir.join("config.json"))
            .map_err(|e| Error::internal(format!("failed to read the spec of {id}: {e}")))?;
        let mut process = spec
            .process()
            .clone()
            .ok_or_else(|| Error::internal(format!("the spec of {id} has no process")))?;
        process.set_args(Some(cmd)).set_terminal(Some(tty));
        let console = match size {
            Some((width, height)) if tty => oci_spec::runtime::BoxBuilder::default()
                .width(u64::from(width))
                .height(u64::from(height))
                .build()
                .ok(),
            _ => None,
        };
        process.set_console_size(console);
        if !opts.env.is_empty() {
            let env = merge_env(process.env().clone().unwrap_or_default(), &opts.env);
            process.set_env(Some(env));
        }
        if let Some(cwd) = opts.cwd.as_ref().filter(|c| !c.is_empty()) {
            if !cwd.starts_with('/') {
                return Err(Error::InvalidArgument(format!(
                    "the working directory {cwd:?} is not an absolute path"
                )));
            }
            process.set_cwd(PathBuf::from(cwd));
        }
        if let Some(user) = opts.user.as_ref().filter(|u| !u.is_empty()) {
            let request = crate::runtime::user::UserRequest {
                user: user.clone(),
                merge_image_groups: true,
                ..Default::default()
            };
            let resolved = crate::runtime::user::resolve_user(&rec.rootfs(), &request)
                .map_err(|e| Error::InvalidArgument(format!("exec as {user:?}: {e}")))?;
            let u = oci_spec::runtime::UserBuilder::default()
                .uid(resolved.uid)
                .gid(resolved.gid)
                .additional_gids(resolved.additional_gids)
                .build()
                .map_err(|e| Error::internal(format!("bad exec user: {e}")))?;
            process.set_user(u);
        }
        if opts.privileged {
            let caps = crate::runtime::caps::container_capabilities(
                true,
                &crate::runtime::caps::CapabilityRequest {
                    add: &[],
                    drop: &[],
                    ambient: &[],
                },
                &self.host.capabilities,
            )
            .map_err(|e| Error::internal(format!("privileged exec: {e}")))?;
            process.set_capabilities(Some(caps));
        }
        let n = new_id();
        let process_path = rec.dir.join(format!("exec-{}.json", &n[..12]));
        let pid_path = rec.dir.join(format!("exec-{}.pid", &n[..12]));
        std::fs::write(
            &process_path,
            serde_json::to_vec(&process).expect("process serialises"),
        )
        .map_err(|e| Error::io(format!("failed to write {}", process_path.display()), e))?;
        Ok(PreparedExec {
            container_id: id.to_string(),
            runtime: self.oci(&rec.runtime_handler)?.clone(),
            process_path,
            pid_path,
        })
    }

    /// The network namespace of a ready pod (None: the pod uses the host's).
    pub fn port_forward_netns(&self, pod_id: &str) -> Result<Option<PathBuf>, Error> {
        let pod = self.pod(pod_id)?;
        if pod.state != PodState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {pod_id} is not ready"
            )));
        }
        Ok(pod.netns)
    }
}

/// `base` with each `KEY=value` of `extra` replacing the entry of the same
/// key or appended.
fn merge_env(mut base: Vec<String>, extra: &[String]) -> Vec<String> {
    for e in extra {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        match base
            .iter_mut()
            .find(|b| b.split_once('=').map_or(b.as_str(), |(k, _)| k) == key)
        {
            Some(b) => b.clone_from(e),
            None => base.push(e.clone()),
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_env_replaces_and_extends() {
        let base = vec!["PATH=/bin".to_string(), "X=0".to_string()];
        let got = merge_env(base, &["X=1".to_string(), "Y=2".to_string()]);
        assert_eq!(got, ["PATH=/bin", "X=1", "Y=2"]);
    }
}
