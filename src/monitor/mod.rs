//! The per-container monitor: a small process of berth's own (`berthd monitor
//! CONFIG`) that outlives the daemon. It creates the container with the OCI
//! runtime, holds the container's stdio, writes the CRI log, reaps the
//! container's init as a child subreaper, and records the exit status in a
//! file where the daemon finds it — also after a daemon restart.
//!
//! ```text
//!  daemon ──monitor.pb, spawn──> monitor ──setsid, subreaper──> `crun create` (exits)
//!     <── Ready { pid } ──┘   │                               │
//!                             ├─ stdout/stderr pipes ─> CRI log file (reopened on request or SIGUSR1)
//!                             │  (or the pty master, for `terminal`: its output is stdout)
//!                             ├─ monitor.sock: output fanned out, stdin fed in, resizes, log reopen
//!                             └─ waitpid(init) ─> exit file (protobuf, written atomically)
//! ```
//!
//! What it says to the daemon is berth's own protobuf, `berth.monitor.v1`
//! (`proto/`, see [`proto`]); the daemon still understands monitors started
//! by a berthd from before it (v0, JSON and raw bytes).
//!
//! The monitor uses plain threads and blocking calls: no async runtime, so it
//! stays small (one per running container).

pub mod attach;
pub mod client;
pub mod config;
pub mod exit;
pub mod log;
pub mod proto;
pub mod tty;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde::Deserialize;

pub use config::{MonitorConfig, Ready};
pub use exit::ExitStatus;
use log::{CriLogWriter, LineSplitter, LogFile, RecordOut, Rotation, Stream};
use proto::pb;

/// How long output is drained after the container's init exits (processes
/// left in a shared PID namespace may hold the pipes open).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the runtime may take to hand over a terminal it has created.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The exit status of a monitor that panicked (the daemon reports it).
pub const PANIC_EXIT: i32 = 101;

/// Entry point of `berthd monitor CONFIG`. Returns the process exit code.
pub fn main(config_path: &Path) -> i32 {
    // A panic in any of the monitor's threads leaves it unable to do its
    // job: exit at once, so the daemon sees a dead monitor (and says so)
    // instead of one that silently stopped copying output.
    std::panic::set_hook(Box::new(|_| std::process::exit(PANIC_EXIT)));
    let cfg = match MonitorConfig::read(config_path) {
        Ok(c) => c,
        Err(e) => {
            report(&Ready::Error(format!(
                "monitor: failed to read config {}: {e}",
                config_path.display()
            )));
            return 1;
        }
    };
    match run(&cfg) {
        Ok(()) => 0,
        Err(e) => {
            report(&Ready::Error(e));
            1
        }
    }
}

fn report(r: &Ready) {
    let mut out = std::io::stdout().lock();
    let _ = proto::write_msg(&mut out, &pb::Ready::from(r.clone()));
    let _ = out.flush();
}

