//! The one owner of container exits, whichever door made the container.
//!
//! Every exit goes through [`run`]: the monitors this daemon started say so
//! at once (`monitor_exits`); containers whose monitors are older than this
//! daemon are looked at every second; exits that happened while the daemon
//! was down are handled at start-up. Handling an exit records it (which
//! publishes `die`), then applies the container's [`ExitPolicy`]: removal
//! (`--rm`) or a restart by its policy, counted in the record (a restart at
//! the daemon's start sets the count back to 0, as Docker's does), after
//! Docker's back-off (100 ms, doubling to a minute, back to 100 ms once a
//! run lasted 10 s).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::docker::OWNER_LABEL;
use super::records::{ContainerRecord, ContainerState, ExitPolicy, Restart};
use super::{Engine, Error};

/// What follows an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    Nothing,
    Remove,
    Restart,
}

/// When the exit is handled: as it happens, or found at the daemon's start
/// (where `always` restarts even a container its user stopped, as Docker's
/// daemon does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Live,
    AtDaemonStart,
}

impl ExitPolicy {
    /// What follows an exit of a container under this policy.
    pub fn after_exit(&self, rec: &ContainerRecord, seen: Seen) -> AfterExit {
        if self.auto_remove {
            return AfterExit::Remove;
        }
        let by_user = rec.stopped_by_user;
        let restart = match self.restart {
            Restart::No => false,
            Restart::Always => !by_user || seen == Seen::AtDaemonStart,
            Restart::UnlessStopped => !by_user,
            Restart::OnFailure { max_retries } => {
                rec.exit_code != 0
                    && !by_user
                    && (max_retries == 0 || rec.restart_count < max_retries)
            }
        };
        if restart {
            AfterExit::Restart
        } else {
            AfterExit::Nothing
        }
    }
}

/// The first restart's delay; each one in a row doubles it.
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long starts the back-off over.
const RESET_AFTER: Duration = Duration::from_secs(10);

/// The delay before the next restart of a container whose last run took
/// `ran`, after `last` (the previous delay, if any).
fn next_delay(last: Option<Duration>, ran: Duration) -> Duration {
    match last {
        Some(d) if ran < RESET_AFTER => (d * 2).min(MAX_DELAY),
        _ => FIRST_DELAY,
    }
}

/// How often containers with monitors from before this daemon are looked at.
const POLL: Duration = Duration::from_secs(1);

impl Engine {
    /// Sets what follows a container's exits (Docker's create and `update
    /// --restart`).
    pub async fn set_exit_policy(&self, id: &str, policy: ExitPolicy) -> Result<(), Error> {
        let _g = self.locks.lock(id).await;
        let mut rec = self.container(id)?;
        rec.exit_policy = policy;
        self.put_container(&rec)
    }

    /// Marks a container stopped by its user (a stop, a kill with a
    /// stopping signal, a removal): a restart policy leaves its exit alone.
    /// A start by the user clears it.
    pub async fn mark_stopped_by_user(&self, id: &str) -> Result<(), Error> {
        let _g = self.locks.lock(id).await;
        let mut rec = self.container(id)?;
        if !rec.stopped_by_user {
            rec.stopped_by_user = true;
            self.put_container(&rec)?;
        }
        Ok(())
    }

    /// True when the container's pod was made by the Docker door for it
    /// alone (removing the container removes the pod).
    pub fn owns_its_pod(&self, rec: &ContainerRecord) -> bool {
        self.pod(&rec.pod_id).is_ok_and(|p| {
            p.config
                .labels
                .get(OWNER_LABEL)
                .is_some_and(|o| o == "docker")
        })
    }

    /// Removes a container with what was made for it alone: its pod when
    /// the Docker door made one for it, and its Docker log directory; with
    /// `volumes`, the anonymous volumes only it used (`rm -v`, `--rm`).
    pub async fn remove_container_and_pod(
        &self,
        rec: &ContainerRecord,
        volumes: bool,
    ) -> Result<(), Error> {
        if self.owns_its_pod(rec) {
            self.remove_pod_sandbox_with(&rec.pod_id, volumes).await?;
        } else if volumes {
            self.remove_container_with_volumes(&rec.id).await?;
        } else {
            self.remove_container(&rec.id).await?;
        }
        let logs = self.docker_log_dir(&rec.id);
        match tokio::fs::remove_dir_all(&logs).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(container = %rec.id, error = %e, "failed to remove the log directory")
            }
        }
        Ok(())
    }

    /// Where a Docker container's log directory is.
    pub fn docker_log_dir(&self, id: &str) -> std::path::PathBuf {
        self.config.root.join("docker").join("logs").join(id)
    }
}

