//! Exec instances: a process to run in a container, made first and started
//! later (Docker's `POST /containers/{id}/exec` then `/exec/{id}/start`), or
//! made and started at once (CRI's streaming exec). The engine keeps them,
//! so `docker inspect` lists a container's running execs whichever door
//! started them and both doors publish Docker's `exec_create`,
//! `exec_start` and `exec_die`.
//!
//! ```text
//! create ──> created ──start──> running ──exit──> exited (exit code kept)
//! ```
//!
//! Instances outlive their process (Docker's CLI reads the exit code after
//! the stream ends); at most [`MAX_EXECS`] are kept, finished ones going
//! first, and a removed container's go with it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::exec::{ExecOptions, PreparedExec};
use super::process::{self, Outcome, ProcessIo, Watch};
use super::records::{new_id, now_nanos, ContainerRecord, ContainerState};
use super::{Engine, Error};
use crate::monitor::tty::PtyMaster;

/// How many exec instances are kept.
pub const MAX_EXECS: usize = 1024;
/// How long a resize waits for the exec's terminal (Docker waits 10 s).
const RESIZE_WAIT: Duration = Duration::from_secs(10);

/// What to run, and how.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub cmd: Vec<String>,
    pub options: ExecOptions,
    pub tty: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    /// Docker's detach keys, kept for inspect.
    pub detach_keys: String,
    /// The terminal's first size (width, height).
    pub size: Option<(u16, u16)>,
}

/// Where an instance is.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExecState {
    pub started: bool,
    pub running: bool,
    pub exit_code: Option<i32>,
    /// The process, once the runtime wrote its pid (0 before).
    pub pid: i32,
}

/// One exec instance.
pub struct ExecInstance {
    pub id: String,
    pub container_id: String,
    pub spec: ExecSpec,
    pub created: i64,
    state: Mutex<ExecState>,
    /// The terminal while the process runs.
    master: watch::Sender<Option<Arc<PtyMaster>>>,
}

