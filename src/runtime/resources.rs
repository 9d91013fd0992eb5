//! cgroup resources and the OOM score of a container, from CRI
//! `LinuxContainerResources`. Zero means "not set" throughout the CRI.

use std::collections::HashMap;

use k8s_cri::v1::LinuxContainerResources;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroup, LinuxHugepageLimitBuilder, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::SpecError;

fn invalid(reason: impl Into<String>) -> SpecError {
    SpecError::InvalidResources {
        reason: reason.into(),
    }
}

fn non_negative(value: i64, what: &str) -> Result<u64, SpecError> {
    u64::try_from(value).map_err(|_| invalid(format!("{what} {value} is negative")))
}

/// A cpuset list such as `0-3,7`.
fn check_cpuset(value: &str, what: &str) -> Result<(), SpecError> {
    let ok = value.split(',').all(|part| {
        let mut ends = part.trim().splitn(2, '-');
        ends.all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {value:?} is not a cpu list like 0-3,7"
        )))
    }
}

/// `pids.max` from the unified map: a number, or `max` for no limit.
fn pids_limit(unified: &HashMap<String, String>) -> Result<Option<i64>, SpecError> {
    match unified.get("pids.max").map(|v| v.trim()) {
        None => Ok(None),
        Some("max") => Ok(Some(-1)),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| invalid(format!("pids.max {v:?} is not a positive number or max"))),
    }
}

/// Builds `linux.resources`.
///
/// Memory swap follows containerd: with swap accounting available and no
/// explicit swap limit, swap is capped at the memory limit so a container
/// cannot swap by default. Without swap accounting no swap limit is written,
/// since the runtime would fail on the missing cgroup file.
pub(crate) fn build_resources(
    res: Option<&LinuxContainerResources>,
    swap_supported: bool,
    device_rules: Vec<LinuxDeviceCgroup>,
) -> Result<LinuxResources, SpecError> {
    let mut out = LinuxResourcesBuilder::default().devices(device_rules);
    let Some(r) = res else {
        return Ok(out.build()?);
    };

    let mut cpu = LinuxCpuBuilder::default();
    let mut has_cpu = false;
    if r.cpu_period != 0 {
        cpu = cpu.period(non_negative(r.cpu_period, "cpu period")?);
        has_cpu = true;
    }
    if r.cpu_quota != 0 {
        cpu = cpu.quota(r.cpu_quota);
        has_cpu = true;
    }
    if r.cpu_shares != 0 {
        cpu = cpu.shares(non_negative(r.cpu_shares, "cpu shares")?);
        has_cpu = true;
    }
    if !r.cpuset_cpus.is_empty() {
        check_cpuset(&r.cpuset_cpus, "cpuset cpus")?;
        cpu = cpu.cpus(r.cpuset_cpus.clone());
        has_cpu = true;
    }
    if !r.cpuset_mems.is_empty() {
        check_cpuset(&r.cpuset_mems, "cpuset mems")?;
        cpu = cpu.mems(r.cpuset_mems.clone());
        has_cpu = true;
    }
    if has_cpu {
        out = out.cpu(cpu.build()?);
    }

    if r.memory_limit_in_bytes < 0 {
        return Err(invalid(format!(
            "memory limit {} is negative",
            r.memory_limit_in_bytes
        )));
    }
    if r.memory_swap_limit_in_bytes < -1 {
        return Err(invalid(format!(
            "memory swap limit {} is invalid",
            r.memory_swap_limit_in_bytes
        )));
    }
    let mut memory = LinuxMemoryBuilder::default();
    let mut has_memory = false;
    if r.memory_limit_in_bytes > 0 {
        memory = memory.limit(r.memory_limit_in_bytes);
        has_memory = true;
    }
    let swap = match r.memory_swap_limit_in_bytes {
        0 if r.memory_limit_in_bytes > 0 => Some(r.memory_limit_in_bytes),
        0 => None,
        n => Some(n),
    };
    if let (Some(swap), true) = (swap, swap_supported) {
        if r.memory_limit_in_bytes > 0 && swap != -1 && swap < r.memory_limit_in_bytes {
            return Err(invalid(format!(
                "memory swap limit {swap} is below the memory limit {}",
                r.memory_limit_in_bytes
            )));
        }
        memory = memory.swap(swap);
        has_memory = true;
    }
    if has_memory {
        out = out.memory(memory.build()?);
    }

    if !r.hugepage_limits.is_empty() {
        let mut limits = Vec::with_capacity(r.hugepage_limits.len());
        for h in &r.hugepage_limits {
            if h.page_size.is_empty() {
                return Err(invalid("hugepage limit without a page size"));
            }
            let limit = i64::try_from(h.limit)
                .map_err(|_| invalid(format!("hugepage limit {} is too large", h.limit)))?;
            limits.push(
                LinuxHugepageLimitBuilder::default()
                    .page_size(h.page_size.clone())
                    .limit(limit)
                    .build()?,
            );
        }
        out = out.hugepage_limits(limits);
    }

    if !r.unified.is_empty() {
        if let Some(limit) = pids_limit(&r.unified)? {
            out = out.pids(LinuxPidsBuilder::default().limit(limit).build()?);
        }
        out = out.unified(r.unified.clone());
    }
    Ok(out.build()?)
}

