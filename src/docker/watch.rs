//! Watches Docker containers for exits: records them (which publishes the
//! `die` event), removes `AutoRemove` containers, and restarts containers
//! by their restart policy. Exits are learnt from the engine's monitor-exit
//! notices (immediate for monitors this daemon started) and, for monitors
//! from before a restart, by looking at running containers every second.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::containers::{docker_owned, remove_container};
use super::create::stored_request;
use super::{Docker, Shared};
use crate::engine::records::ContainerState;

/// What the watcher tracks between exits.
pub struct Watcher {
    tx: mpsc::UnboundedSender<String>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Containers the user stopped: restart policies leave them alone.
    stopped: Mutex<HashSet<String>>,
}

impl Default for Watcher {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Watcher {
            tx,
            rx: Mutex::new(Some(rx)),
            stopped: Mutex::new(HashSet::new()),
        }
    }
}

impl Docker {
    /// Starts watching a (just started) container.
    pub fn watch(&self, id: &str) {
        self.watcher
            .stopped
            .lock()
            .expect("watcher lock")
            .remove(id);
        let _ = self.watcher.tx.send(id.to_string());
    }

    /// Marks a container as stopped on purpose (no restart by policy).
    pub fn stopped_by_user(&self, id: &str) {
        self.watcher
            .stopped
            .lock()
            .expect("watcher lock")
            .insert(id.to_string());
    }
}

/// Runs until `shutdown`.
pub async fn run(d: Shared, shutdown: impl Future<Output = ()> + Send + 'static) {
    let Some(mut started) = d.watcher.rx.lock().expect("watcher lock").take() else {
        return;
    };
    let mut exits = d.engine.monitor_exits.subscribe();
    let mut tracked: HashSet<String> = match d.engine.containers() {
        Ok(cs) => {
            // Exits while the daemon was down: handle them now.
            for c in cs.iter().filter(|c| c.state == ContainerState::Exited) {
                if stored_request(c).is_some_and(|r| r.host_config.auto_remove) {
                    handle_exit(&d, &c.id).await;
                }
            }
            cs.into_iter()
                .filter(|c| c.state == ContainerState::Running)
                .map(|c| c.id)
                .collect()
        }
        Err(e) => {
            warn!(error = %e, "watcher: failed to list containers");
            HashSet::new()
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            id = started.recv() => match id {
                Some(id) => { tracked.insert(id); }
                None => return,
            },
            id = exits.recv() => match id {
                Ok(id) => {
                    tracked.remove(&id);
                    handle_exit(&d, &id).await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
            _ = tick.tick() => {
                let ids: Vec<String> = tracked.iter().cloned().collect();
                for id in ids {
                    match d.engine.refreshed(&id) {
                        Ok(Some(r)) if r.state != ContainerState::Exited => {}
                        Ok(Some(_)) => {
                            tracked.remove(&id);
                            handle_exit(&d, &id).await;
                        }
                        _ => { tracked.remove(&id); }
                    }
                }
            }
        }
    }
}

/// After an exit: record it, then auto-remove or restart by policy.
async fn handle_exit(d: &Shared, id: &str) {
    let rec = match d.engine.refreshed(id) {
        Ok(Some(r)) if r.state == ContainerState::Exited => r,
        _ => return,
    };
    let Some(req) = stored_request(&rec) else {
        return;
    };
    if !docker_owned(d, &rec) {
        return;
    }
    if req.host_config.auto_remove {
        if let Err(e) = remove_container(d, &rec).await {
            warn!(container = %id, error = %e, "failed to auto-remove container");
        }
        return;
    }
    let policy = req.host_config.restart_policy.clone().unwrap_or_default();
    let by_user = d.watcher.stopped.lock().expect("watcher lock").contains(id);
    let restart = match policy.name.as_str() {
        "always" | "unless-stopped" => !by_user,
        "on-failure" if rec.exit_code != 0 && !by_user => {
            policy.maximum_retry_count <= 0
                || i64::from(rec.restart_count) < policy.maximum_retry_count
        }
        _ => false,
    };
    if restart {
        info!(container = %id, policy = %policy.name, "restarting container by its restart policy");
        match d.engine.restart_by_policy(id).await {
            Ok(()) => d.watch(id),
            Err(e) => warn!(container = %id, error = %e, "restart by policy failed"),
        }
    }
}
