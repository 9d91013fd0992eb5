//! Running one CNI plugin binary: the config on stdin, the CNI_* variables in
//! the environment, the result or a CNI error object on stdout, a deadline.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tracing::debug;

use super::error::CniError;

/// A CNI operation (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    Add,
    Del,
    Check,
    Version,
}

impl CniCommand {
    /// The `CNI_COMMAND` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Version => "VERSION",
        }
    }
}

/// The environment of one plugin call.
pub(crate) struct Invocation<'a> {
    pub command: CniCommand,
    pub container_id: &'a str,
    /// Empty when the namespace is gone (allowed for DEL).
    pub netns: &'a str,
    pub ifname: &'a str,
    /// `CNI_ARGS`: `K=V;K=V`.
    pub args: &'a str,
    /// `CNI_PATH`: the plugin directories joined with `:`.
    pub cni_path: &'a str,
}

/// Runs plugin `plugin` at `path`; returns its stdout parsed as JSON when it
/// printed anything. `launcher` (tests only) is a command put in front.
pub(crate) async fn run_plugin(
    plugin: &str,
    path: &Path,
    inv: &Invocation<'_>,
    stdin: Vec<u8>,
    timeout: Duration,
    launcher: &[OsString],
) -> Result<Option<Value>, CniError> {
    let command = inv.command.as_str();
    let mut cmd = match launcher.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(path);
            c
        }
        None => Command::new(path),
    };
    cmd.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.args)
        .env("CNI_PATH", inv.cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = spawn(&mut cmd).await.map_err(|source| CniError::Spawn {
        path: path.to_path_buf(),
        source,
    })?;
    let mut input = child.stdin.take();
    let run = async move {
        let write = async {
            if let Some(mut w) = input.take() {
                // A plugin that exits without reading its stdin is judged by
                // its exit status, not by the broken pipe.
                let _ = w.write_all(&stdin).await;
            }
        };
        let (_, out) = tokio::join!(write, child.wait_with_output());
        out
    };
    let out = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(out)) => out,
        Ok(Err(source)) => {
            return Err(CniError::Spawn {
                path: path.to_path_buf(),
                source,
            })
        }
        // Dropping the future killed the plugin (kill_on_drop).
        Err(_) => {
            return Err(CniError::Timeout {
                plugin: plugin.to_string(),
                command,
                secs: timeout.as_secs(),
            })
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        debug!(plugin, command, stderr = %stderr.trim(), "cni plugin stderr");
    }
    if !out.status.success() {
        return Err(plugin_failure(plugin, command, &out));
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&out.stdout)
        .map(Some)
        .map_err(|e| CniError::BadResult {
            plugin: plugin.to_string(),
            command,
            reason: format!("stdout is not JSON: {e}"),
        })
}

/// Spawns, retrying briefly while the binary is busy (ETXTBSY): it is being
/// written (a plugin installed right now), or a fork elsewhere in this
/// process still holds a descriptor that was open for writing it.
async fn spawn(cmd: &mut Command) -> std::io::Result<tokio::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 10 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// The error of a failed plugin: its CNI error object when it printed one.
fn plugin_failure(plugin: &str, command: &'static str, out: &std::process::Output) -> CniError {
    #[derive(serde::Deserialize)]
    struct ErrorObject {
        #[serde(default)]
        code: u64,
        msg: String,
        #[serde(default)]
        details: String,
    }
    if let Ok(e) = serde_json::from_slice::<ErrorObject>(&out.stdout) {
        return CniError::Plugin {
            plugin: plugin.to_string(),
            command,
            code: e.code,
            msg: e.msg,
            details: e.details,
        };
    }
    let text = if out.stderr.iter().all(u8::is_ascii_whitespace) {
        &out.stdout
    } else {
        &out.stderr
    };
    let text = String::from_utf8_lossy(text);
    let text = text.trim();
    // Keep the end: that is where a crash says what went wrong.
    let tail: String = match text.char_indices().rev().nth(1999) {
        Some((i, _)) => format!("...{}", &text[i..]),
        None => text.to_string(),
    };
    CniError::Exit {
        plugin: plugin.to_string(),
        command,
        status: out.status.to_string(),
        output: tail,
    }
}