impl ExecInstance {
    fn new(container_id: &str, spec: ExecSpec) -> Self {
        ExecInstance {
            id: new_id(),
            container_id: container_id.to_string(),
            spec,
            created: now_nanos(),
            state: Mutex::new(ExecState::default()),
            master: watch::channel(None).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, ExecState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where it is now.
    pub fn state(&self) -> ExecState {
        self.lock().clone()
    }

    /// Docker's event action: `exec_start: sh -c exit 7` (a space follows
    /// the entrypoint even without arguments, as in Docker).
    pub fn action(&self, verb: &str) -> String {
        let (entry, args) = self
            .spec
            .cmd
            .split_first()
            .map_or(("", &[][..]), |(e, a)| (e.as_str(), a));
        format!("{verb}: {entry} {}", args.join(" "))
    }
}

/// The engine's exec instances.
#[derive(Default)]
pub(crate) struct ExecInstances {
    map: Mutex<HashMap<String, Arc<ExecInstance>>>,
}

impl ExecInstances {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<ExecInstance>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds one; past [`MAX_EXECS`], those of removed containers go first,
    /// then finished ones, oldest first.
    fn insert(&self, exec: Arc<ExecInstance>, gone: impl Fn(&str) -> bool) {
        let mut map = self.lock();
        if map.len() >= MAX_EXECS {
            map.retain(|_, e| !gone(&e.container_id));
        }
        while map.len() >= MAX_EXECS {
            let oldest = map
                .values()
                .filter(|e| !e.lock().running)
                .min_by_key(|e| e.created)
                .map(|e| e.id.clone());
            match oldest {
                Some(id) => {
                    map.remove(&id);
                }
                None => break,
            }
        }
        map.insert(exec.id.clone(), exec);
    }

    fn get(&self, id: &str) -> Option<Arc<ExecInstance>> {
        self.lock().get(id).cloned()
    }

    /// The running instances of a container, oldest first.
    fn running_of(&self, container_id: &str) -> Vec<String> {
        let map = self.lock();
        let mut v: Vec<&Arc<ExecInstance>> = map
            .values()
            .filter(|e| e.container_id == container_id && e.lock().running)
            .collect();
        v.sort_by_key(|e| e.created);
        v.into_iter().map(|e| e.id.clone()).collect()
    }

    fn forget_container(&self, container_id: &str) {
        self.lock().retain(|_, e| e.container_id != container_id);
    }
}

/// A started instance whose process is ready to run (see [`Engine::start_exec`]).
pub struct StartedExec {
    pub exec: Arc<ExecInstance>,
    pub rec: ContainerRecord,
    prepared: PreparedExec,
}

impl Engine {
    /// A container that can take an exec: running and not paused.
    pub fn exec_target(&self, name_or_id: &str) -> Result<ContainerRecord, Error> {
        let found = self.find_container(name_or_id)?;
        let rec = self.refresh(found.clone())?.unwrap_or(found);
        if rec.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        if rec.paused {
            return Err(Error::FailedPrecondition(format!(
                "container {} is paused, unpause the container before exec",
                rec.id
            )));
        }
        Ok(rec)
    }

    /// Makes an exec instance in a running container and publishes
    /// `exec_create`.
    pub fn create_exec(
        &self,
        name_or_id: &str,
        spec: ExecSpec,
    ) -> Result<Arc<ExecInstance>, Error> {
        let rec = self.exec_target(name_or_id)?;
        if spec.cmd.is_empty() {
            return Err(Error::InvalidArgument("No exec command specified".into()));
        }
        let exec = Arc::new(ExecInstance::new(&rec.id, spec));
        self.execs
            .insert(exec.clone(), |c| self.container(c).is_err());
        self.emit_container(
            &exec.action("exec_create"),
            &rec,
            &[("execID", exec.id.as_str())],
        );
        Ok(exec)
    }

    /// An exec instance by id.
    pub fn exec_instance(&self, id: &str) -> Result<Arc<ExecInstance>, Error> {
        self.execs
            .get(id)
            .ok_or_else(|| Error::NotFound(format!("No such exec instance: {id}")))
    }

    /// The running exec instances of a container (inspect's `ExecIDs`).
    pub fn running_execs(&self, container_id: &str) -> Vec<String> {
        self.execs.running_of(container_id)
    }

    /// Forgets the exec instances of a removed container.
    pub(crate) fn forget_execs(&self, container_id: &str) {
        self.execs.forget_container(container_id);
    }

    /// Starts an instance: checks it has not run and its container can take
    /// it, writes its process spec and publishes `exec_start`. The process
    /// runs with [`Engine::run_exec`]; a failure here leaves the instance
    /// startable again. `size` (width, height) overrides the spec's.
    pub fn start_exec(
        &self,
        exec: &Arc<ExecInstance>,
        size: Option<(u16, u16)>,
    ) -> Result<StartedExec, Error> {
        {
            let mut st = exec.lock();
            if st.running {
                return Err(Error::FailedPrecondition(format!(
                    "Error: Exec command {} is already running",
                    exec.id
                )));
            }
            if st.started {
                return Err(Error::FailedPrecondition(format!(
                    "Error: Exec command {} has already run",
                    exec.id
                )));
            }
            st.started = true;
        }
        let prepared = self.exec_target(&exec.container_id).and_then(|rec| {
            let p = self.prepare_exec_with(
                &rec.id,
                exec.spec.cmd.clone(),
                exec.spec.tty,
                size.or(exec.spec.size),
                &exec.spec.options,
            )?;
            Ok((rec, p))
        });
        let (rec, prepared) = match prepared {
            Ok(v) => v,
            Err(e) => {
                exec.lock().started = false;
                return Err(e);
            }
        };
        exec.lock().running = true;
        self.emit_container(
            &exec.action("exec_start"),
            &rec,
            &[("execID", exec.id.as_str())],
        );
        Ok(StartedExec {
            exec: exec.clone(),
            rec,
            prepared,
        })
    }

    /// Runs a started instance's process to its end (see [`process::run`]):
    /// records the exit code (`-1` when killed by `cancel`, 126 when it could
    /// not run) and publishes `exec_die`, both before this returns.
    pub async fn run_exec(
        &self,
        started: StartedExec,
        io: ProcessIo,
        cancel: impl Future<Output = ()>,
    ) -> Outcome {
        let StartedExec {
            exec,
            rec,
            prepared,
        } = started;
        let (pid_tx, mut pid_rx) = watch::channel(0);
        let pid_exec = exec.clone();
        let pid_task = tokio::spawn(async move {
            if pid_rx.changed().await.is_ok() {
                pid_exec.lock().pid = *pid_rx.borrow();
            }
        });
        let watch = Watch {
            pid: Some(pid_tx),
            master: Some(exec.master.clone()),
        };
        let size = exec.spec.size;
        let outcome = process::run(&prepared, exec.spec.tty, size, io, watch, cancel).await;
        pid_task.abort();
        let code = match &outcome {
            Outcome::Exited(c) | Outcome::RuntimeFailed { code: c, .. } => *c,
            Outcome::Failed(msg) => {
                tracing::warn!(container = %rec.id, exec = %exec.id, "{msg}");
                126
            }
            Outcome::Cancelled => -1,
        };
        {
            let mut st = exec.lock();
            st.running = false;
            st.exit_code = Some(code);
        }
        exec.master.send_replace(None);
        let code_s = code.to_string();
        self.emit_container(
            "exec_die",
            &rec,
            &[("execID", exec.id.as_str()), ("exitCode", &code_s)],
        );
        outcome
    }

    /// Sizes an instance's terminal, waiting (as Docker does) for one still
    /// being made; an instance without a terminal ignores it.
    pub async fn resize_exec(&self, id: &str, width: u16, height: u16) -> Result<(), Error> {
        let exec = self.exec_instance(id)?;
        if !exec.spec.tty {
            return Ok(());
        }
        let mut rx = exec.master.subscribe();
        let e2 = exec.clone();
        let waited = tokio::time::timeout(RESIZE_WAIT, async move {
            loop {
                if let Some(m) = rx.borrow_and_update().clone() {
                    return Some(m);
                }
                if e2.lock().exit_code.is_some() {
                    return None;
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match waited {
            Ok(Some(m)) => m
                .resize(width, height)
                .map_err(|e| Error::io(format!("failed to resize exec {}", exec.id), e)),
            Ok(None) => Err(Error::FailedPrecondition(format!(
                "exec {} is not running",
                exec.id
            ))),
            Err(_) => Err(Error::internal("timeout waiting for exec session ready")),
        }
    }
}

/// Instances for other modules' tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub fn instance(container_id: &str, spec: ExecSpec) -> ExecInstance {
        ExecInstance::new(container_id, spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(cmd: &[&str], created: i64, container: &str) -> Arc<ExecInstance> {
        let mut e = ExecInstance::new(
            container,
            ExecSpec {
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        );
        e.id = format!("e{created}");
        e.created = created;
        Arc::new(e)
    }

    #[test]
    fn actions_look_like_dockers() {
        assert_eq!(
            exec(&["sh", "-c", "exit 7"], 1, "c1").action("exec_start"),
            "exec_start: sh -c exit 7"
        );
        assert_eq!(
            exec(&["true"], 1, "c").action("exec_create"),
            "exec_create: true "
        );
    }

    #[test]
    fn the_map_is_bounded_and_finished_execs_go_first() {
        let execs = ExecInstances::default();
        let running = exec(&["sleep"], 0, "c");
        running.lock().running = true;
        execs.insert(running, |_| false);
        for i in 1..=MAX_EXECS as i64 + 10 {
            execs.insert(exec(&["true"], i, "c"), |_| false);
        }
        assert_eq!(execs.lock().len(), MAX_EXECS);
        assert!(execs.get("e0").is_some(), "a running exec is kept");
        assert!(execs.get("e1").is_none(), "the oldest finished went");
        assert_eq!(execs.running_of("c"), vec!["e0".to_string()]);
        // Execs of containers that are gone are dropped first.
        execs.insert(exec(&["x"], 99_999, "d"), |c| c == "c");
        assert_eq!(execs.lock().len(), 1);
        execs.forget_container("d");
        assert!(execs.get("e99999").is_none());
    }
}
