//! The full controller files of one cgroup, for Docker's stats: per-CPU usage,
//! throttling, every `memory.stat` counter, block I/O and the pids limit —
//! more than [`super::Stats`] (the CRI's summary) carries.

use std::collections::BTreeMap;
use std::path::Path;

use super::{read_optional, CgroupError, Hierarchy, Mode};

/// `USER_HZ`: `cpuacct.stat` counts in these ticks (see `stats.rs`).
const NS_PER_TICK: u64 = 1_000_000_000 / 100;

/// One line of a v1 blkio file, or one direction of a v2 `io.stat` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

/// What a cgroup's files say, in the units Docker reports (nanoseconds, bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail {
    /// v2 semantics (`memory.stat` keys and `io.stat` differ from v1).
    pub v2: bool,
    pub cpu_total_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    /// v1 `cpuacct.usage_percpu`; empty on v2.
    pub cpu_percpu_ns: Vec<u64>,
    pub throttle_periods: u64,
    pub throttled_periods: u64,
    pub throttled_time_ns: u64,
    pub memory_usage: u64,
    /// v1 only.
    pub memory_max_usage: u64,
    /// `None`: unlimited.
    pub memory_limit: Option<u64>,
    /// v1 `memory.failcnt`; v2 the `oom` count of `memory.events`.
    pub memory_failcnt: u64,
    /// Every `memory.stat` counter.
    pub memory_stat: BTreeMap<String, u64>,
    pub pids_current: u64,
    /// 0: unlimited.
    pub pids_limit: u64,
    /// v1 file name (`io_service_bytes_recursive`...) → entries; v2 fills
    /// `io_service_bytes_recursive` from `io.stat`.
    pub blkio: BTreeMap<&'static str, Vec<BlkioEntry>>,
}

/// v1 blkio files and the name Docker gives them; the throttle files are
/// what a host without CFQ/BFQ accounting has.
const V1_BLKIO: &[(&str, &str, Option<&str>)] = &[
    (
        "io_service_bytes_recursive",
        "blkio.io_service_bytes_recursive",
        Some("blkio.throttle.io_service_bytes_recursive"),
    ),
    (
        "io_serviced_recursive",
        "blkio.io_serviced_recursive",
        Some("blkio.throttle.io_serviced_recursive"),
    ),
    ("io_queue_recursive", "blkio.io_queued_recursive", None),
    (
        "io_service_time_recursive",
        "blkio.io_service_time_recursive",
        None,
    ),
    (
        "io_wait_time_recursive",
        "blkio.io_wait_time_recursive",
        None,
    ),
    ("io_merged_recursive", "blkio.io_merged_recursive", None),
    ("io_time_recursive", "blkio.time_recursive", None),
    ("sectors_recursive", "blkio.sectors_recursive", None),
];

impl Hierarchy {
    /// Reads everything Docker's stats show about `cgroup_path`; a cgroup that
    /// does not exist is [`CgroupError::NotFound`], a missing file reads as 0.
    pub fn detail(&self, cgroup_path: &str) -> Result<Detail, CgroupError> {
        match self.mode {
            Mode::V2 => self.detail_v2(cgroup_path),
            Mode::V1 | Mode::Hybrid => self.detail_v1(cgroup_path),
        }
    }

    fn detail_v1(&self, cgroup_path: &str) -> Result<Detail, CgroupError> {
        let cpuacct = self.resolve_dir("cpuacct", cgroup_path);
        let mem = self.resolve_dir("memory", cgroup_path);
        if !cpuacct.is_dir() && !mem.is_dir() {
            return Err(CgroupError::NotFound { path: mem });
        }
        let mut d = Detail {
            cpu_total_ns: single(&cpuacct.join("cpuacct.usage"))?,
            ..Detail::default()
        };
        if let Some(t) = read_optional(&cpuacct.join("cpuacct.usage_percpu"))? {
            d.cpu_percpu_ns = t
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
        }
        let stat = keyed(&cpuacct.join("cpuacct.stat"))?;
        d.cpu_user_ns = get(&stat, "user").saturating_mul(NS_PER_TICK);
        d.cpu_system_ns = get(&stat, "system").saturating_mul(NS_PER_TICK);
        let cpu = keyed(&self.resolve_dir("cpu", cgroup_path).join("cpu.stat"))?;
        d.throttle_periods = get(&cpu, "nr_periods");
        d.throttled_periods = get(&cpu, "nr_throttled");
        d.throttled_time_ns = get(&cpu, "throttled_time");

        d.memory_usage = single(&mem.join("memory.usage_in_bytes"))?;
        d.memory_max_usage = single(&mem.join("memory.max_usage_in_bytes"))?;
        d.memory_failcnt = single(&mem.join("memory.failcnt"))?;
        d.memory_limit = read_optional(&mem.join("memory.limit_in_bytes"))?
            .and_then(|t| t.trim().parse::<u64>().ok())
            .filter(|l| *l < 1 << 62);
        d.memory_stat = keyed(&mem.join("memory.stat"))?;

        let pids = self.resolve_dir("pids", cgroup_path);
        d.pids_current = single(&pids.join("pids.current"))?;
        d.pids_limit = limit(&pids.join("pids.max"))?;

        let blkio = self.resolve_dir("blkio", cgroup_path);
        for (name, file, fallback) in V1_BLKIO {
            let mut entries =
                parse_v1_blkio(&read_optional(&blkio.join(file))?.unwrap_or_default());
            if entries.is_empty() {
                if let Some(f) = fallback {
                    entries = parse_v1_blkio(&read_optional(&blkio.join(f))?.unwrap_or_default());
                }
            }
            d.blkio.insert(name, entries);
        }
        Ok(d)
    }

