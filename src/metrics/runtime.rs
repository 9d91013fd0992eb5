//! Runtime families, read from the engine at scrape time: pods and containers
//! by state, live monitor processes, per-container CPU and memory from the same
//! cgroup reader as CRI stats. Plus events counted as they happen: container
//! start latency and OOM kills.

use std::sync::{Arc, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntGauge, IntGaugeVec, Opts};

/// What the engine reports on each scrape.
#[derive(Debug, Default, Clone)]
pub struct RuntimeSnapshot {
    /// (state, count) — state is `ready` / `notready`.
    pub pods: Vec<(&'static str, u64)>,
    /// (state, count) — `created` / `running` / `exited`.
    pub containers: Vec<(&'static str, u64)>,
    /// Monitor processes alive.
    pub monitors: u64,
    pub usage: Vec<ContainerUsage>,
}

/// One running container's usage.
#[derive(Debug, Clone)]
pub struct ContainerUsage {
    pub id: String,
    pub name: String,
    pub pod: String,
    pub namespace: String,
    pub cpu_seconds: f64,
    pub memory_working_set_bytes: f64,
}

type Probe = Box<dyn Fn() -> Option<RuntimeSnapshot> + Send + Sync>;

/// A collector that asks the engine for a [`RuntimeSnapshot`] on each scrape.
#[derive(Clone)]
pub(super) struct RuntimeCollector {
    pods: IntGaugeVec,
    containers: IntGaugeVec,
    monitors: IntGauge,
    cpu: GaugeVec,
    memory: GaugeVec,
    pub(super) probe: Arc<RwLock<Option<Probe>>>,
}

impl RuntimeCollector {
    pub(super) fn new() -> Self {
        let labels = &["container", "name", "pod", "namespace"];
        RuntimeCollector {
            pods: IntGaugeVec::new(
                Opts::new("berth_pods", "Pod sandboxes, by state."),
                &["state"],
            )
            .expect("valid berth_pods"),
            containers: IntGaugeVec::new(
                Opts::new("berth_containers", "Containers, by state."),
                &["state"],
            )
            .expect("valid berth_containers"),
            monitors: IntGauge::new(
                "berth_monitor_processes",
                "Per-container monitor processes alive.",
            )
            .expect("valid berth_monitor_processes"),
            cpu: GaugeVec::new(
                Opts::new(
                    "berth_container_cpu_usage_seconds",
                    "CPU time used by a running container (cgroup), in seconds.",
                ),
                labels,
            )
            .expect("valid cpu gauge"),
            memory: GaugeVec::new(
                Opts::new(
                    "berth_container_memory_working_set_bytes",
                    "Working set of a running container (usage minus inactive file), in bytes.",
                ),
                labels,
            )
            .expect("valid memory gauge"),
            probe: Arc::new(RwLock::new(None)),
        }
    }
}

impl Collector for RuntimeCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.pods.desc();
        d.extend(self.containers.desc());
        d.extend(self.monitors.desc());
        d.extend(self.cpu.desc());
        d.extend(self.memory.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let probe = self.probe.read().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = probe.as_ref().and_then(|p| p()) {
            self.pods.reset();
            for (state, n) in &s.pods {
                self.pods.with_label_values(&[state]).set(*n as i64);
            }
            self.containers.reset();
            for (state, n) in &s.containers {
                self.containers.with_label_values(&[state]).set(*n as i64);
            }
            self.monitors.set(s.monitors as i64);
            self.cpu.reset();
            self.memory.reset();
            for u in &s.usage {
                let l = [u.id.as_str(), &u.name, &u.pod, &u.namespace];
                self.cpu.with_label_values(&l).set(u.cpu_seconds);
                self.memory
                    .with_label_values(&l)
                    .set(u.memory_working_set_bytes);
            }
        }
        let mut out = self.pods.collect();
        out.extend(self.containers.collect());
        out.extend(self.monitors.collect());
        out.extend(self.cpu.collect());
        out.extend(self.memory.collect());
        out
    }
}
