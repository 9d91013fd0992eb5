//! Docker's exec: `POST /containers/{id}/exec` makes an exec instance,
//! `POST /exec/{id}/start` runs it (on a hijacked connection, or detached),
//! `GET /exec/{id}/json` inspects it and `POST /exec/{id}/resize` sizes its
//! terminal. The process is a `crun exec` child of the daemon, with pipes or
//! (for a terminal) a pty whose master crun hands over a console socket.
//!
//! ```text
//! created ──start──> running ──exit──> exited (ExitCode set, then the stream closes)
//! ```
//!
//! Records outlive their process (the CLI reads the exit code after the
//! stream ends); at most [`MAX_EXECS`] are kept, finished ones going first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::debug;

mod run;

use super::error::{DockerJson, Query};
use super::hijack;
use super::{ApiError, ApiVersion, Shared};
use crate::engine::exec::ExecOptions;
use crate::engine::records::{new_id, now_nanos, ContainerRecord};
use crate::monitor::tty::PtyMaster;
use run::Run;

/// How many exec records are kept.
pub const MAX_EXECS: usize = 1024;
/// How long a resize waits for the exec's terminal (Docker waits 10 s).
const RESIZE_WAIT: Duration = Duration::from_secs(10);

/// Exec instances made by `POST /containers/{id}/exec`.
#[derive(Default)]
pub struct Execs {
    map: Mutex<HashMap<String, Arc<Exec>>>,
}

/// `POST /containers/{id}/exec`'s body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecConfig {
    pub cmd: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub attach_stdin: bool,
    #[serde(deserialize_with = "nullable")]
    pub attach_stdout: bool,
    #[serde(deserialize_with = "nullable")]
    pub attach_stderr: bool,
    #[serde(deserialize_with = "nullable")]
    pub tty: bool,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub privileged: bool,
    pub detach_keys: Option<String>,
    /// `[height, width]`.
    pub console_size: Option<Vec<u16>>,
}

/// Docker clients send `null` for unset fields; it reads as the default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// One exec instance.
pub struct Exec {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    created: i64,
    state: Mutex<ExecState>,
    /// The terminal, once the runtime handed it over.
    master: watch::Sender<Option<Arc<PtyMaster>>>,
}

#[derive(Debug, Default, Clone)]
struct ExecState {
    started: bool,
    running: bool,
    exit_code: Option<i32>,
    pid: i32,
}

impl Execs {
    /// The running execs of a container (inspect's `ExecIDs`).
    pub fn of(&self, container_id: &str) -> Vec<String> {
        let map = self.lock();
        let mut v: Vec<&Arc<Exec>> = map
            .values()
            .filter(|e| e.container_id == container_id && e.lock().running)
            .collect();
        v.sort_by_key(|e| e.created);
        v.into_iter().map(|e| e.id.clone()).collect()
    }

    /// Forgets the execs of a removed container.
    pub fn forget_container(&self, container_id: &str) {
        self.lock().retain(|_, e| e.container_id != container_id);
    }

    pub fn get(&self, id: &str) -> Result<Arc<Exec>, ApiError> {
        self.lock()
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
    }