/// State kept between exits.
#[derive(Default)]
struct Exits {
    /// Running containers whose exits nothing announces (monitors from
    /// before this daemon, or an exit that came while the start was still
    /// being recorded).
    polled: HashSet<String>,
    /// The back-off of containers restarting in a row.
    delays: HashMap<String, Duration>,
}

/// Handles every container exit until `shutdown`.
pub async fn run(engine: Arc<Engine>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let mut notices = engine.monitor_exits.subscribe();
    let mut st = Exits::default();
    match engine.containers() {
        Ok(cs) => {
            for c in cs {
                match c.state {
                    ContainerState::Running => {
                        st.polled.insert(c.id);
                    }
                    // Exits while the daemon was down.
                    ContainerState::Exited => {
                        handle(&engine, &mut st, &c.id, Seen::AtDaemonStart).await
                    }
                    ContainerState::Created => {}
                }
            }
        }
        Err(e) => warn!(error = %e, "exits: failed to list containers"),
    }
    let mut tick = tokio::time::interval(POLL);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            id = notices.recv() => match id {
                Ok(id) => handle(&engine, &mut st, &id, Seen::Live).await,
                // Missed notices: look at every running container.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if let Ok(cs) = engine.containers() {
                        st.polled.extend(
                            cs.into_iter()
                                .filter(|c| c.state == ContainerState::Running)
                                .map(|c| c.id),
                        );
                    }
                }
                Err(_) => return,
            },
            _ = tick.tick() => {
                let ids: Vec<String> = st.polled.iter().cloned().collect();
                for id in ids {
                    handle(&engine, &mut st, &id, Seen::Live).await;
                }
            }
        }
    }
}

/// Records an exit of `id` if there is one and applies its policy.
async fn handle(engine: &Arc<Engine>, st: &mut Exits, id: &str, seen: Seen) {
    let rec = match engine.refreshed(id) {
        Ok(Some(r)) => r,
        Ok(None) => {
            st.polled.remove(id);
            st.delays.remove(id);
            return;
        }
        Err(e) => {
            warn!(container = %id, error = %e, "exits: failed to read the container");
            return;
        }
    };
    match rec.state {
        ContainerState::Exited => {
            st.polled.remove(id);
        }
        // Not exited yet (a start still being recorded): looked at again.
        _ => {
            st.polled.insert(id.to_string());
            return;
        }
    }
    match rec.exit_policy.after_exit(&rec, seen) {
        AfterExit::Nothing => {
            st.delays.remove(id);
        }
        AfterExit::Remove => {
            st.delays.remove(id);
            if let Err(e) = engine.remove_container_and_pod(&rec, true).await {
                warn!(container = %id, error = %e, "failed to auto-remove container");
            }
        }
        AfterExit::Restart => {
            let ran = Duration::from_nanos((rec.finished_at - rec.started_at).max(0) as u64);
            let delay = next_delay(st.delays.get(id).copied(), ran);
            st.delays.insert(id.to_string(), delay);
            let (engine, id) = (engine.clone(), id.to_string());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                restart(&engine, &id, &rec, seen).await;
            });
        }
    }
}

