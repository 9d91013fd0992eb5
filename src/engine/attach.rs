//! Attaching to a container's output: now, when its monitor serves the
//! attach socket, or at its next start, when it has none (an exited
//! container, or a Docker container whose command could not be executed at
//! create). Docker's `start -a` attaches first and starts second; the start
//! hands the new monitor's socket to every attach waiting and gives them a
//! moment to register before the container runs, so nothing it prints is
//! missed.
//!
//! ```text
//! attach_point(id) ──monitor alive──> Now(socket)
//!        └──no monitor──> Next(receiver) ... start: new monitor ──hand_over──> Handoff { socket, registered }
//!                                                 └─ waits for every `registered` (bounded) ─> crun start
//! start fails / container removed: the senders drop, the receivers see the end
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

use super::records::ContainerState;
use super::{Engine, Error};

/// How long a start waits for the attach clients it handed a socket to.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// A new monitor's attach socket, given to an attach that waited for it.
/// The attach drops (or fires) `registered` once it is connected.
pub struct Handoff {
    pub socket: PathBuf,
    pub registered: oneshot::Sender<()>,
}

/// Where an attach gets the container's output from.
pub enum AttachPoint {
    /// The socket of the monitor serving the container now.
    Now(PathBuf),
    /// The socket of the monitor of the container's next start; the
    /// receiver fails when that start fails or the container is removed.
    Next(oneshot::Receiver<Handoff>),
}

/// Attach clients waiting for the next monitor, by container id.
#[derive(Default)]
pub(crate) struct AttachWaiters(Mutex<HashMap<String, Vec<oneshot::Sender<Handoff>>>>);

impl AttachWaiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<oneshot::Sender<Handoff>>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add(&self, id: &str) -> oneshot::Receiver<Handoff> {
        let (tx, rx) = oneshot::channel();
        let mut m = self.lock();
        let list = m.entry(id.to_string()).or_default();
        // Waiters whose attach went away are dropped as new ones come.
        list.retain(|t| !t.is_closed());
        list.push(tx);
        rx
    }

    fn take(&self, id: &str) -> Vec<oneshot::Sender<Handoff>> {
        self.lock().remove(id).unwrap_or_default()
    }
}

impl Engine {
    /// Where an attach to container `id` reads from: its monitor's socket,
    /// or a wait for the monitor of its next start.
    pub fn attach_point(&self, id: &str) -> Result<AttachPoint, Error> {
        let rec = self
            .refreshed(id)?
            .ok_or_else(|| Error::NotFound(format!("container {id} not found")))?;
        let live = rec.state != ContainerState::Exited && rec.monitor.is_some();
        if !live {
            return Ok(AttachPoint::Next(self.attach_waiters.add(&rec.id)));
        }
        super::exec::attach_socket_path(&rec.dir)
            .filter(|p| p.exists())
            .map(AttachPoint::Now)
            .ok_or_else(|| {
                Error::FailedPrecondition(format!("container {id} has no attach socket"))
            })
    }

    /// Gives the waiting attaches of `id` the socket of its new monitor and
    /// waits (bounded) until each has registered with it.
    pub(crate) async fn hand_over_attach(&self, id: &str, socket: Option<PathBuf>) {
        let waiters = self.attach_waiters.take(id);
        let Some(socket) = socket else { return };
        let mut registered = Vec::new();
        for w in waiters {
            let (tx, rx) = oneshot::channel();
            let handoff = Handoff {
                socket: socket.clone(),
                registered: tx,
            };
            if w.send(handoff).is_ok() {
                registered.push(rx);
            }
        }
        if registered.is_empty() {
            return;
        }
        // A dropped sender counts as registered: that attach gave up.
        let all = futures::future::join_all(registered);
        let _ = tokio::time::timeout(REGISTER_TIMEOUT, all).await;
    }

    /// Ends the waits for the next monitor of `id` (its start failed, or it
    /// was removed).
    pub(crate) fn cancel_attach_waiters(&self, id: &str) {
        drop(self.attach_waiters.take(id));
    }
}
