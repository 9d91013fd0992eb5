//! Test helpers: running the test binary as `berthd ns-pin`, finding a real
//! berthd for the helpers that need a process of their own, and guards that
//! undo mounts and processes even when an assertion fails.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::exec::SelfExec;
use super::{unmount_pod_files, unpin, PinnedNamespaces, PodFiles};

const ARGS_ENV: &str = "BERTH_TEST_SELF_EXEC";
const ENTRY: &str = "sandbox::testutil::self_exec_entry";

/// Not a test: the entry point of the test binary re-executed as a helper
/// (see [`harness`]). Without the variable it does nothing.
#[test]
fn self_exec_entry() {
    let Ok(json) = std::env::var(ARGS_ENV) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&json).expect("helper arguments");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let code = match args.as_slice() {
        ["ns-pin", rest @ ..] => super::ns_pin_main(rest),
        _ => 2,
    };
    std::process::exit(code);
}

/// The test binary standing in for berthd. `ns-pin` works from a test
/// thread (it pins through `/proc/thread-self`); `pause` does not (it must
/// be the only thread to own its signals), so it uses [`berthd`].
pub(crate) fn harness() -> SelfExec {
    SelfExec::test_harness(ENTRY, ARGS_ENV)
}

/// The berthd binary built beside this test binary (`cargo test` builds it
/// for the e2e target), if it knows the sandbox subcommands.
pub(crate) fn berthd() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("berthd"))
        .ok_or("no target directory")?;
    if !path.exists() {
        return Err(format!(
            "{} is missing (cargo build --bin berthd)",
            path.display()
        ));
    }
    let out = Command::new(&path)
        .arg("ns-pin")
        .output()
        .map_err(|e| e.to_string())?;
    if !String::from_utf8_lossy(&out.stderr).contains("berthd ns-pin") {
        return Err(format!(
            "{} predates the sandbox subcommands",
            path.display()
        ));
    }
    Ok(path)
}

/// Whether root-only tests can run; says why not when they cannot.
pub(crate) fn is_root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipping {test}: needs root");
    }
    root
}

/// Runs a command to completion: (success, stdout, stderr).
pub(crate) fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// The namespace inode behind a pinned file or a `/proc/<pid>/ns/<kind>` link.
pub(crate) fn ns_inode(path: impl AsRef<Path>) -> u64 {
    std::fs::metadata(path.as_ref())
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.as_ref().display()))
        .ino()
}

/// Polls `f` until it yields a value or `limit` passes.
pub(crate) fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Unpins on drop.
pub(crate) struct PinGuard(pub PinnedNamespaces);

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Err(e) = unpin(&self.0) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// Unmounts a pod's files on drop.
pub(crate) struct FilesGuard(pub PodFiles);

impl Drop for FilesGuard {
    fn drop(&mut self) {
        if let Err(e) = unmount_pod_files(&self.0) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// Kills and reaps a child on drop.
pub(crate) struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Force-deletes a crun container on drop.
pub(crate) struct CrunGuard {
    pub root: PathBuf,
    pub id: String,
}

impl Drop for CrunGuard {
    fn drop(&mut self) {
        let root = self.root.to_string_lossy().into_owned();
        let _ = run("crun", &["--root", &root, "delete", "--force", &self.id]);
    }
}
