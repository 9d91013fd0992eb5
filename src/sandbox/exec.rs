//! Re-executing berthd with a helper subcommand. Namespace work never runs on
//! a daemon thread: it happens in a fresh, single-threaded process.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::SandboxError;

/// How to start berthd again with a subcommand.
#[derive(Debug, Clone)]
pub(crate) struct SelfExec {
    program: PathBuf,
    /// Arguments before the subcommand (the test harness's test filter).
    lead_args: Vec<OsString>,
    /// When set, the subcommand and its arguments travel as JSON in this
    /// environment variable instead of argv (for the test harness).
    args_env: Option<&'static str>,
}

impl SelfExec {
    /// The running berthd binary.
    pub(crate) fn current() -> Result<Self, SandboxError> {
        // The running image itself: still valid when the file on disk was
        // replaced by an upgrade or a rebuild (current_exe() would then name
        // a deleted path). The child resolves it before it execs.
        let program = PathBuf::from("/proc/self/exe");
        Ok(SelfExec {
            program,
            lead_args: Vec::new(),
            args_env: None,
        })
    }

    /// A binary that takes the subcommand in argv (`berthd`, or a stand-in).
    #[cfg(test)]
    pub(crate) fn binary(program: impl Into<PathBuf>) -> Self {
        SelfExec {
            program: program.into(),
            lead_args: Vec::new(),
            args_env: None,
        }
    }

    /// The test binary itself, running the one test `entry`, which reads
    /// the subcommand from `args_env`.
    #[cfg(test)]
    pub(crate) fn test_harness(entry: &str, args_env: &'static str) -> Self {
        SelfExec {
            program: std::env::current_exe().expect("test binary path"),
            lead_args: ["--exact", entry, "--nocapture", "--test-threads=1", "-q"]
                .iter()
                .map(OsString::from)
                .collect(),
            args_env: Some(args_env),
        }
    }

    fn command(&self, args: &[OsString]) -> Command {
        let mut cmd = Command::new(&self.program);
        if self.program == Path::new("/proc/self/exe") {
            std::os::unix::process::CommandExt::arg0(&mut cmd, "berthd");
        }
        cmd.args(&self.lead_args);
        match self.args_env {
            None => {
                cmd.args(args);
            }
            Some(var) => {
                let list: Vec<String> = args
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect();
                cmd.env(var, serde_json::to_string(&list).unwrap_or_default());
            }
        }
        cmd
    }

    /// Runs `berthd <args>` to completion. A non-zero exit becomes a
    /// [`SandboxError::Helper`] carrying what the helper wrote on stderr; a
    /// helper still running after `timeout` is killed.
    pub(crate) fn run(
        &self,
        helper: &'static str,
        args: &[OsString],
        timeout: Duration,
    ) -> Result<(), SandboxError> {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| SandboxError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(SandboxError::Helper {
                        helper,
                        detail: format!("still running after {timeout:?}, killed"),
                    });
                }
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(SandboxError::io("wait for", self.program.clone(), e)),
            }
        };
        if status.success() {
            return Ok(());
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        let stderr = stderr.trim();
        Err(SandboxError::Helper {
            helper,
            detail: if stderr.is_empty() {
                status.to_string()
            } else {
                format!("{status}: {stderr}")
            },
        })
    }

    pub(crate) fn program(&self) -> &Path {
        &self.program
    }
}