/// The process `oom_score_adj`: the requested value, but never below
/// `min_oom_score_adj`, the floor the host lets berth set (without
/// CAP_SYS_RESOURCE a process cannot lower its score below its parent's).
pub(crate) fn oom_score_adj(
    res: Option<&LinuxContainerResources>,
    min_oom_score_adj: i32,
) -> Result<Option<i32>, SpecError> {
    let Some(r) = res else { return Ok(None) };
    let requested = i32::try_from(r.oom_score_adj)
        .ok()
        .filter(|v| (-1000..=1000).contains(v))
        .ok_or_else(|| {
            invalid(format!(
                "oom_score_adj {} is outside -1000..=1000",
                r.oom_score_adj
            ))
        })?;
    Ok(Some(requested.max(min_oom_score_adj).min(1000)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::HugepageLimit;

    fn res() -> LinuxContainerResources {
        LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            oom_score_adj: -997,
            cpuset_cpus: "0-1".into(),
            cpuset_mems: "0".into(),
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20,
            }],
            unified: [("pids.max".to_string(), "100".to_string())].into(),
            memory_swap_limit_in_bytes: 0,
        }
    }

    #[test]
    fn full_resources() {
        let r = build_resources(Some(&res()), true, vec![]).unwrap();
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
        assert_eq!(cpu.mems().as_deref(), Some("0"));
        let mem = r.memory().as_ref().unwrap();
        assert_eq!(mem.limit(), Some(64 << 20));
        assert_eq!(
            mem.swap(),
            Some(64 << 20),
            "swap defaults to the memory limit"
        );
        let huge = r.hugepage_limits().as_ref().unwrap();
        assert_eq!(
            (huge[0].page_size().as_str(), huge[0].limit()),
            ("2MB", 4 << 20)
        );
        assert_eq!(r.pids().unwrap().limit(), 100);
        assert_eq!(r.unified().as_ref().unwrap()["pids.max"], "100");
    }

    #[test]
    fn swap_only_with_accounting() {
        let r = build_resources(Some(&res()), false, vec![]).unwrap();
        assert_eq!(r.memory().unwrap().swap(), None);
        let mut explicit = res();
        explicit.memory_swap_limit_in_bytes = 128 << 20;
        let r = build_resources(Some(&explicit), true, vec![]).unwrap();
        assert_eq!(r.memory().unwrap().swap(), Some(128 << 20));
        explicit.memory_swap_limit_in_bytes = 1 << 20;
        assert!(build_resources(Some(&explicit), true, vec![]).is_err());
    }

    #[test]
    fn empty_and_absent() {
        let r = build_resources(None, true, vec![]).unwrap();
        assert!(r.cpu().is_none() && r.memory().is_none() && r.pids().is_none());
        assert_eq!(r.devices().as_ref().map(Vec::len), Some(0));
        let r = build_resources(Some(&LinuxContainerResources::default()), true, vec![]).unwrap();
        assert!(r.cpu().is_none() && r.memory().is_none() && r.unified().is_none());
    }

    #[test]
    fn invalid_values() {
        for (edit, msg) in [
            (
                Box::new(|r: &mut LinuxContainerResources| r.cpu_shares = -1)
                    as Box<dyn Fn(&mut LinuxContainerResources)>,
                "cpu shares -1 is negative",
            ),
            (
                Box::new(|r| r.cpuset_cpus = "0-a".into()),
                "is not a cpu list",
            ),
            (
                Box::new(|r| r.memory_limit_in_bytes = -5),
                "memory limit -5 is negative",
            ),
            (
                Box::new(|r| {
                    r.unified.insert("pids.max".into(), "lots".into());
                }),
                "pids.max",
            ),
            (
                Box::new(|r| r.hugepage_limits[0].page_size.clear()),
                "page size",
            ),
        ] {
            let mut r = res();
            edit(&mut r);
            let err = build_resources(Some(&r), true, vec![]).unwrap_err();
            assert!(err.to_string().contains(msg), "{err}");
            assert!(err.to_string().starts_with("invalid resources: "));
        }
    }

    #[test]
    fn pids_max_unlimited() {
        let mut r = res();
        r.unified.insert("pids.max".into(), "max".into());
        assert_eq!(
            build_resources(Some(&r), true, vec![])
                .unwrap()
                .pids()
                .unwrap()
                .limit(),
            -1
        );
    }

    #[test]
    fn oom_score_is_clamped_to_the_floor() {
        let r = res();
        assert_eq!(oom_score_adj(Some(&r), -999).unwrap(), Some(-997));
        assert_eq!(oom_score_adj(Some(&r), -500).unwrap(), Some(-500));
        assert_eq!(oom_score_adj(Some(&r), 0).unwrap(), Some(0));
        assert_eq!(oom_score_adj(None, 0).unwrap(), None);
        let mut high = res();
        high.oom_score_adj = 1000;
        assert_eq!(oom_score_adj(Some(&high), -999).unwrap(), Some(1000));
        high.oom_score_adj = 1001;
        assert!(oom_score_adj(Some(&high), 0).is_err());
    }
}
