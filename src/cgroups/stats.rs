//! Resource usage of one cgroup, read from the v1 controller files or the v2
//! unified files.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{read_optional, CgroupError, Hierarchy, Mode};

/// Clock ticks per second in `cpuacct.stat`. `USER_HZ` is part of the kernel ABI
/// and is 100 on every architecture Linux containers run on (x86, arm, ppc, s390, riscv).
const USER_HZ: u64 = 100;
const NS_PER_TICK: u64 = 1_000_000_000 / USER_HZ;
/// v1 reports "no limit" as the page counter's maximum (0x7FFFFFFFFFFFF000 with
/// 4 KiB pages); anything this large is unlimited.
const V1_UNLIMITED: u64 = 1 << 62;

/// What a cgroup has used, as the CRI and Docker stats need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub cpu_usage_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub memory_usage_bytes: u64,
    /// Usage minus inactive file cache (never below 0), as the kubelet computes it.
    pub memory_working_set_bytes: u64,
    /// Anonymous memory (v1 `total_rss`, v2 `anon`).
    pub memory_rss_bytes: u64,
    pub memory_page_faults: u64,
    pub memory_major_page_faults: u64,
    /// `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// `None` when the pids controller does not cover the cgroup.
    pub pids_current: Option<u64>,
    pub oom_kills: u64,
    /// Swap in use; `None` without swap accounting.
    pub swap_usage_bytes: Option<u64>,
    /// Swap the cgroup may use; `None` when unlimited or not accounted.
    pub swap_limit_bytes: Option<u64>,
    /// When the sample was taken, nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
}

impl Hierarchy {
    /// Reads the usage of `cgroup_path` (either driver's form). A file that is
    /// missing (controller not enabled for this cgroup, older kernel) counts as
    /// zero or `None`; a cgroup that is missing altogether is
    /// [`CgroupError::NotFound`].
    pub fn stats(&self, cgroup_path: &str) -> Result<Stats, CgroupError> {
        let mut stats = match self.mode {
            Mode::V2 => self.stats_v2(cgroup_path)?,
            Mode::V1 | Mode::Hybrid => self.stats_v1(cgroup_path)?,
        };
        stats.timestamp_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        Ok(stats)
    }

    fn stats_v1(&self, cgroup_path: &str) -> Result<Stats, CgroupError> {
        let cpu = self.resolve_dir("cpuacct", cgroup_path);
        let mem = self.resolve_dir("memory", cgroup_path);
        if !cpu.is_dir() && !mem.is_dir() {
            return Err(CgroupError::NotFound { path: mem });
        }
        let mut s = Stats {
            cpu_usage_ns: single(&cpu.join("cpuacct.usage"))?.unwrap_or(0),
            ..Stats::default()
        };
        if let Some(f) = Keyed::read(&cpu.join("cpuacct.stat"))? {
            s.cpu_user_ns = f.get("user")?.unwrap_or(0).saturating_mul(NS_PER_TICK);
            s.cpu_system_ns = f.get("system")?.unwrap_or(0).saturating_mul(NS_PER_TICK);
        }

        s.memory_usage_bytes = single(&mem.join("memory.usage_in_bytes"))?.unwrap_or(0);
        if let Some(f) = Keyed::read(&mem.join("memory.stat"))? {
            let inactive = f.get("total_inactive_file")?.unwrap_or(0);
            s.memory_working_set_bytes = s.memory_usage_bytes.saturating_sub(inactive);
            s.memory_rss_bytes = f.get("total_rss")?.unwrap_or(0);
            s.memory_page_faults = f.get("total_pgfault")?.unwrap_or(0);
            s.memory_major_page_faults = f.get("total_pgmajfault")?.unwrap_or(0);
        } else {
            s.memory_working_set_bytes = s.memory_usage_bytes;
        }
        s.memory_limit_bytes =
            single(&mem.join("memory.limit_in_bytes"))?.filter(|l| *l < V1_UNLIMITED);
        // memsw counts memory + swap.
        if let Some(both) = single(&mem.join("memory.memsw.usage_in_bytes"))? {
            s.swap_usage_bytes = Some(both.saturating_sub(s.memory_usage_bytes));
            s.swap_limit_bytes = single(&mem.join("memory.memsw.limit_in_bytes"))?
                .filter(|l| *l < V1_UNLIMITED)
                .zip(s.memory_limit_bytes)
                .map(|(both, mem)| both.saturating_sub(mem));
        }
        if let Some(f) = Keyed::read(&mem.join("memory.oom_control"))? {
            s.oom_kills = f.get("oom_kill")?.unwrap_or(0);
        }

        let pids = self.resolve_dir("pids", cgroup_path);
        s.pids_current = single(&pids.join("pids.current"))?;
        Ok(s)
    }

