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
        std::fs::read_to_string(&self.pid_path)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for PreparedExec {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.process_path);
        let _ = std::fs::remove_file(&self.pid_path);
    }
}

/// Where a container's monitor serves attach, if the path fits a unix
/// socket address (108 bytes with the terminating NUL).
/// Long paths are bound and reached through `/proc/self/fd`
/// ([`crate::monitor::attach::socket_path`]), so every container has one.
pub fn attach_socket_path(container_dir: &Path) -> Option<PathBuf> {
    Some(container_dir.join("attach.sock"))
}

impl Engine {
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
        let n = new_id();
        let process_path = rec.dir.join(format!("exec-{}.json", &n[..12]));
        let pid_path = rec.dir.join(format!("exec-{}.pid", &n[..12]));
        std::fs::write(
            &process_path,
            serde_json::to_vec(&process).expect("process serialises"),
        )
        .map_err(|e| Error::internal(format!("failed to write {}: {e}", process_path.display())))?;
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