    /// Adds an exec; past [`MAX_EXECS`], finished ones go first, oldest first.
    fn insert(&self, exec: Arc<Exec>, gone: impl Fn(&str) -> bool) {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Exec>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Exec {
    fn lock(&self) -> std::sync::MutexGuard<'_, ExecState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cmd(&self) -> Vec<String> {
        self.config.cmd.clone().unwrap_or_default()
    }

    /// Docker's event action: `exec_start: sh -c exit 7` (a space follows
    /// the entrypoint even without arguments, as in Docker).
    fn action(&self, verb: &str) -> String {
        let cmd = self.cmd();
        let (entry, args) = cmd.split_first().map_or(("", &[][..]), |(e, a)| (e, a));
        format!("{verb}: {entry} {}", args.join(" "))
    }

    /// The inspect document (`GET /exec/{id}/json`).
    pub fn inspect(&self) -> ExecInspect {
        let st = self.lock().clone();
        let cmd = self.cmd();
        let (entry, args) = cmd
            .split_first()
            .map_or((String::new(), Vec::new()), |(e, a)| {
                (e.clone(), a.to_vec())
            });
        ExecInspect {
            id: self.id.clone(),
            running: st.running,
            exit_code: st.exit_code,
            process_config: ProcessConfig {
                privileged: self.config.privileged,
                user: self.config.user.clone().unwrap_or_default(),
                tty: self.config.tty,
                entrypoint: entry,
                arguments: args,
            },
            open_stdin: self.config.attach_stdin,
            open_stderr: self.config.attach_stderr,
            open_stdout: self.config.attach_stdout,
            can_remove: false,
            container_id: self.container_id.clone(),
            detach_keys: self.config.detach_keys.clone().unwrap_or_default(),
            pid: st.pid,
        }
    }
}

/// `GET /exec/{id}/json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecInspect {
    #[serde(rename = "ID")]
    pub id: String,
    pub running: bool,
    pub exit_code: Option<i32>,
    pub process_config: ProcessConfig,
    pub open_stdin: bool,
    pub open_stderr: bool,
    pub open_stdout: bool,
    pub can_remove: bool,
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    pub detach_keys: String,
    pub pid: i32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessConfig {
    #[serde(deserialize_with = "nullable")]
    pub privileged: bool,
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub tty: bool,
    pub entrypoint: String,
    pub arguments: Vec<String>,
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/containers/{id}/exec", post(create))
        .route("/exec/{id}/start", post(start))
        .route("/exec/{id}/resize", post(resize))
        .route("/exec/{id}/json", get(inspect))
}

/// A container that can take an exec: running and not paused (409 else).
fn runnable(d: &Shared, name_or_id: &str) -> Result<ContainerRecord, ApiError> {
    let rec = d.container(name_or_id)?;
    if rec.state != crate::engine::records::ContainerState::Running {
        return Err(ApiError::conflict(format!(
            "container {} is not running",
            rec.id
        )));
    }
    if rec.paused {
        return Err(ApiError::conflict(format!(
            "container {} is paused, unpause the container before exec",
            rec.id
        )));
    }
    Ok(rec)
}

async fn create(
    State(d): State<Shared>,
    Path(id): Path<String>,
    DockerJson(config): DockerJson<ExecConfig>,
) -> Result<Response, ApiError> {
    let rec = runnable(&d, &id)?;
    if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    if let Some(k) = config.detach_keys.as_deref().filter(|k| !k.is_empty()) {
        hijack::detach_keys(k)?;
    }
    let exec = Arc::new(Exec {
        id: new_id(),
        container_id: rec.id.clone(),
        config,
        created: now_nanos(),
        state: Mutex::new(ExecState::default()),
        master: watch::channel(None).0,
    });
    let engine = d.engine.clone();
    d.execs
        .insert(exec.clone(), |c| engine.container(c).is_err());
    d.engine.emit_container(
        &exec.action("exec_create"),
        &rec,
        &[("execID", exec.id.as_str())],
    );
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "Id": exec.id })),
    )
        .into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct StartConfig {
    #[serde(deserialize_with = "nullable")]
    detach: bool,
    #[serde(deserialize_with = "nullable")]
    tty: bool,
    /// `[height, width]`.
    console_size: Option<Vec<u16>>,
}

async fn start(
    State(d): State<Shared>,
    Path(id): Path<String>,
    version: Option<Extension<ApiVersion>>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let body = axum::body::to_bytes(std::mem::take(req.body_mut()), 1024 * 1024)
        .await
        .map_err(|e| ApiError::bad_request(format!("failed to read request body: {e}")))?;
    let start: StartConfig = if body.iter().all(u8::is_ascii_whitespace) {
        StartConfig::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?
    };
    let exec = d.execs.get(&id)?;
    {
        let mut st = exec.lock();
        if st.running {
            return Err(ApiError::conflict(format!(
                "Error: Exec command {} is already running",
                exec.id
            )));
        }
        if st.started {
            return Err(ApiError::conflict(format!(
                "Error: Exec command {} has already run",
                exec.id
            )));
        }
        st.started = true;
    }
    let prepared = runnable(&d, &exec.container_id).and_then(|rec| {
        let size = start
            .console_size
            .as_deref()
            .or(exec.config.console_size.as_deref())
            .and_then(|s| match s {
                [h, w] if *h > 0 && *w > 0 => Some((*w, *h)),
                _ => None,
            });
        let mut env = exec.config.env.clone().unwrap_or_default();
        if exec.config.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        let opts = ExecOptions {
            env,
            cwd: exec.config.working_dir.clone(),
            user: exec.config.user.clone(),
            privileged: exec.config.privileged,
        };
        let p = d.engine.prepare_exec_with(
            &exec.container_id,
            exec.cmd(),
            exec.config.tty,
            size,
            &opts,
        )?;
        Ok((rec, p, size))
    });
    let (rec, prepared, size) = match prepared {
        Ok(v) => v,
        Err(e) => {
            // Not run after all: it may be started again.
            exec.lock().started = false;
            return Err(e);
        }
    };
    exec.lock().running = true;
    d.engine.emit_container(
        &exec.action("exec_start"),
        &rec,
        &[("execID", exec.id.as_str())],
    );
    let run = Run {
        d: d.clone(),
        exec: exec.clone(),
        rec,
        prepared,
        size,
    };
    if start.detach {
        tokio::spawn(run.go(None));
        return Ok(StatusCode::OK.into_response());
    }
    let tty = exec.config.tty || start.tty;
    let ct = hijack::content_type(tty, version.map(|Extension(v)| v));
    Ok(hijack::hijack(&mut req, ct, move |conn| {
        Box::pin(run.go(Some(conn)))
    }))
}

