//! What a container really runs with, for `ContainerStatus`: the identity
//! of its PID 1 and the resources its cgroup has.

use std::path::Path;

use k8s_cri::v1::LinuxContainerResources;

use super::records::{ContainerRecord, ContainerState};
use super::Engine;

/// The uid, gid and supplementary groups of a container's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Reads `Uid:`, `Gid:` (the real ids) and `Groups:` of `/proc/<pid>/status`.
pub fn parse_proc_status(text: &str) -> Option<Identity> {
    let field = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)).map(|rest| {
            rest.split_whitespace()
                .filter_map(|v| v.parse::<u32>().ok())
        })
    };
    Some(Identity {
        uid: field("Uid:")?.next()?,
        gid: field("Gid:")?.next()?,
        groups: field("Groups:").map(|g| g.collect()).unwrap_or_default(),
    })
}

/// The identity the OCI spec gave the process (`process.user`).
fn spec_identity(bundle: &Path) -> Option<Identity> {
    let spec = oci_spec::runtime::Spec::load(bundle.join("config.json")).ok()?;
    let user = spec.process().as_ref()?.user();
    Some(Identity {
        uid: user.uid(),
        gid: user.gid(),
        groups: user.additional_gids().clone().unwrap_or_default(),
    })
}

impl Engine {
    /// The identity of the container's PID 1 while it runs, else the one its
    /// spec asked for.
    pub fn container_identity(&self, rec: &ContainerRecord) -> Option<Identity> {
        let live = rec
            .pid
            .filter(|p| rec.state == ContainerState::Running && p.alive())
            .and_then(|p| std::fs::read_to_string(format!("/proc/{}/status", p.pid)).ok())
            .and_then(|s| parse_proc_status(&s));
        live.or_else(|| spec_identity(&rec.dir))
    }

    /// The resources last asked for (create, then updates), with the cgroup
    /// limits read back where the cgroup exists.
    pub fn container_resources(&self, rec: &ContainerRecord) -> Option<LinuxContainerResources> {
        let mut res = rec
            .config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .unwrap_or_default();
        let asked = (res.cpu_shares > 0).then_some(res.cpu_shares as u64);
        let Ok(h) = &self.cgroups else {
            return Some(res);
        };
        // An exited container's cgroup may be gone: the request stands.
        let Ok(l) = h.limits(&rec.cgroups_path, asked) else {
            return Some(res);
        };
        if let Some(v) = l.cpu_shares {
            res.cpu_shares = v as i64;
        }
        if let Some(v) = l.cpu_quota {
            res.cpu_quota = v;
        }
        if let Some(v) = l.cpu_period {
            res.cpu_period = v as i64;
        }
        if let Some(v) = l.memory_limit {
            res.memory_limit_in_bytes = v as i64;
        }
        // An empty request means "whatever the parent has"; report the asked form.
        if let Some(v) = l.cpuset_cpus.filter(|_| !res.cpuset_cpus.is_empty()) {
            res.cpuset_cpus = v;
        }
        if let Some(v) = l.cpuset_mems.filter(|_| !res.cpuset_mems.is_empty()) {
            res.cpuset_mems = v;
        }
        Some(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_status_identity() {
        let text = "Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nFDSize:\t64\nGroups:\t1000 1234 50000 \n";
        assert_eq!(
            parse_proc_status(text),
            Some(Identity {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 1234, 50000],
            })
        );
        let none = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n";
        assert_eq!(parse_proc_status(none).unwrap().groups, Vec::<u32>::new());
        assert_eq!(parse_proc_status("Name:\tx\n"), None);
    }
}
