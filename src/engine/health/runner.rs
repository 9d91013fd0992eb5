//! The health runner: one task per running container with a health check,
//! probing at its interval and recording each result. It follows the
//! engine's own events — a `start` (re)starts a container's task, `die` and
//! `destroy` (and a monitor's exit, heard at once) end it — and at daemon
//! start-up resumes the task of every running container, keeping the
//! recorded state. Ending a task drops its probe, which kills the probe's
//! processes ([`super::probe`]), so no exec outlives its container's check.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::{HealthState, HealthStatus, ProbeResult};
use crate::engine::records::{now_nanos, ContainerRecord, ContainerState};
use crate::engine::{Engine, Error, CONTAINERS};
use crate::store::HEALTH;

/// How often the runner checks it has a task for every checked container.
const RESYNC: Duration = Duration::from_secs(60);

impl Engine {
    /// A container's recorded health, if it has a check.
    pub fn health(&self, id: &str) -> Result<Option<HealthState>, Error> {
        Ok(self.store.get::<HealthState>(HEALTH, id)?)
    }

    /// Health back to `starting` (streak 0, log kept) for a container that
    /// is starting now; nothing for one without a check.
    pub(crate) fn reset_health(&self, rec: &ContainerRecord) -> Result<(), Error> {
        if !rec.health.as_ref().is_some_and(|h| h.enabled()) {
            return Ok(());
        }
        self.store.write(|w| {
            let old = w.get::<HealthState>(HEALTH, &rec.id)?;
            w.put(HEALTH, &rec.id, &HealthState::started(old))
        })?;
        Ok(())
    }

    /// Records a probe's result; a changed status is logged and published
    /// as Docker's `health_status: <status>` event.
    pub(crate) fn record_health(
        &self,
        rec: &ContainerRecord,
        result: ProbeResult,
    ) -> Result<Option<HealthStatus>, Error> {
        let Some(cfg) = rec.health.as_ref() else {
            return Ok(None);
        };
        let changed = self.store.write(|w| {
            // A container removed meanwhile keeps no health.
            if w.get::<ContainerRecord>(CONTAINERS, &rec.id)?.is_none() {
                return Ok::<_, Error>(None);
            }
            let mut h = w
                .get::<HealthState>(HEALTH, &rec.id)?
                .unwrap_or_else(|| HealthState::started(None));
            let changed = h.record(result, cfg, rec.started_at);
            w.put(HEALTH, &rec.id, &h)?;
            Ok(changed.then_some(h.status))
        })?;
        if let Some(s) = changed {
            info!(container = %rec.id, status = s.as_str(), "health status changed");
            self.emit_container(&format!("health_status: {}", s.as_str()), rec, &[]);
        }
        Ok(changed)
    }

    /// Drops the health records of containers that no longer exist.
    fn collect_health(&self) -> Result<(), Error> {
        let gone: Vec<String> = self
            .store
            .list::<serde_json::Value>(HEALTH)?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| matches!(self.store.get::<serde_json::Value>(CONTAINERS, k), Ok(None)))
            .collect();
        if !gone.is_empty() {
            self.store.write(|w| {
                for k in &gone {
                    w.delete(HEALTH, k)?;
                }
                Ok::<_, Error>(())
            })?;
        }
        Ok(())
    }
}

/// Runs every container's health checks until `shutdown`.
pub async fn run(engine: Arc<Engine>, shutdown: impl Future<Output = ()> + Send + 'static) {
    // Subscribed before the running containers are listed: no start is missed.
    let (_, mut events) = engine.events.subscribe();
    let mut exits = engine.monitor_exits.subscribe();
    if let Err(e) = engine.collect_health() {
        warn!(error = %e, "failed to collect stale health records");
    }
    let mut tasks: HashMap<String, JoinHandle<()>> = HashMap::new();
    resume(&engine, &mut tasks);
    // Events can be missed (a lagging receiver): now and then every running
    // container with a check is made sure to have its task.
    let mut resync = tokio::time::interval(RESYNC);
    resync.tick().await;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = resync.tick() => resume(&engine, &mut tasks),
            ev = events.recv() => match ev {
                Ok(ev) if ev.kind == "container" => match ev.action.as_str() {
                    "start" => {
                        stop(&mut tasks, &ev.id);
                        tasks.insert(ev.id.clone(), tokio::spawn(probe_loop(engine.clone(), ev.id)));
                    }
                    "die" | "destroy" => stop(&mut tasks, &ev.id),
                    _ => {}
                },
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => resume(&engine, &mut tasks),
                Err(RecvError::Closed) => break,
            },
            id = exits.recv() => match id {
                Ok(id) => stop(&mut tasks, &id),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
        }
    }
    for (_, t) in tasks.drain() {
        t.abort();
    }
}

/// Starts the task of each running container with a check that has none.
fn resume(engine: &Arc<Engine>, tasks: &mut HashMap<String, JoinHandle<()>>) {
    tasks.retain(|_, t| !t.is_finished());
    let running = match engine.containers() {
        Ok(cs) => cs,
        Err(e) => {
            warn!(error = %e, "health runner: failed to list containers");
            return;
        }
    };
    for rec in running {
        if rec.state == ContainerState::Running
            && rec.health.as_ref().is_some_and(|h| h.enabled())
            && !tasks.contains_key(&rec.id)
        {
            debug!(container = %rec.id, "resuming health checks");
            let id = rec.id.clone();
            tasks.insert(id.clone(), tokio::spawn(probe_loop(engine.clone(), id)));
        }
    }
}

fn stop(tasks: &mut HashMap<String, JoinHandle<()>>, id: &str) {
    if let Some(t) = tasks.remove(id) {
        t.abort();
    }
}

/// Probes one container until it is no longer running.
async fn probe_loop(engine: Arc<Engine>, id: String) {
    let shell = match engine.running(&id) {
        Ok(rec) => engine.probe_shell(&rec).await,
        Err(_) => return,
    };
    loop {
        let Ok(rec) = engine.running(&id) else {
            return;
        };
        let Some(cfg) = rec.health.clone() else {
            return;
        };
        let Some(argv) = cfg.probe_argv(&shell) else {
            return;
        };
        let status = match engine.health(&id) {
            Ok(h) => h.map_or(HealthStatus::Starting, |h| h.status),
            Err(_) => HealthStatus::Starting,
        };
        let elapsed = Duration::from_nanos((now_nanos() - rec.started_at).max(0) as u64);
        tokio::time::sleep(cfg.next_wait(elapsed, status)).await;
        let Ok(now) = engine.running(&id) else {
            return;
        };
        // Started again meanwhile (a start event this task missed): the
        // wait counts from the new start.
        if now.started_at != rec.started_at || now.paused {
            continue;
        }
        let rec = now;
        let result = engine.run_probe(&rec, argv, cfg.timeout()).await;
        // A probe cut short by the container's end is no result of it.
        if engine.running(&id).is_err() {
            return;
        }
        if let Err(e) = engine.record_health(&rec, result) {
            warn!(container = %id, error = %e, "failed to record a health check result");
        }
    }
}
