//! Docker's exec: `POST /containers/{id}/exec` makes an exec instance,
//! `POST /exec/{id}/start` runs it (on a hijacked connection, or detached),
//! `GET /exec/{id}/json` inspects it and `POST /exec/{id}/resize` sizes its
//! terminal. The instances, their process and their events are the
//! engine's ([`crate::engine::execs`], [`crate::engine::process`]); this
//! door reads Docker's request bodies and frames the hijacked stream.
//!
//! ```text
//! created ──start──> running ──exit──> exited (ExitCode set, then the stream closes)
//! ```

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

mod run;

use super::error::{DockerJson, Query};
use super::hijack;
use super::{ApiError, ApiVersion, Shared};
use crate::engine::exec::ExecOptions;
use crate::engine::execs::{ExecInstance, ExecSpec};
use run::Run;

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

impl ExecConfig {
    /// The engine's spec of this request (a terminal gets `TERM=xterm`
    /// unless the request sets `TERM`, as Docker does).
    fn spec(self) -> ExecSpec {
        let mut env = self.env.unwrap_or_default();
        if self.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        ExecSpec {
            cmd: self.cmd.unwrap_or_default(),
            options: ExecOptions {
                env,
                cwd: self.working_dir,
                user: self.user,
                privileged: self.privileged,
            },
            tty: self.tty,
            attach_stdin: self.attach_stdin,
            attach_stdout: self.attach_stdout,
            attach_stderr: self.attach_stderr,
            detach_keys: self.detach_keys.unwrap_or_default(),
            size: console_size(self.console_size.as_deref()),
        }
    }
}

/// Docker's `[height, width]` as (width, height); absent or zero: none.
fn console_size(s: Option<&[u16]>) -> Option<(u16, u16)> {
    match s? {
        [h, w] if *h > 0 && *w > 0 => Some((*w, *h)),
        _ => None,
    }
}

/// Docker clients send `null` for unset fields; it reads as the default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
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
    pub privileged: bool,
    pub user: String,
    pub tty: bool,
    pub entrypoint: String,
    pub arguments: Vec<String>,
}

/// The inspect document of an instance.
fn inspect_of(exec: &ExecInstance) -> ExecInspect {
    let st = exec.state();
    let (entry, args) = exec
        .spec
        .cmd
        .split_first()
        .map_or((String::new(), Vec::new()), |(e, a)| {
            (e.clone(), a.to_vec())
        });
    ExecInspect {
        id: exec.id.clone(),
        running: st.running,
        exit_code: st.exit_code,
        process_config: ProcessConfig {
            privileged: exec.spec.options.privileged,
            user: exec.spec.options.user.clone().unwrap_or_default(),
            tty: exec.spec.tty,
            entrypoint: entry,
            arguments: args,
        },
        open_stdin: exec.spec.attach_stdin,
        open_stderr: exec.spec.attach_stderr,
        open_stdout: exec.spec.attach_stdout,
        can_remove: false,
        container_id: exec.container_id.clone(),
        detach_keys: exec.spec.detach_keys.clone(),
        pid: st.pid,
    }
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/containers/{id}/exec", post(create))
        .route("/exec/{id}/start", post(start))
        .route("/exec/{id}/resize", post(resize))
        .route("/exec/{id}/json", get(inspect))
}

async fn create(
    State(d): State<Shared>,
    Path(id): Path<String>,
    DockerJson(config): DockerJson<ExecConfig>,
) -> Result<Response, ApiError> {
    d.engine.exec_target(&id)?;
    if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    if let Some(k) = config.detach_keys.as_deref().filter(|k| !k.is_empty()) {
        hijack::detach_keys(k)?;
    }
    let exec = d.engine.create_exec(&id, config.spec())?;
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
    let exec = d.engine.exec_instance(&id)?;
    let started = d
        .engine
        .start_exec(&exec, console_size(start.console_size.as_deref()))?;
    let run = Run {
        d: d.clone(),
        started,
    };
    if start.detach {
        tokio::spawn(run.go(None));
        return Ok(StatusCode::OK.into_response());
    }
    let tty = exec.spec.tty || start.tty;
    let ct = hijack::content_type(tty, version.map(|Extension(v)| v));
    Ok(hijack::hijack(&mut req, ct, move |conn| {
        Box::pin(run.go(Some(conn)))
    }))
}

async fn inspect(
    State(d): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<ExecInspect>, ApiError> {
    let exec = d.engine.exec_instance(&id)?;
    Ok(Json(inspect_of(&exec)))
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
    d.engine.resize_exec(&id, width, height).await?;
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies_accept_nulls() {
        let c: ExecConfig = serde_json::from_str(
            r#"{"Cmd":["ls"],"Tty":null,"AttachStdout":true,"Env":null,"ConsoleSize":[24,80]}"#,
        )
        .unwrap();
        assert!(!c.tty && c.attach_stdout);
        assert_eq!(c.console_size, Some(vec![24, 80]));
        let spec = c.spec();
        assert_eq!(spec.size, Some((80, 24)), "(width, height)");
        assert!(spec.options.env.is_empty(), "no TERM without a terminal");
    }

    #[test]
    fn a_terminal_gets_term_unless_set() {
        let c = ExecConfig {
            cmd: Some(vec!["sh".into()]),
            tty: true,
            ..Default::default()
        };
        assert_eq!(c.spec().options.env, ["TERM=xterm"]);
        let c = ExecConfig {
            cmd: Some(vec!["sh".into()]),
            tty: true,
            env: Some(vec!["TERM=dumb".into()]),
            ..Default::default()
        };
        assert_eq!(c.spec().options.env, ["TERM=dumb"]);
    }

    #[test]
    fn inspect_looks_like_dockers() {
        let spec = ExecConfig {
            cmd: Some(vec!["sh".into(), "-c".into(), "exit 7".into()]),
            ..Default::default()
        }
        .spec();
        let e = crate::engine::execs::tests_support::instance("c1", spec);
        let v = serde_json::to_value(inspect_of(&e)).unwrap();
        assert_eq!(v["ExitCode"], serde_json::Value::Null);
        assert_eq!(v["Running"], false);
        assert_eq!(v["ProcessConfig"]["entrypoint"], "sh");
        assert_eq!(v["ProcessConfig"]["arguments"][1], "exit 7");
        assert_eq!(v["ContainerID"], "c1");
    }
}