/// Restarts `id` by its policy, unless its user acted meanwhile (started,
/// stopped, removed it or changed the policy). A restart at the daemon's
/// start begins the count again, as Docker's does.
async fn restart(engine: &Engine, id: &str, exited: &ContainerRecord, seen: Seen) {
    match engine.container(id) {
        Ok(cur)
            if cur.state == ContainerState::Exited
                && cur.finished_at == exited.finished_at
                && cur.exit_policy == exited.exit_policy
                && (cur.stopped_by_user == exited.stopped_by_user) => {}
        _ => return,
    }
    let (policy, _) = exited.exit_policy.restart.docker();
    info!(container = %id, policy, "restarting container by its restart policy");
    let restarted = match seen {
        Seen::Live => engine.restart_by_policy(id).await,
        Seen::AtDaemonStart => engine.restart_container(id).await,
    };
    if let Err(e) = restarted {
        warn!(container = %id, error = %e, "restart by policy failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32, restarts: u32, by_user: bool) -> ContainerRecord {
        let mut r = ContainerRecord::sample("c");
        r.exit_code = code;
        r.restart_count = restarts;
        r.stopped_by_user = by_user;
        r
    }

    fn policy(restart: Restart) -> ExitPolicy {
        ExitPolicy {
            restart,
            auto_remove: false,
        }
    }

    #[test]
    fn a_record_of_an_older_berth_has_no_policy() {
        let r = exited(1, 0, false);
        assert_eq!(r.exit_policy, ExitPolicy::default());
        assert_eq!(r.exit_policy.after_exit(&r, Seen::Live), AfterExit::Nothing);
    }

    #[test]
    fn on_failure_restarts_non_zero_exits_up_to_its_count() {
        let p = policy(Restart::OnFailure { max_retries: 2 });
        assert_eq!(
            p.after_exit(&exited(1, 0, false), Seen::Live),
            AfterExit::Restart
        );
        assert_eq!(
            p.after_exit(&exited(1, 1, false), Seen::Live),
            AfterExit::Restart
        );
        assert_eq!(
            p.after_exit(&exited(1, 2, false), Seen::Live),
            AfterExit::Nothing
        );
        assert_eq!(
            p.after_exit(&exited(0, 0, false), Seen::Live),
            AfterExit::Nothing
        );
        assert_eq!(
            p.after_exit(&exited(137, 0, true), Seen::Live),
            AfterExit::Nothing
        );
        let unbounded = policy(Restart::OnFailure { max_retries: 0 });
        assert_eq!(
            unbounded.after_exit(&exited(1, 1000, false), Seen::Live),
            AfterExit::Restart
        );
    }

    #[test]
    fn always_waits_for_the_daemon_after_a_user_stop_and_unless_stopped_for_the_user() {
        let always = policy(Restart::Always);
        let unless = policy(Restart::UnlessStopped);
        for p in [&always, &unless] {
            assert_eq!(
                p.after_exit(&exited(0, 5, false), Seen::Live),
                AfterExit::Restart
            );
            assert_eq!(
                p.after_exit(&exited(0, 0, true), Seen::Live),
                AfterExit::Nothing
            );
        }
        assert_eq!(
            always.after_exit(&exited(0, 0, true), Seen::AtDaemonStart),
            AfterExit::Restart
        );
        assert_eq!(
            unless.after_exit(&exited(0, 0, true), Seen::AtDaemonStart),
            AfterExit::Nothing
        );
    }

    #[test]
    fn auto_remove_removes_whatever_the_exit() {
        let p = ExitPolicy {
            restart: Restart::No,
            auto_remove: true,
        };
        for r in [exited(0, 0, false), exited(1, 0, true)] {
            assert_eq!(p.after_exit(&r, Seen::Live), AfterExit::Remove);
        }
    }

    #[test]
    fn back_off_doubles_to_a_minute_and_resets_after_a_long_run() {
        let short = Duration::from_secs(1);
        let mut d = next_delay(None, short);
        assert_eq!(d, FIRST_DELAY);
        let mut seen = vec![d];
        for _ in 0..12 {
            d = next_delay(Some(d), short);
            seen.push(d);
        }
        assert_eq!(seen[1], Duration::from_millis(200));
        assert_eq!(seen[2], Duration::from_millis(400));
        assert_eq!(*seen.last().expect("delays"), MAX_DELAY);
        assert_eq!(next_delay(Some(MAX_DELAY), RESET_AFTER), FIRST_DELAY);
    }

    #[test]
    fn policies_keep_docker_names() {
        for (name, n) in [
            ("no", 0),
            ("always", 0),
            ("unless-stopped", 0),
            ("on-failure", 3),
        ] {
            let r = Restart::from_docker(name, n).expect("a known policy");
            assert_eq!(r.docker(), (name, n));
        }
        assert_eq!(Restart::from_docker("", 0), Some(Restart::No));
        assert_eq!(Restart::from_docker("sometimes", 0), None);
    }
}
