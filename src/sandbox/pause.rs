//! `berthd pause`: the infra process of a pod whose containers share one PID
//! namespace. As that namespace's init it reaps every orphan that is
//! re-parented to it, and exits 0 on SIGTERM or SIGINT — like Kubernetes'
//! pause container, without needing its image.
//!
//! The signals it cares about stay blocked and are taken with `sigwait(2)`:
//! no handler, no busy loop. Blocked signals also reach a namespace init,
//! which the kernel would otherwise spare from signals left at their default.

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpid, Pid};

/// Entry point of `berthd pause`. Returns the exit code.
pub fn pause_main() -> i32 {
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        set.add(s);
    }
    // Single-threaded here, so the thread mask is the process mask.
    if let Err(e) = set.thread_block() {
        eprintln!("berthd pause: failed to block signals: {e}");
        return 1;
    }
    if getpid() != Pid::from_raw(1) {
        eprintln!("berthd pause: warning: not running as pid 1");
    }
    loop {
        reap_all();
        match set.wait() {
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => return 0,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                eprintln!("berthd pause: sigwait failed: {e}");
                return 1;
            }
        }
    }
}

/// Collects every child that has exited; SIGCHLDs coalesce, so one signal
/// may stand for many children.
fn reap_all() {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                eprintln!("berthd pause: waitpid failed: {e}");
                return;
            }
        }
    }
}
