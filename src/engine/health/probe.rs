//! One health probe: the command run in the container through the engine's
//! exec (the container's own process spec with new args, as Docker exec and
//! CRI ExecSync run), stdout and stderr into one pipe whose first
//! [`MAX_OUTPUT`] bytes are kept, killed with everything it started when it
//! runs past its timeout or is abandoned (the container stopped meanwhile).

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::{go_duration, limited_output, ProbeResult, MAX_OUTPUT};
use crate::engine::records::{now_nanos, ContainerRecord, ProcessId};
use crate::engine::{Engine, Error};

/// How long the runtime may take to start the probe, apart from its timeout
/// (Docker allows 30 s too).
const START_WAIT: Duration = Duration::from_secs(30);
/// How long the output pipe is read after the probe exited (a process it
/// left behind may hold the pipe open).
const DRAIN_WAIT: Duration = Duration::from_millis(200);
/// How often the runtime's pid file is looked for while the probe starts.
const PID_POLL: Duration = Duration::from_millis(20);

impl Engine {
    /// Runs `argv` in running container `rec` as a health probe with
    /// `timeout`, emitting Docker's `exec_create`/`exec_start`/`exec_die`
    /// events for it. A probe that cannot run is a failed result (-1).
    pub async fn run_probe(
        &self,
        rec: &ContainerRecord,
        argv: Vec<String>,
        timeout: Duration,
    ) -> ProbeResult {
        let start = now_nanos();
        let (code, output) = match self.probe_inner(rec, argv, timeout).await {
            Ok(r) => r,
            Err(e) => (-1, e.to_string()),
        };
        ProbeResult {
            start,
            end: now_nanos(),
            exit_code: code,
            output,
        }
    }

    async fn probe_inner(
        &self,
        rec: &ContainerRecord,
        argv: Vec<String>,
        timeout: Duration,
    ) -> Result<(i64, String), Error> {
        let exec_id = crate::engine::records::new_id();
        let (entry, args) = argv
            .split_first()
            .map_or(("", &[][..]), |(e, a)| (e.as_str(), a));
        let action = |verb: &str| format!("{verb}: {entry} {}", args.join(" "));
        let prepared = self.prepare_exec(&rec.id, argv.clone(), false, None)?;
        self.emit_container(&action("exec_create"), rec, &[("execID", &exec_id)]);
        let (read_end, write_end) =
            nix::unistd::pipe().map_err(|e| Error::internal(format!("probe pipe: {e}")))?;
        let mut cmd = prepared.command(None);
        let err_end = write_end
            .try_clone()
            .map_err(|e| Error::internal(format!("probe pipe: {e}")))?;
        cmd.stdout(Stdio::from(write_end))
            .stderr(Stdio::from(err_end));
        let mut child = cmd.spawn().map_err(|e| {
            Error::internal(format!(
                "failed to run {}: {e}",
                prepared.runtime.binary.display()
            ))
        })?;
        // The parent's write ends go with the command: EOF comes when the
        // probe (and whatever it started) has closed them.
        drop(cmd);
        // Dropped first (declared last): kills the probe's processes unless
        // it finished, also when this future is abandoned.
        let mut guard = KillOnDrop {
            pid_path: prepared.pid_path.clone(),
            armed: true,
        };
        self.emit_container(&action("exec_start"), rec, &[("execID", &exec_id)]);
        let mut out = Capped::default();
        let mut pipe = pipe_reader(read_end)?;
        let status = {
            let wait = child.wait();
            tokio::pin!(wait);
            let read = out.fill(&mut pipe);
            tokio::pin!(read);
            let mut read_done = false;
            let start_limit = Instant::now() + START_WAIT;
            // The timeout runs from when the runtime has started the process
            // (its pid file is written), as Docker counts it.
            let mut deadline: Option<Instant> = None;
            loop {
                if deadline.is_none() && prepared.pid().is_some() {
                    deadline = Some(Instant::now() + timeout);
                }
                let wake = deadline.unwrap_or_else(|| (Instant::now() + PID_POLL).min(start_limit));
                tokio::select! {
                    st = &mut wait => break Some(st),
                    _ = &mut read, if !read_done => read_done = true,
                    _ = tokio::time::sleep_until(wake) => {
                        let now = Instant::now();
                        if deadline.map_or(now >= start_limit, |d| now >= d) {
                            break None;
                        }
                    }
                }
            }
        };
        let Some(status) = status else {
            guard.kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            let _ = tokio::time::timeout(DRAIN_WAIT, out.fill(&mut pipe)).await;
            guard.armed = false;
            let text = out.text();
            let msg = if text.is_empty() {
                format!("Health check exceeded timeout ({})", go_duration(timeout))
            } else {
                format!(
                    "Health check exceeded timeout ({}): {text}",
                    go_duration(timeout)
                )
            };
            self.emit_container("exec_die", rec, &[("execID", &exec_id), ("exitCode", "-1")]);
            return Ok((-1, msg));
        };
        guard.armed = false;
        let _ = tokio::time::timeout(DRAIN_WAIT, out.fill(&mut pipe)).await;
        let code = status
            .map_err(|e| Error::internal(format!("probe in {}: {e}", rec.id)))?
            .code()
            .map(i64::from)
            .unwrap_or(-1);
        let code_s = code.to_string();
        self.emit_container(
            "exec_die",
            rec,
            &[("execID", &exec_id), ("exitCode", &code_s)],
        );
        Ok((code, out.text()))
    }
}

fn pipe_reader(fd: OwnedFd) -> Result<tokio::net::unix::pipe::Receiver, Error> {
    tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
        .map_err(|e| Error::internal(format!("probe pipe: {e}")))
}

/// The first [`MAX_OUTPUT`] bytes of a stream; the rest is read and dropped.
#[derive(Default)]
struct Capped {
    buf: Vec<u8>,
    truncated: bool,
}

impl Capped {
    /// Reads until EOF (or an error).
    async fn fill(&mut self, r: &mut tokio::net::unix::pipe::Receiver) {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let room = MAX_OUTPUT - self.buf.len();
                    let keep = room.min(n);
                    self.buf.extend_from_slice(&chunk[..keep]);
                    if keep < n {
                        self.truncated = true;
                    }
                }
            }
        }
    }

    fn text(&self) -> String {
        limited_output(&self.buf, self.truncated)
    }
}

/// SIGKILLs the probe's process and its descendants.
struct KillOnDrop {
    pid_path: PathBuf,
    armed: bool,
}

impl KillOnDrop {
    fn kill(&self) {
        let Some(pid) = std::fs::read_to_string(&self.pid_path)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            return;
        };
        kill_tree(pid);
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.kill();
        }
    }
}

/// SIGKILLs `pid` and every process descended from it, all seen at once
/// (so none is reparented away before it is found).
fn kill_tree(pid: i32) {
    let Some(root) = ProcessId::of(pid) else {
        return;
    };
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Some(pp) = parent_of(p) {
                children.entry(pp).or_default().push(p);
            }
        }
    }
    let mut seen = HashSet::from([root.pid]);
    let mut todo = vec![root.pid];
    while let Some(p) = todo.pop() {
        for c in children.get(&p).into_iter().flatten() {
            if seen.insert(*c) {
                todo.push(*c);
            }
        }
    }
    // The root checked by start time: its pid may have been reused.
    if root.alive() {
        for p in seen {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
}

/// Field 4 of /proc/<pid>/stat.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split(' ').nth(1)?.parse().ok()
}