async fn inspect(
    State(d): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<ExecInspect>, ApiError> {
    Ok(Json(d.execs.get(&id)?.inspect()))
}

#[derive(Deserialize)]
struct ResizeParams {
    h: Option<String>,
    w: Option<String>,
}

/// `POST /exec/{id}/resize?h=&w=`: waits (as Docker does) for the exec's
/// terminal if it is still being made.
async fn resize(
    State(d): State<Shared>,
    Path(id): Path<String>,
    Query(p): Query<ResizeParams>,
) -> Result<StatusCode, ApiError> {
    let (width, height) = hijack::terminal_size(p.h.as_deref(), p.w.as_deref())?;
    let exec = d.execs.get(&id)?;
    if !exec.config.tty {
        return Ok(StatusCode::OK);
    }
    let mut rx = exec.master.subscribe();
    let exec2 = exec.clone();
    let waited = tokio::time::timeout(RESIZE_WAIT, async move {
        loop {
            if let Some(m) = rx.borrow_and_update().clone() {
                return Some(m);
            }
            if exec2.lock().exit_code.is_some() {
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
            .map_err(|e| ApiError::internal(format!("failed to resize exec {}: {e}", exec.id)))?,
        Ok(None) => {
            return Err(ApiError::conflict(format!(
                "exec {} is not running",
                exec.id
            )))
        }
        Err(_) => {
            debug!(exec = %exec.id, "resize: no terminal yet");
            return Err(ApiError::internal("timeout waiting for exec session ready"));
        }
    }
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(cmd: &[&str], created: i64, container: &str) -> Arc<Exec> {
        Arc::new(Exec {
            id: format!("e{created}"),
            container_id: container.into(),
            config: ExecConfig {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            },
            created,
            state: Mutex::new(ExecState::default()),
            master: watch::channel(None).0,
        })
    }

    #[test]
    fn create_bodies_accept_nulls() {
        let c: ExecConfig = serde_json::from_str(
            r#"{"Cmd":["ls"],"Tty":null,"AttachStdout":true,"Env":null,"ConsoleSize":[24,80]}"#,
        )
        .unwrap();
        assert!(!c.tty && c.attach_stdout);
        assert_eq!(c.console_size, Some(vec![24, 80]));
    }

    #[test]
    fn actions_and_inspect_look_like_dockers() {
        let e = exec(&["sh", "-c", "exit 7"], 1, "c1");
        assert_eq!(e.action("exec_start"), "exec_start: sh -c exit 7");
        assert_eq!(
            exec(&["true"], 1, "c").action("exec_create"),
            "exec_create: true "
        );
        let v = serde_json::to_value(e.inspect()).unwrap();
        assert_eq!(v["ExitCode"], serde_json::Value::Null);
        assert_eq!(v["Running"], false);
        assert_eq!(v["ProcessConfig"]["entrypoint"], "sh");
        assert_eq!(v["ProcessConfig"]["arguments"][1], "exit 7");
        assert_eq!(v["ContainerID"], "c1");
        e.lock().exit_code = Some(7);
        assert_eq!(serde_json::to_value(e.inspect()).unwrap()["ExitCode"], 7);
    }

    #[test]
    fn the_map_is_bounded_and_finished_execs_go_first() {
        let execs = Execs::default();
        let running = exec(&["sleep"], 0, "c");
        running.lock().running = true;
        execs.insert(running, |_| false);
        for i in 1..=MAX_EXECS as i64 + 10 {
            execs.insert(exec(&["true"], i, "c"), |_| false);
        }
        assert_eq!(execs.lock().len(), MAX_EXECS);
        assert!(execs.get("e0").is_ok(), "a running exec is kept");
        assert!(execs.get("e1").is_err(), "the oldest finished went");
        assert_eq!(execs.of("c"), vec!["e0".to_string()]);
        // Execs of containers that are gone are dropped first.
        execs.insert(exec(&["x"], 99_999, "d"), |c| c == "c");
        assert_eq!(execs.lock().len(), 1);
        assert_eq!(execs.get("e99999").unwrap().id, "e99999");
    }
}