fn run(cfg: &MonitorConfig) -> Result<(), String> {
    close_inherited_fds();
    // Our own session: the daemon's signals and exit do not reach us.
    let _ = nix::unistd::setsid();
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("failed to become a child subreaper: {e}"))?;
    // SIGUSR1 (reopen the log) is taken synchronously by one thread; block it
    // before any thread starts so every thread inherits the mask.
    let mut usr1 = SigSet::empty();
    usr1.add(Signal::SIGUSR1);
    usr1.thread_block()
        .map_err(|e| format!("failed to block SIGUSR1: {e}"))?;

    let _ = std::fs::remove_file(&cfg.pid_file);
    let mut create = Command::new(&cfg.runtime);
    create
        .arg("--root")
        .arg(&cfg.runtime_root)
        .args(&cfg.runtime_flags)
        .arg("--log")
        .arg(&cfg.runtime_log)
        .arg("--log-format=json")
        .arg("create")
        .arg("--bundle")
        .arg(&cfg.bundle)
        .arg("--pid-file")
        .arg(&cfg.pid_file);
    let io = if cfg.terminal {
        terminal_io(cfg, create)?
    } else {
        pipe_io(cfg, create)?
    };
    let pid = std::fs::read_to_string(&cfg.pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .ok_or_else(|| format!("runtime wrote no pid to {}", cfg.pid_file.display()))?;

    let writer = open_log(cfg.log_path.as_deref(), cfg.log_rotation)?;
    let writer = Arc::new(Mutex::new(writer));
    let attach = match &cfg.attach_socket {
        Some(p) => Some(
            attach::Attach::serve(p, io.stdin, cfg.stdin_once, io.console)
                .map_err(|e| format!("failed to listen on {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let outputs = io.outputs.len();
    for (src, stream) in io.outputs {
        let w = writer.clone();
        let tx = done_tx.clone();
        let a = attach.clone();
        spawn_small(move || {
            copy_output(src, stream, &w, a.as_deref());
            let _ = tx.send(());
        })?;
    }
    drop(done_tx);
    // The log is reopened on the daemon's request (`KIND_LOG_REOPEN`) and
    // on SIGUSR1 (what v0 daemons sent; still there for operators' tools).
    let reopen = {
        let w = writer.clone();
        let (path, rotation) = (cfg.log_path.clone(), cfg.log_rotation);
        Arc::new(move || reopen_log(path.as_deref(), rotation, &w))
    };
    if let Some(a) = &attach {
        let r = reopen.clone();
        a.on_log_reopen(Box::new(move || r()));
    }
    spawn_small(move || {
        while usr1.wait().is_ok() {
            let _ = reopen();
        }
    })?;

    report(&Ready::Pid(pid));
    detach_stdio();

    let exit = reap(Pid::from_raw(pid));
    // Give the output threads a bounded time to write what the container printed.
    let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
    for _ in 0..outputs {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    if let Ok(mut w) = writer.lock() {
        if let Some(w) = w.as_mut() {
            let _ = w.out.flush();
        }
    }
    if let Some(a) = &attach {
        a.close();
    }
    let oom_killed = exit.1 == Some(libc::SIGKILL) && oom_kills(&cfg.oom_files) > 0;
    let status = ExitStatus::now(exit.0, exit.1, oom_killed);
    status
        .write(&cfg.exit_file)
        .map_err(|e| format!("failed to write {}: {e}", cfg.exit_file.display()))?;
    Ok(())
}

/// The container's stdio as the monitor holds it.
struct ContainerIo {
    /// What the container prints: pipes, or the terminal's master.
    outputs: Vec<(File, Stream)>,
    /// Where attach clients' stdin goes.
    stdin: Option<File>,
    /// The terminal's master, for resizes.
    console: Option<File>,
}

/// Runs `create` with pipes for stdout and stderr (and stdin if asked).
fn pipe_io(cfg: &MonitorConfig, mut create: Command) -> Result<ContainerIo, String> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (stdin_r, stdin_w) = match cfg.stdin {
        true => {
            let (r, w) = pipe()?;
            (Stdio::from(r), Some(File::from(w)))
        }
        false => (Stdio::null(), None),
    };
    create
        .arg(&cfg.id)
        .stdin(stdin_r)
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    run_create(cfg, create)?;
    // `Command` dropped its copies of the write ends; only the container holds them now.
    Ok(ContainerIo {
        outputs: vec![
            (File::from(out_r), Stream::Stdout),
            (File::from(err_r), Stream::Stderr),
        ],
        stdin: stdin_w,
        console: None,
    })
}

/// Runs `create` with a console socket and takes the terminal's master: it
/// is the container's only output (stdout) and, if asked, its stdin.
fn terminal_io(cfg: &MonitorConfig, mut create: Command) -> Result<ContainerIo, String> {
    let sock = tty::ConsoleSocket::bind(&cfg.bundle.join("console.sock"))
        .map_err(|e| format!("failed to create a console socket: {e}"))?;
    create
        .arg("--console-socket")
        .arg(sock.path())
        .arg(&cfg.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    run_create(cfg, create)?;
    // The runtime sent the master before it exited; the connection waits
    // in the listener's queue with the descriptor in it.
    let master = sock
        .receive(CONSOLE_TIMEOUT)
        .map(File::from)
        .map_err(|e| format!("failed to receive the container's terminal: {e}"))?;
    let clone = || {
        master
            .try_clone()
            .map_err(|e| format!("failed to duplicate the terminal: {e}"))
    };
    Ok(ContainerIo {
        outputs: vec![(clone()?, Stream::Stdout)],
        stdin: if cfg.stdin { Some(clone()?) } else { None },
        console: Some(master),
    })
}

fn run_create(cfg: &MonitorConfig, mut create: Command) -> Result<(), String> {
    let status = create
        .status()
        .map_err(|e| format!("failed to run {}: {e}", cfg.runtime.display()))?;
    if !status.success() {
        return Err(format!(
            "{} create failed ({status}): {}",
            cfg.runtime.display(),
            runtime_error(&cfg.runtime_log)
        ));
    }
    Ok(())
}

/// Reaps children until the container's init exits; returns (exit code, signal).
fn reap(init: Pid) -> (i32, Option<i32>) {
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(p, code)) if p == init => return (code, None),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == init => {
                return (128 + sig as i32, Some(sig as i32))
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            // No children left: the init was reaped elsewhere; its status is lost.
            Err(_) => return (255, None),
        }
    }
}

fn copy_output(
    mut src: File,
    stream: Stream,
    w: &Mutex<Option<CriLogWriter<LogFile>>>,
    attach: Option<&attach::Attach>,
) {
    let mut split = LineSplitter::new(stream);
    let mut buf = vec![0u8; 32 * 1024];
    let mut sink = Sink(w);
    loop {
        match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let _ = split.feed(&buf[..n], &mut sink);
                if let Some(a) = attach {
                    a.broadcast(stream, &buf[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = split.finish(&mut sink);
}

/// Records go to the current log file (swapped on reopen).
struct Sink<'a>(&'a Mutex<Option<CriLogWriter<LogFile>>>);

impl log::RecordSink for Sink<'_> {
    fn record(&mut self, stream: Stream, partial: bool, msg: &[u8]) -> std::io::Result<()> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_mut() {
            Some(w) => w.record(stream, partial, msg),
            None => Ok(()),
        }
    }
}

/// Opens the log file anew and swaps it in: the old file is closed when
/// this returns.
fn reopen_log(
    path: Option<&Path>,
    rotation: Option<Rotation>,
    w: &Mutex<Option<CriLogWriter<LogFile>>>,
) -> Result<(), String> {
    let new = open_log(path, rotation)?;
    let old = std::mem::replace(&mut *w.lock().unwrap_or_else(|p| p.into_inner()), new);
    drop(old);
    Ok(())
}

fn open_log(
    path: Option<&Path>,
    rotation: Option<Rotation>,
) -> Result<Option<CriLogWriter<LogFile>>, String> {
    let Some(p) = path else { return Ok(None) };
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
    }
    let f = LogFile::open(p, rotation)
        .map_err(|e| format!("failed to open log {}: {e}", p.display()))?;
    Ok(Some(CriLogWriter { out: f }))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("failed to create a pipe: {e}"))
}

fn spawn_small(f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(f)
        .map(drop)
        .map_err(|e| format!("failed to start a thread: {e}"))
}

/// Points stdin/stdout/stderr at /dev/null once the daemon has its answer, so
/// the daemon's pipe closes and nothing blocks on it later.
fn detach_stdio() {
    use std::os::fd::AsRawFd;
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        for target in 0..=2 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), target);
        }
    }
}

/// Closes whatever descriptors above stderr the daemon's own environment
/// leaked into us (without close-on-exec): a monitor lives long and must not
/// pin pipes or files of processes it has nothing to do with.
fn close_inherited_fds() {
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect(),
        Err(_) => return,
    };
    // The directory's own fd is closed by now; closing it again fails harmlessly.
    for fd in fds {
        let _ = nix::unistd::close(fd);
    }
}

/// The last error message in the runtime's JSON log.
pub fn runtime_error(log: &Path) -> String {
    let Ok(f) = File::open(log) else {
        return "no runtime log".into();
    };
    let mut last = String::new();
    for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
        #[derive(Deserialize)]
        struct L {
            #[serde(default)]
            msg: String,
            #[serde(default)]
            level: String,
        }
        match serde_json::from_str::<L>(&line) {
            Ok(l) if l.level == "error" || l.level.is_empty() => last = l.msg,
            Ok(_) => {}
            Err(_) => last = line,
        }
    }
    if last.is_empty() {
        "the runtime logged no error".into()
    } else {
        last
    }
}

/// The cgroup's OOM-kill count (0 when unknown).
fn oom_kills(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                })
                .collect::<Vec<_>>()
        })
        .max()
        .unwrap_or(0)
}
