//! The processes of each side, found in /proc without asking the daemon:
//! the daemon itself and what runs per pod beside the containers' own
//! processes (berth: a monitor per container, plus the infra monitor and
//! `berthd pause` of a shared PID namespace; containerd: a shim per pod and
//! the pause container).

use std::path::PathBuf;

use crate::support::containerd::SHIM;
use crate::support::host;

/// RSS and PSS in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss: u64,
    pub pss: u64,
}

impl Mem {
    pub fn of(pid: i32) -> Mem {
        Mem {
            rss: host::rss_kib(pid).unwrap_or(0),
            pss: host::pss_kib(pid).unwrap_or(0),
        }
    }

    pub fn sum(pids: &[i32]) -> Mem {
        pids.iter()
            .map(|&p| Mem::of(p))
            .fold(Mem::default(), |a, b| Mem {
                rss: a.rss + b.rss,
                pss: a.pss + b.pss,
            })
    }
}

/// One side's daemon: how to find it and its per-pod processes.
pub enum Daemon {
    Berth { pid: i32, state: PathBuf },
    Containerd { pid: i32, socket: PathBuf },
}

/// The per-pod processes of one side (the containers' own excluded).
pub struct PodProcs {
    /// berth: each container's monitor; containerd: each pod's shim.
    pub per_container: Vec<i32>,
    /// berth: infra monitors and `berthd pause`; containerd: pause processes.
    pub other: Vec<i32>,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        match self {
            Daemon::Berth { pid, .. } | Daemon::Containerd { pid, .. } => *pid,
        }
    }

    pub fn rss_pss(&self) -> Mem {
        Mem::of(self.pid())
    }

    /// What holds a container's stdio and exit status on this side.
    pub fn per_container_name(&self) -> &'static str {
        match self {
            Daemon::Berth { .. } => "berth monitor",
            Daemon::Containerd { .. } => SHIM,
        }
    }

    pub fn pod_processes(&self) -> PodProcs {
        let all: Vec<(i32, String)> = host::all_pids()
            .into_iter()
            .map(|p| (p, host::cmdline(p)))
            .collect();
        let children_of = |parents: &[i32], want: &dyn Fn(&str) -> bool| -> Vec<i32> {
            all.iter()
                .filter(|(p, c)| host::ppid(*p).is_some_and(|pp| parents.contains(&pp)) && want(c))
                .map(|(p, _)| *p)
                .collect()
        };
        match self {
            Daemon::Berth { state, .. } => {
                let state = state.display().to_string();
                let monitors: Vec<(i32, &str)> = all
                    .iter()
                    .filter_map(|(p, c)| {
                        let mut args = c.split(' ');
                        let (bin, verb, cfg) = (args.next()?, args.next()?, args.next()?);
                        let ours = (bin.ends_with("berthd") || bin.ends_with("berth-monitor"))
                            && verb == "monitor"
                            && cfg.starts_with(&state);
                        ours.then_some((*p, cfg))
                    })
                    .collect();
                let infra: Vec<i32> = monitors
                    .iter()
                    .filter(|(_, cfg)| cfg.ends_with("/infra/monitor.pb"))
                    .map(|(p, _)| *p)
                    .collect();
                let mut other = children_of(&infra, &|c| c.ends_with("pause"));
                other.extend(&infra);
                PodProcs {
                    per_container: monitors
                        .iter()
                        .filter(|(p, _)| !infra.contains(p))
                        .map(|(p, _)| *p)
                        .collect(),
                    other,
                }
            }
            Daemon::Containerd { socket, .. } => {
                let address = format!("-address {}", socket.display());
                let shims: Vec<i32> = all
                    .iter()
                    .filter(|(_, c)| {
                        c.split(' ').next().is_some_and(|b| b.ends_with(SHIM))
                            && c.contains(&address)
                    })
                    .map(|(p, _)| *p)
                    .collect();
                let pause = crate::PAUSE_CMD.join(" ");
                PodProcs {
                    other: children_of(&shims, &|c| c == pause),
                    per_container: shims,
                }
            }
        }
    }
}
