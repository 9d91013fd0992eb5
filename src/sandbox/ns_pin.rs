//! `berthd ns-pin DIR KINDS [HOSTNAME]`: the helper process behind
//! [`super::pin`]. It runs single-threaded, before any async runtime, so that
//! `unshare(2)` affects nothing but itself.

use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sched::unshare;
use nix::unistd::sethostname;

use super::lo::loopback_up;
use super::NsKinds;

const USAGE: &str =
    "usage: berthd ns-pin DIR KINDS [HOSTNAME]  (KINDS: a comma-separated subset of net,ipc,uts)";

/// Entry point of `berthd ns-pin`; `args` follow the subcommand. Returns the
/// exit code: 0 when every namespace asked for is pinned, 1 on failure (the
/// reason on stderr), 2 on bad usage.
pub fn ns_pin_main(args: &[&str]) -> i32 {
    let (dir, kinds, hostname) = match args {
        [dir, kinds] => (*dir, *kinds, None),
        [dir, kinds, host] => (*dir, *kinds, Some(*host)),
        _ => {
            eprintln!("{USAGE}");
            return 2;
        }
    };
    let kinds = match NsKinds::parse(kinds) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("berthd ns-pin: {e}\n{USAGE}");
            return 2;
        }
    };
    match pin_here(Path::new(dir), kinds, hostname) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berthd ns-pin: {e}");
            1
        }
    }
}

fn pin_here(dir: &Path, kinds: NsKinds, hostname: Option<&str>) -> Result<(), String> {
    if hostname.is_some() && !kinds.uts {
        // Without a new UTS namespace this would rename the host.
        return Err("a hostname needs a new uts namespace".into());
    }
    unshare(kinds.clone_flags()).map_err(|e| {
        format!(
            "failed to unshare {} namespaces: {e}",
            kinds.names().join(",")
        )
    })?;
    if let Some(h) = hostname {
        sethostname(h).map_err(|e| format!("failed to set hostname {h:?}: {e}"))?;
    }
    if kinds.net {
        loopback_up().map_err(|e| format!("failed to bring up lo: {e}"))?;
    }
    for name in kinds.names() {
        // thread-self: unshare(2) changed this thread's namespaces.
        let source = format!("/proc/thread-self/ns/{name}");
        let target = dir.join(name);
        mount(
            Some(source.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("failed to bind {source} on {}: {e}", target.display()))?;
    }
    Ok(())
}
