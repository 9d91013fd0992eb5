//! `berth-monitor monitor CONFIG`: the per-container monitor as a binary of
//! its own. It is `berthd monitor` without the daemon's code: only what the
//! monitor reaches is linked (no async runtime, gRPC, HTTP or TLS), so each
//! of the many monitor processes maps and touches far less. berthd starts it
//! when it sits next to berthd and falls back to `berthd monitor` otherwise;
//! both speak the same protocol. It is also a pod's infra process
//! (`berth-monitor pause`, bound into the infra container as `/berthd`).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, file] if cmd == "monitor" => {
            ExitCode::from(berth::monitor::main(&PathBuf::from(file)) as u8)
        }
        // A pod's infra process (init of a shared PID namespace).
        [cmd] if cmd == "pause" => ExitCode::from(berth::sandbox::pause_main() as u8),
        _ => {
            eprintln!(
                "usage: berth-monitor monitor CONFIG | berth-monitor pause (started by berthd)"
            );
            ExitCode::from(2)
        }
    }
}
