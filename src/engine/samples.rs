//! One sample of a set of pods — each container's cgroup and writable-layer
//! usage and the pod's network interfaces — read once and shared by
//! PodSandboxStats and ListPodSandboxMetrics.

use super::records::{ContainerRecord, PodRecord, PodState};
use super::stats::Usage;
use super::{Engine, Error};
use crate::sandbox::InterfaceCounters;

/// A pod's usage at one moment.
pub struct PodSample {
    pub pod: PodRecord,
    /// Each container with its usage (`None`: no cgroup, e.g. exited).
    pub containers: Vec<(ContainerRecord, Option<Usage>)>,
    /// The pod netns's interfaces (not `lo`); `None` for host-network pods
    /// and pods whose netns is gone.
    pub interfaces: Option<Vec<InterfaceCounters>>,
    /// When the sample was taken (Unix ns).
    pub timestamp: i64,
}

impl PodSample {
    /// Processes in the pod's containers (cgroup `pids.current`).
    pub fn process_count(&self) -> Option<u64> {
        let counts: Vec<u64> = self
            .containers
            .iter()
            .filter_map(|(_, u)| u.as_ref()?.cgroup.pids_current)
            .collect();
        (!counts.is_empty()).then(|| counts.iter().sum())
    }
}

impl Engine {
    /// Samples `pods`: every container's usage, then every ready pod's
    /// netns counters in one pass.
    pub async fn sample_pods(&self, pods: Vec<PodRecord>) -> Result<Vec<PodSample>, Error> {
        let all = self.containers()?;
        let mut out = Vec::with_capacity(pods.len());
        for pod in pods {
            let mut containers = Vec::new();
            for c in all.iter().filter(|c| c.pod_id == pod.id) {
                let usage = self.container_usage(c)?;
                containers.push((c.clone(), usage));
            }
            out.push(PodSample {
                pod,
                containers,
                interfaces: None,
                timestamp: super::records::now_nanos(),
            });
        }
        let wanted: Vec<(usize, std::path::PathBuf)> = out
            .iter()
            .enumerate()
            .filter(|(_, s)| s.pod.state == PodState::Ready)
            .filter_map(|(i, s)| Some((i, s.pod.netns.clone()?)))
            .collect();
        let paths: Vec<_> = wanted.iter().map(|(_, p)| p.clone()).collect();
        let counters =
            super::container::blocking(move || Ok(crate::sandbox::read_netns_counters(paths)))
                .await?;
        for ((i, _), c) in wanted.into_iter().zip(counters) {
            out[i].interfaces = c;
        }
        Ok(out)
    }
}
