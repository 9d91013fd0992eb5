//! The node's network readiness: the default network, re-read from the config
//! directory every couple of seconds, so a config dropped into an empty
//! directory (or a plugin binary installed late) makes the node NetworkReady
//! without a restart. Re-scanning is cheap: a few small files and `stat`s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::blocking;
use super::config::{scan, NetworkConfigList};

/// The default network, or why there is none (for the runtime's Status).
pub type Readiness = Result<NetworkConfigList, String>;

/// How often the config directory is re-read.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Watches a config directory for the default network.
#[derive(Debug)]
pub struct NetworkState {
    conf_dir: PathBuf,
    bin_dirs: Vec<PathBuf>,
    builtin: bool,
    tx: Arc<watch::Sender<Readiness>>,
    poke: Arc<Notify>,
    task: JoinHandle<()>,
}

/// Starts watching `conf_dir` every [`POLL_INTERVAL`] (inside a tokio runtime);
/// with `builtin`, berth's built-in network stands in while it has no file.
pub fn watch(conf_dir: PathBuf, bin_dirs: Vec<PathBuf>, builtin: bool) -> NetworkState {
    NetworkState::start(conf_dir, bin_dirs, builtin, POLL_INTERVAL)
}

impl NetworkState {
    /// Reads the directory once now, then every `interval` in a task.
    pub fn start(
        conf_dir: PathBuf,
        bin_dirs: Vec<PathBuf>,
        builtin: bool,
        interval: Duration,
    ) -> Self {
        let (first, skipped) = evaluate(&conf_dir, &bin_dirs, builtin);
        report(&first, &skipped);
        let tx = Arc::new(watch::Sender::new(first));
        let poke = Arc::new(Notify::new());
        let task = tokio::spawn(poll(
            conf_dir.clone(),
            bin_dirs.clone(),
            builtin,
            interval,
            tx.clone(),
            poke.clone(),
            skipped,
        ));
        Self {
            conf_dir,
            bin_dirs,
            builtin,
            tx,
            poke,
            task,
        }
    }

    /// The default network, or the reason the network is not ready.
    pub fn ready(&self) -> Readiness {
        self.tx.borrow().clone()
    }

    /// A receiver that sees every change of readiness.
    pub fn subscribe(&self) -> watch::Receiver<Readiness> {
        self.tx.subscribe()
    }

    /// Re-reads the directory now (e.g. before failing a pod for want of a
    /// network) and returns the fresh answer.
    pub async fn rescan(&self) -> Readiness {
        let (dir, bins, builtin) = (self.conf_dir.clone(), self.bin_dirs.clone(), self.builtin);
        let (now, skipped) = blocking(move || evaluate(&dir, &bins, builtin)).await;
        publish(&self.tx, now.clone(), &skipped);
        self.poke.notify_one();
        now
    }
}

impl Drop for NetworkState {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn poll(
    conf_dir: PathBuf,
    bin_dirs: Vec<PathBuf>,
    builtin: bool,
    interval: Duration,
    tx: Arc<watch::Sender<Readiness>>,
    poke: Arc<Notify>,
    mut last_skipped: Vec<String>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = poke.notified() => {}
        }
        let (dir, bins) = (conf_dir.clone(), bin_dirs.clone());
        let (now, skipped) = blocking(move || evaluate(&dir, &bins, builtin)).await;
        let changed = publish(&tx, now, &skipped);
        if !changed && skipped != last_skipped {
            for why in &skipped {
                warn!("skipping cni network config {why}");
            }
        }
        last_skipped = skipped;
    }
}

/// Sends `now` when it differs from what receivers have; true when it did.
fn publish(tx: &watch::Sender<Readiness>, now: Readiness, skipped: &[String]) -> bool {
    let changed = tx.send_if_modified(|cur| {
        if *cur == now {
            return false;
        }
        *cur = now.clone();
        true
    });
    if changed {
        report(&now, skipped);
    }
    changed
}

fn report(now: &Readiness, skipped: &[String]) {
    for why in skipped {
        warn!("skipping cni network config {why}");
    }
    match now {
        Ok(net) => info!(network = %net.name, path = %net.path.display(),
            "cni network config loaded; network is ready"),
        Err(reason) => warn!("cni network is not ready: {reason}"),
    }
}

/// The readiness of `conf_dir` now, and the files passed over.
fn evaluate(
    conf_dir: &std::path::Path,
    bin_dirs: &[PathBuf],
    builtin: bool,
) -> (Readiness, Vec<String>) {
    match scan(conf_dir, bin_dirs) {
        Ok(s) => {
            let s = if builtin { s.or_builtin(bin_dirs) } else { s };
            let now = match &s.chosen {
                Some(net) => Ok(net.clone()),
                None => Err(s.reason(conf_dir)),
            };
            (now, s.skipped)
        }
        Err(e) => (Err(e.to_string()), Vec::new()),
    }
}