    fn detail_v2(&self, cgroup_path: &str) -> Result<Detail, CgroupError> {
        let dir = self.resolve_dir("", cgroup_path);
        if !dir.is_dir() {
            return Err(CgroupError::NotFound { path: dir });
        }
        let mut d = Detail {
            v2: true,
            ..Detail::default()
        };
        let cpu = keyed(&dir.join("cpu.stat"))?;
        d.cpu_total_ns = get(&cpu, "usage_usec").saturating_mul(1000);
        d.cpu_user_ns = get(&cpu, "user_usec").saturating_mul(1000);
        d.cpu_system_ns = get(&cpu, "system_usec").saturating_mul(1000);
        d.throttle_periods = get(&cpu, "nr_periods");
        d.throttled_periods = get(&cpu, "nr_throttled");
        d.throttled_time_ns = get(&cpu, "throttled_usec").saturating_mul(1000);

        d.memory_usage = single(&dir.join("memory.current"))?;
        d.memory_limit = match read_optional(&dir.join("memory.max"))? {
            Some(t) => t.trim().parse().ok(),
            None => None,
        };
        d.memory_failcnt = get(&keyed(&dir.join("memory.events"))?, "oom");
        d.memory_stat = keyed(&dir.join("memory.stat"))?;

        d.pids_current = single(&dir.join("pids.current"))?;
        d.pids_limit = limit(&dir.join("pids.max"))?;
        let io = read_optional(&dir.join("io.stat"))?.unwrap_or_default();
        d.blkio
            .insert("io_service_bytes_recursive", parse_io_stat(&io));
        Ok(d)
    }
}

/// A one-number file; absent or unparsable reads as 0.
fn single(path: &Path) -> Result<u64, CgroupError> {
    Ok(read_optional(path)?
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0))
}

/// A limit file where `max` means none (0).
fn limit(path: &Path) -> Result<u64, CgroupError> {
    single(path)
}

/// `key value` lines.
fn keyed(path: &Path) -> Result<BTreeMap<String, u64>, CgroupError> {
    Ok(parse_keyed(&read_optional(path)?.unwrap_or_default()))
}

pub(super) fn parse_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.parse().ok()?))
        })
        .collect()
}

fn get(m: &BTreeMap<String, u64>, k: &str) -> u64 {
    m.get(k).copied().unwrap_or(0)
}

/// `8:0 Read 4096` lines; the `Total` lines have two fields and are skipped,
/// as containerd does.
pub(super) fn parse_v1_blkio(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [dev, op, value] = f[..] else {
                return None;
            };
            let (major, minor) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_string(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// `8:0 rbytes=1 wbytes=2 rios=3 ...` lines as Docker reports them: a
/// `read` and a `write` entry per device.
pub(super) fn parse_io_stat(text: &str) -> Vec<BlkioEntry> {
    let mut out = Vec::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        let kv: BTreeMap<&str, u64> = f
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k, v.parse().ok()?))
            })
            .collect();
        for (op, key) in [("read", "rbytes"), ("write", "wbytes")] {
            out.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value: kv.get(key).copied().unwrap_or(0),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_lines_of_both_versions() {
        let v1 = parse_v1_blkio("8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n");
        assert_eq!(v1.len(), 3);
        assert_eq!(v1[1].op, "Write");
        assert_eq!(v1[1].value, 512);
        let v2 = parse_io_stat("259:0 rbytes=100 wbytes=7 rios=1 wios=1 dbytes=0 dios=0\n");
        assert_eq!(
            v2,
            vec![
                BlkioEntry {
                    major: 259,
                    minor: 0,
                    op: "read".into(),
                    value: 100
                },
                BlkioEntry {
                    major: 259,
                    minor: 0,
                    op: "write".into(),
                    value: 7
                },
            ]
        );
    }

    #[test]
    fn keyed_files_skip_junk() {
        let m = parse_keyed("cache 10\nrss 20\nbroken\nweird x\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m["rss"], 20);
    }

    #[test]
    fn missing_cgroup_is_not_found() {
        let h = crate::cgroups::detect_from(
            include_str!("testdata/mountinfo_v2.txt"),
            include_str!("testdata/proc_cgroups_v2.txt"),
            Some("cpu memory pids"),
        )
        .unwrap();
        let e = h.detail("/berth/berth-definitely-not-here-x").unwrap_err();
        assert_eq!(e.kind(), crate::cgroups::CgroupErrorKind::NotFound);
    }
}
