//! The samples, the memory figures and the Markdown report.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::procs::{Daemon, Mem};
use crate::{BenchResult, Side};

/// The name of the end-to-end figure.
pub const FIRST_LOG: &str = "pod + container to first log line";

/// Every timed call, in the report's order.
pub const CALLS: &[&str] = &[
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "ListImages",
    "ListContainers",
    "ListPodSandbox",
    FIRST_LOG,
];

/// Durations per call name.
#[derive(Default)]
pub struct Calls(BTreeMap<&'static str, Vec<Duration>>);

impl Calls {
    pub fn push(&mut self, call: &'static str, d: Duration) {
        self.0.entry(call).or_default().push(d);
    }

    pub fn extend(&mut self, other: Calls) {
        for (k, v) in other.0 {
            self.0.entry(k).or_default().extend(v);
        }
    }

    fn get(&self, call: &str) -> &[Duration] {
        self.0.get(call).map_or(&[], Vec::as_slice)
    }
}

/// One side's memory figures.
pub struct Memory {
    pub idle: Mem,
    pub busy: Mem,
    /// Mean per container of the process holding its stdio and exit status.
    pub per_container: Mem,
    /// Mean per pod of the rest: berth's infra monitor and `berthd pause`,
    /// containerd's pause process.
    pub others: Mem,
    /// Mean per pod of every process the runtime adds (containers excluded).
    pub per_pod: Mem,
    pub processes: usize,
}

impl Memory {
    /// Reads the daemon and its per-pod processes with `pods` pods running.
    pub fn take(d: &Daemon, idle: Mem, pods: usize) -> BenchResult<Memory> {
        let p = d.pod_processes();
        if p.per_container.len() != pods {
            return Err(format!(
                "found {} {} processes for {pods} pods with one container each",
                p.per_container.len(),
                d.per_container_name()
            ));
        }
        let each = Mem::sum(&p.per_container);
        let others = Mem::sum(&p.other);
        let mut all = p.per_container.clone();
        all.extend(&p.other);
        let total = Mem::sum(&all);
        let n = pods as u64;
        Ok(Memory {
            idle,
            busy: d.rss_pss(),
            per_container: Mem {
                rss: each.rss / n,
                pss: each.pss / n,
            },
            others: Mem {
                rss: others.rss / n,
                pss: others.pss / n,
            },
            per_pod: Mem {
                rss: total.rss / n,
                pss: total.pss / n,
            },
            processes: all.len(),
        })
    }
}

/// A memory table row: its label and the figure (KiB) of one side.
type Row = (&'static str, fn(&Memory) -> u64);

/// Nearest-rank percentile.
pub fn percentile_of(v: &[Duration], pct: usize) -> Option<Duration> {
    percentile(v, pct)
}

fn percentile(v: &[Duration], pct: usize) -> Option<Duration> {
    let mut s = v.to_vec();
    s.sort();
    let rank = (pct * s.len()).div_ceil(100).max(1);
    s.get(rank - 1).copied()
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".into()
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// First line of a command's stdout, or `?`.
fn first_line(cmd: &str, args: &[&str]) -> String {
    crate::support::net::run(cmd, args)
        .ok()
        .and_then(|o| o.lines().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// When and where: date, CPU, cores, kernel, build profile, versions.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    format!(
        "{} · {cpu}, {cores} cores · kernel {} · berthd {profile} build · {} · {}",
        first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        first_line("uname", &["-r"]),
        first_line(crate::support::containerd::CONTAINERD, &["--version"]),
        first_line(crate::OCI_RUNTIME, &["--version"]),
    )
}

/// The report: a Markdown table of the calls, one of memory, and notes.
pub fn render(
    sides: &[Side],
    calls: &[Calls],
    memory: &[Memory],
    samples: usize,
    pods: usize,
) -> String {
    let mut o = String::new();
    let names: Vec<&str> = sides.iter().map(|s| s.name).collect();
    let both = sides.len() == 2;
    let _ = writeln!(o, "\n{}", machine());
    let _ = writeln!(
        o,
        "{samples} sequential samples per call; list calls with {pods} pods running\n"
    );
    let mut head = String::from("| call |");
    let mut rule = String::from("|---|");
    for n in &names {
        let _ = write!(head, " {n} p50 | {n} p90 |");
        rule.push_str("---|---|");
    }
    if both {
        head.push_str(" ratio p50 | ratio p90 |");
        rule.push_str("---|---|");
    }
    let _ = writeln!(o, "{head}\n{rule}");
    for call in CALLS {
        let mut line = format!("| {call} |");
        let mut p = Vec::new();
        for c in calls {
            let (a, b) = (percentile(c.get(call), 50), percentile(c.get(call), 90));
            let _ = write!(line, " {} | {} |", ms(a), ms(b));
            p.push((a, b));
        }
        if both {
            let secs = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64());
            let _ = write!(
                line,
                " {} | {} |",
                ratio(secs(p[0].0), secs(p[1].0)),
                ratio(secs(p[0].1), secs(p[1].1))
            );
        }
        let _ = writeln!(o, "{line}");
    }

    let _ = writeln!(o);
    let mut head = String::from("| memory |");
    let mut rule = String::from("|---|");
    for n in &names {
        let _ = write!(head, " {n} |");
        rule.push_str("---|");
    }
    if both {
        head.push_str(" ratio |");
        rule.push_str("---|");
    }
    let _ = writeln!(o, "{head}\n{rule}");
    let rows: [Row; 10] = [
        ("daemon RSS, idle", |m| m.idle.rss),
        ("daemon PSS, idle", |m| m.idle.pss),
        ("daemon RSS, pods running", |m| m.busy.rss),
        ("daemon PSS, pods running", |m| m.busy.pss),
        ("per container: monitor / shim RSS", |m| m.per_container.rss),
        ("per container: monitor / shim PSS", |m| m.per_container.pss),
        ("per pod, pause (+ berth's infra monitor) RSS", |m| {
            m.others.rss
        }),
        ("per pod, pause (+ berth's infra monitor) PSS", |m| {
            m.others.pss
        }),
        ("per pod, all runtime processes RSS", |m| m.per_pod.rss),
        ("per pod, all runtime processes PSS", |m| m.per_pod.pss),
    ];
    for (what, f) in rows {
        let mut line = format!("| {what} |");
        for m in memory {
            let _ = write!(line, " {} |", mib(f(m)));
        }
        if both {
            let _ = write!(
                line,
                " {} |",
                ratio(f(&memory[0]) as f64, f(&memory[1]) as f64)
            );
        }
        let _ = writeln!(o, "{line}");
    }

    let _ = writeln!(o);
    for (s, m) in sides.iter().zip(memory) {
        let _ = writeln!(
            o,
            "* {}: {} runtime processes for {pods} pods (per container: {})",
            s.name,
            m.processes,
            s.daemon.per_container_name()
        );
    }
    if !both {
        let _ = writeln!(o, "* berth only: no containerd baseline in this run");
        return o;
    }
    let _ = writeln!(
        o,
        "* same on both sides: pod configs (shared PID namespace, log directory), \
         container configs (`exec sleep 1000`, `echo hi`, CRI log file), one \
         bridge + host-local + portmap network (no port mappings), crun as the \
         OCI runtime, no pod cgroup parent, daemon logging at info\n\
         * what differs: containerd starts a pause container per pod (from an \
         image built here) under one shim per pod; berth pins the namespaces by \
         bind mounts and starts `berthd pause` (under its own monitor) only \
         because the PID namespace is shared; berth has a monitor per container\n\
         * StopContainer: timeout 10 s, the process dies of SIGTERM on both; \
         ratios are berth / containerd"
    );
    o
}