    fn stats_v2(&self, cgroup_path: &str) -> Result<Stats, CgroupError> {
        let dir = self.resolve_dir("", cgroup_path);
        if !dir.is_dir() {
            return Err(CgroupError::NotFound { path: dir });
        }
        let mut s = Stats::default();
        // cpu.stat's usage keys exist even when the cpu controller is not enabled.
        if let Some(f) = Keyed::read(&dir.join("cpu.stat"))? {
            s.cpu_usage_ns = f.get("usage_usec")?.unwrap_or(0).saturating_mul(1000);
            s.cpu_user_ns = f.get("user_usec")?.unwrap_or(0).saturating_mul(1000);
            s.cpu_system_ns = f.get("system_usec")?.unwrap_or(0).saturating_mul(1000);
        }

        s.memory_usage_bytes = single(&dir.join("memory.current"))?.unwrap_or(0);
        if let Some(f) = Keyed::read(&dir.join("memory.stat"))? {
            let inactive = f.get("inactive_file")?.unwrap_or(0);
            s.memory_working_set_bytes = s.memory_usage_bytes.saturating_sub(inactive);
            s.memory_rss_bytes = f.get("anon")?.unwrap_or(0);
            s.memory_page_faults = f.get("pgfault")?.unwrap_or(0);
            s.memory_major_page_faults = f.get("pgmajfault")?.unwrap_or(0);
        } else {
            s.memory_working_set_bytes = s.memory_usage_bytes;
        }
        // "max" (unlimited) does not parse as a number and reads as `None`.
        let max = dir.join("memory.max");
        s.memory_limit_bytes = match read_optional(&max)? {
            Some(t) if t.trim() == "max" => None,
            Some(t) => Some(number(&max, t.trim())?),
            None => None,
        };
        s.swap_usage_bytes = single(&dir.join("memory.swap.current"))?;
        s.swap_limit_bytes = match read_optional(&dir.join("memory.swap.max"))? {
            Some(t) if t.trim() != "max" => Some(number(&dir.join("memory.swap.max"), t.trim())?),
            _ => None,
        };
        if let Some(f) = Keyed::read(&dir.join("memory.events"))? {
            s.oom_kills = f.get("oom_kill")?.unwrap_or(0);
        }
        s.pids_current = single(&dir.join("pids.current"))?;
        Ok(s)
    }
}

/// A file holding one number, `None` when absent.
fn single(path: &Path) -> Result<Option<u64>, CgroupError> {
    read_optional(path)?
        .map(|t| number(path, t.trim()))
        .transpose()
}

/// A flat-keyed file (`key value` lines).
struct Keyed<'a> {
    path: &'a Path,
    text: String,
}

impl<'a> Keyed<'a> {
    /// `None` when the file is absent.
    fn read(path: &'a Path) -> Result<Option<Self>, CgroupError> {
        Ok(read_optional(path)?.map(|text| Keyed { path, text }))
    }

    /// The value of `name`, `None` when the key is absent.
    fn get(&self, name: &str) -> Result<Option<u64>, CgroupError> {
        self.text
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(name)).then(|| f.next().unwrap_or(""))
            })
            .map(|v| number(self.path, v))
            .transpose()
    }
}

fn number(path: &Path, value: &str) -> Result<u64, CgroupError> {
    value.parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        reason: format!("expected a number, found {value:?}"),
    })
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
