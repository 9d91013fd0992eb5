//! The limits a cgroup really has (what `ContainerStatus.resources` reports
//! after creation and updates), read back from the v1 controller files or
//! the v2 unified files, in the CRI's units.

use std::path::Path;

use super::{read_optional, CgroupError, Hierarchy, Mode};

/// v1 reports "no limit" as a huge page-aligned number.
const V1_UNLIMITED: u64 = 1 << 62;

/// Limits read from a cgroup; `None` where the file is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// CPU shares (v2: converted back from `cpu.weight`).
    pub cpu_shares: Option<u64>,
    /// CFS quota in µs; 0 when unlimited.
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    /// Bytes; 0 when unlimited.
    pub memory_limit: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
}

/// crun's and runc's shares → weight mapping (cgroup v2).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// The inverse of [`shares_to_weight`], rounded; exact for the weights that
/// mapping produces when `hint` (what was asked) maps to `weight`.
pub fn weight_to_shares(weight: u64, hint: Option<u64>) -> u64 {
    if let Some(h) = hint.filter(|&h| shares_to_weight(h) == weight) {
        return h;
    }
    2 + (weight.saturating_sub(1) * 262_142).div_ceil(9999)
}

fn text(path: &Path) -> Result<Option<String>, CgroupError> {
    Ok(read_optional(path)?.map(|s| s.trim().to_string()))
}

fn number<T: std::str::FromStr>(path: &Path) -> Result<Option<T>, CgroupError> {
    Ok(text(path)?.and_then(|s| s.parse().ok()))
}

impl Hierarchy {
    /// Reads the limits of `cgroup_path`; a cgroup missing altogether is
    /// [`CgroupError::NotFound`]. `asked_shares` picks the exact shares
    /// value back on v2, where weights are coarser.
    pub fn limits(
        &self,
        cgroup_path: &str,
        asked_shares: Option<u64>,
    ) -> Result<Limits, CgroupError> {
        match self.mode {
            Mode::V2 => self.limits_v2(cgroup_path, asked_shares),
            Mode::V1 | Mode::Hybrid => self.limits_v1(cgroup_path),
        }
    }

    fn limits_v1(&self, cgroup_path: &str) -> Result<Limits, CgroupError> {
        let cpu = self.resolve_dir("cpu", cgroup_path);
        let mem = self.resolve_dir("memory", cgroup_path);
        let cpuset = self.resolve_dir("cpuset", cgroup_path);
        if !cpu.is_dir() && !mem.is_dir() {
            return Err(CgroupError::NotFound { path: mem });
        }
        Ok(Limits {
            cpu_shares: number(&cpu.join("cpu.shares"))?,
            cpu_quota: number::<i64>(&cpu.join("cpu.cfs_quota_us"))?.map(|q| q.max(0)),
            cpu_period: number(&cpu.join("cpu.cfs_period_us"))?,
            memory_limit: number::<u64>(&mem.join("memory.limit_in_bytes"))?.map(|l| {
                if l >= V1_UNLIMITED {
                    0
                } else {
                    l
                }
            }),
            cpuset_cpus: text(&cpuset.join("cpuset.cpus"))?,
            cpuset_mems: text(&cpuset.join("cpuset.mems"))?,
        })
    }

    fn limits_v2(
        &self,
        cgroup_path: &str,
        asked_shares: Option<u64>,
    ) -> Result<Limits, CgroupError> {
        let dir = self.resolve_dir("memory", cgroup_path);
        if !dir.is_dir() {
            return Err(CgroupError::NotFound { path: dir });
        }
        let (cpu_quota, cpu_period) = match text(&dir.join("cpu.max"))? {
            Some(s) => parse_cpu_max(&s),
            None => (None, None),
        };
        Ok(Limits {
            cpu_shares: number(&dir.join("cpu.weight"))?.map(|w| weight_to_shares(w, asked_shares)),
            cpu_quota,
            cpu_period,
            memory_limit: text(&dir.join("memory.max"))?.map(|s| s.parse().unwrap_or(0)),
            cpuset_cpus: text(&dir.join("cpuset.cpus"))?,
            cpuset_mems: text(&dir.join("cpuset.mems"))?,
        })
    }
}

/// `max 100000` → (0, 100000); `50000 100000` → (50000, 100000).
fn parse_cpu_max(s: &str) -> (Option<i64>, Option<u64>) {
    let mut it = s.split_whitespace();
    let quota = it.next().map(|q| q.parse().unwrap_or(0));
    let period = it.next().and_then(|p| p.parse().ok());
    (quota, period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_round_trip_through_the_asked_shares() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(weight_to_shares(39, Some(1024)), 1024);
        // Without a matching hint: the smallest shares that map to the weight.
        let s = weight_to_shares(39, Some(5000));
        assert_eq!(shares_to_weight(s), 39);
        assert_eq!(weight_to_shares(1, None), 2);
    }

    #[test]
    fn cpu_max() {
        assert_eq!(parse_cpu_max("max 100000"), (Some(0), Some(100_000)));
        assert_eq!(parse_cpu_max("50000 100000"), (Some(50_000), Some(100_000)));
    }

    #[test]
    fn v1_files_are_read_in_cri_units() {
        let root = tempfile::tempdir().unwrap();
        let mut v1 = std::collections::BTreeMap::new();
        for c in ["cpu", "memory", "cpuset"] {
            let d = root.path().join(c).join("pod/ctr");
            std::fs::create_dir_all(&d).unwrap();
            v1.insert(c.to_string(), root.path().join(c));
        }
        let w = |c: &str, f: &str, v: &str| {
            std::fs::write(root.path().join(c).join("pod/ctr").join(f), v).unwrap()
        };
        w("cpu", "cpu.shares", "512\n");
        w("cpu", "cpu.cfs_quota_us", "-1\n");
        w("cpu", "cpu.cfs_period_us", "100000\n");
        w("memory", "memory.limit_in_bytes", "9223372036854771712\n");
        w("cpuset", "cpuset.cpus", "0-1\n");
        let h = Hierarchy {
            mode: Mode::V1,
            v1,
            unified: None,
            enabled: Default::default(),
            unified_controllers: None,
        };
        let l = h.limits("/pod/ctr", None).unwrap();
        assert_eq!(
            l,
            Limits {
                cpu_shares: Some(512),
                cpu_quota: Some(0),
                cpu_period: Some(100_000),
                memory_limit: Some(0),
                cpuset_cpus: Some("0-1".into()),
                cpuset_mems: None,
            }
        );
        w("memory", "memory.limit_in_bytes", "67108864\n");
        assert_eq!(
            h.limits("/pod/ctr", None).unwrap().memory_limit,
            Some(64 << 20)
        );
        assert!(matches!(
            h.limits("/pod/gone", None),
            Err(CgroupError::NotFound { .. })
        ));
    }
}
