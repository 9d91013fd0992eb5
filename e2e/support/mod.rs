//! Harness shared by the end-to-end tests and the pull benchmark: a real
//! registry on loopback, images built from the host's busybox, and a real
//! `berthd` driven over its unix socket.
//!
//! The benchmark includes this module by path and uses only part of it.
#![allow(dead_code)]

pub mod catalog;
pub mod chaos;
pub mod containerd;
pub mod cri;
pub mod daemon;
pub mod dns;
pub mod docker;
pub mod fuzz;
pub mod host;
pub mod images;
pub mod layers;
pub mod net;
pub mod pods;
pub mod registry;
pub mod stats;
pub mod sweep;

use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free a moment ago; the child binds it next.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A short temp dir under /tmp: unix socket paths must stay under 108 bytes.
pub fn short_tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("create temp dir")
}

/// Reads a file as text, empty when it does not exist yet.
pub fn read_text(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Opens (creating, appending) a log file twice so a child can write both
/// stdout and stderr into it.
pub fn log_file_pair(path: &Path) -> (File, File) {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log file");
    let g = f.try_clone().expect("clone log file");
    (f, g)
}

/// Polls `probe` every 50 ms until it yields a value; panics with `what`
/// after `limit` (a safety net against hangs, not a timing assertion).
pub async fn wait_until<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(start.elapsed() < limit, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process that is killed (SIGKILL, by its pid) and reaped on drop.
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    pub fn new(child: Child) -> Self {
        Self { child: Some(child) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("child present")
    }

    /// The exit status if the process has already exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("try_wait"))
    }

    /// Sends `sig` to the process by pid.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        // ESRCH only means it already exited, which callers find out by waiting.
        let _ = nix::sys::signal::kill(pid, sig);
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap; returns the exit status.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Lowercase hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// `sha256:<hex>` digest of `data`.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// The hex part of a `sha256:<hex>` digest.
pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// The Python that has the Docker SDK: `BERTH_E2E_PYTHON`, else the venv
/// `e2e/test.sh` makes in `target/e2e-venv` (a test using it fails with
/// the way to make it when it is missing).
pub fn python() -> String {
    if let Ok(p) = std::env::var("BERTH_E2E_PYTHON") {
        return p;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-venv/bin/python");
    assert!(
        venv.exists(),
        "the Docker SDK for Python is missing: run e2e/test.sh or \
         `python3 -m venv target/e2e-venv && target/e2e-venv/bin/pip install docker==7.1.0`"
    );
    venv.display().to_string()
}
