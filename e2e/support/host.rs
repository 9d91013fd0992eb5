//! What the host kernel says about containers, read without asking the
//! daemon: processes (by the env tag the tests give containers), namespaces,
//! cgroups and mounts. Plus [`scrub`], the safety net that ends what a
//! failed test left running.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A process identified by (pid, start time): pids are reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub start: u64,
}

impl Proc {
    /// The live (non-zombie) process `pid`.
    pub fn of(pid: i32) -> Option<Proc> {
        start_time(pid).map(|start| Proc { pid, start })
    }

    /// True while this very process exists and is not a zombie.
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }
}

/// Field 22 of /proc/<pid>/stat; `None` for a missing or zombie process.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// The parent pid of `pid`.
pub fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

/// VmRSS of `pid` in KiB (`/proc/<pid>/status`).
pub fn rss_kib(pid: i32) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Proportional set size of `pid` in KiB (`/proc/<pid>/smaps_rollup`):
/// shared pages split among the processes that map them.
pub fn pss_kib(pid: i32) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

fn kib_field(path: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Every pid in /proc.
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The command line of `pid`, arguments joined by spaces ("" for a zombie).
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches('\0')
                .replace('\0', " ")
        })
        .unwrap_or_default()
}

fn has_env(pid: i32, entry: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|b| b.split(|&c| c == 0).any(|e| e == entry))
        .unwrap_or(false)
}

/// Live processes whose environment holds `TAG_ENV=tag` and whose parent's
/// does not: a container's init (and, while one runs, an exec'd process).
pub fn tagged_roots(tag: &str) -> Vec<Proc> {
    let entry = format!("{}={tag}", super::pods::TAG_ENV).into_bytes();
    all_pids()
        .into_iter()
        .filter(|&p| has_env(p, &entry))
        .filter(|&p| !ppid(p).is_some_and(|pp| has_env(pp, &entry)))
        .filter_map(Proc::of)
        .collect()
}

/// Live processes whose environment holds `TAG_ENV=tag`.
pub fn tagged(tag: &str) -> Vec<Proc> {
    let entry = format!("{}={tag}", super::pods::TAG_ENV).into_bytes();
    all_pids()
        .into_iter()
        .filter(|&p| has_env(p, &entry))
        .filter_map(Proc::of)
        .collect()
}

/// The one init process of the container tagged `tag`. A container the CRI
/// reports running may not have exec'd its command yet (`crun start` returns
/// once it released the init, which then execs), so this waits for the
/// tagged process to appear — and still demands exactly one.
pub fn container_init(tag: &str) -> Proc {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut roots = tagged_roots(tag);
    while roots.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        roots = tagged_roots(tag);
    }
    assert_eq!(
        roots.len(),
        1,
        "expected one process tagged {tag} on the host: {:?}",
        roots
            .iter()
            .map(|p| (p.pid, cmdline(p.pid)))
            .collect::<Vec<_>>()
    );
    roots[0]
}

/// Live processes whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&p| p != me && Proc::of(p).is_some())
        .map(|p| (p, cmdline(p)))
        .filter(|(_, c)| c.contains(needle))
        .collect()
}

/// `readlink /proc/<pid>/ns/<kind>`, e.g. `net:[4026532281]`.
pub fn ns_link(pid: i32, kind: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|p| p.display().to_string())
}

/// Live processes in the PID namespace `link` (as [`ns_link`] gives it).
pub fn pid_ns_members(link: &str) -> Vec<Proc> {
    all_pids()
        .into_iter()
        .filter(|&p| ns_link(p, "pid").as_deref() == Some(link))
        .filter_map(Proc::of)
        .collect()
}

/// The pid of `pid` inside its own PID namespace (last field of `NSpid:`).
pub fn pid_in_ns(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub struct MountEntry {
    pub root: String,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_options: String,
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(n) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(n as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// The mounts of this process's mount namespace (the host's).
pub fn mounts() -> Vec<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            Some(MountEntry {
                root: unescape(pre.get(3)?),
                mount_point: PathBuf::from(unescape(pre.get(4)?)),
                fstype: post.first()?.to_string(),
                super_options: post.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// Mounts at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<MountEntry> {
    mounts()
        .into_iter()
        .filter(|m| m.mount_point.starts_with(dir))
        .collect()
}

/// The cgroup directories of `pid` that differ from this test process's
/// own (so: the ones made for the container), one per hierarchy.
pub fn own_cgroup_dirs(pid: i32) -> Vec<PathBuf> {
    let mine = cgroup_dirs(std::process::id() as i32);
    cgroup_dirs(pid)
        .into_iter()
        .filter(|d| !mine.contains(d))
        .collect()
}

/// The cgroup directories of `pid` on this host's cgroup mounts.
pub fn cgroup_dirs(pid: i32) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return vec![];
    };
    let mounts = mounts();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let mount = mounts.iter().find(|m| {
            if ctrls.is_empty() {
                m.fstype == "cgroup2"
            } else {
                m.fstype == "cgroup"
                    && ctrls
                        .split(',')
                        .all(|c| m.super_options.split(',').any(|o| o == c))
            }
        });
        let Some(m) = mount else { continue };
        let Ok(rel) = Path::new(path).strip_prefix(&m.root) else {
            continue;
        };
        out.push(m.mount_point.join(rel));
    }
    out
}

/// Every path under `dir` whose file name contains `needle` (symlinks and
/// mount points below `dir` are not followed).
pub fn paths_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in rd.filter_map(Result::ok) {
            let path = entry.path();
            if entry.file_name().to_string_lossy().contains(needle) {
                found.push(path.clone());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    found
}

/// Safety net for a failed test: ends every container of the daemon living
/// in `dir` (through the OCI runtime's state there), kills the processes
/// whose command line names `dir` (monitors), and detaches every mount
/// below `dir`. Does nothing when the test cleaned up after itself.
pub fn scrub(dir: &Path) {
    let runtime_roots = std::fs::read_dir(dir.join("state/runtime"))
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_else(|_| Vec::<PathBuf>::new());
    for root in runtime_roots {
        let binary = match root.file_name().and_then(|n| n.to_str()) {
            Some("runc") => "runc",
            _ => "crun",
        };
        let ids: Vec<String> = std::fs::read_dir(&root)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for id in ids {
            for args in [
                vec!["kill", "--all", &id, "KILL"],
                vec!["delete", "--force", &id],
            ] {
                let _ = Command::new(binary)
                    .arg("--root")
                    .arg(&root)
                    .args(&args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
    for (pid, _) in processes_mentioning(&dir.display().to_string()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let mut points: Vec<PathBuf> = mounts_under(dir)
        .into_iter()
        .map(|m| m.mount_point)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        let _ = umount2(&p, MntFlags::MNT_DETACH);
    }
}
