//! The records' format version and the migrations between versions, run
//! once at start-up in one transaction, so a berthd upgraded over running
//! containers keeps them (and a crash during a migration leaves the old
//! version, migrated again at the next start).
//!
//! * 1: every berth before the format had a version.
//! * 2: a container's exit policy (restart policy, auto-remove) is a typed
//!   field of its record instead of only a part of the Docker create
//!   request kept in an annotation.
//! * 3: its stop signal and grace period (Docker's `StopSignal`,
//!   `StopTimeout`) are typed too, instead of an annotation of their own
//!   and a part of the create request.

use serde_json::Value;
use tracing::info;

use super::docker::{CONFIG_ANNOTATION, STOP_SIGNAL_ANNOTATION};
use super::records::{ContainerRecord, ExitPolicy, Restart, StopPolicy};
use super::{Engine, Error};
use crate::store::{CONTAINERS, META};

/// The version this berthd writes.
pub const SCHEMA: u32 = 3;
const SCHEMA_KEY: &str = "schema";

impl Engine {
    /// Brings the records to [`SCHEMA`]. A store of a newer berth is
    /// refused rather than misread.
    pub(crate) fn migrate_records(&self) -> Result<(), Error> {
        let version = self.store.get::<u32>(META, SCHEMA_KEY)?.unwrap_or(1);
        if version > SCHEMA {
            return Err(Error::FailedPrecondition(format!(
                "the metadata store is of format {version}, newer than this berthd's {SCHEMA}: run the newer berthd"
            )));
        }
        if version == SCHEMA {
            return Ok(());
        }
        // Read before the one write: nothing else runs this early.
        let mut changed = Vec::new();
        for (id, mut rec) in self.store.list::<ContainerRecord>(CONTAINERS)? {
            let mut touched = false;
            if version < 2 {
                if let Some(policy) = docker_exit_policy(&rec) {
                    rec.exit_policy = policy;
                    touched = true;
                }
            }
            if version < 3 {
                if let Some(stop) = docker_stop_policy(&rec) {
                    rec.stop = stop;
                    touched = true;
                }
            }
            if touched {
                changed.push((id, rec));
            }
        }
        let migrated = changed.len();
        self.store.write(|w| {
            for (id, rec) in &changed {
                w.put(CONTAINERS, id, rec)?;
            }
            w.put(META, SCHEMA_KEY, &SCHEMA)?;
            Ok::<_, Error>(())
        })?;
        info!(
            from = version,
            to = SCHEMA,
            containers = migrated,
            "migrated the records"
        );
        Ok(())
    }
}

/// The exit policy in a Docker container's create request (its
/// annotation), if it has one other than the default.
fn docker_exit_policy(rec: &ContainerRecord) -> Option<ExitPolicy> {
    let req: Value = serde_json::from_str(rec.config.annotations.get(CONFIG_ANNOTATION)?).ok()?;
    let hc = req.get("HostConfig")?;
    let auto_remove = hc.get("AutoRemove").and_then(Value::as_bool) == Some(true);
    let rp = hc.get("RestartPolicy");
    let name = rp
        .and_then(|p| p.get("Name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let max = rp
        .and_then(|p| p.get("MaximumRetryCount"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let policy = ExitPolicy {
        restart: Restart::from_docker(name, u32::try_from(max).unwrap_or(u32::MAX))
            .unwrap_or_default(),
        auto_remove,
    };
    (policy != ExitPolicy::default()).then_some(policy)
}

/// The stop signal and grace period a Docker container of an older berth
/// kept in annotations, if it set either.
fn docker_stop_policy(rec: &ContainerRecord) -> Option<StopPolicy> {
    let signal = rec
        .config
        .annotations
        .get(STOP_SIGNAL_ANNOTATION)
        .filter(|s| !s.is_empty())
        .cloned();
    let timeout_secs = rec
        .config
        .annotations
        .get(CONFIG_ANNOTATION)
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|req| req.get("StopTimeout").and_then(Value::as_i64));
    let stop = StopPolicy {
        signal,
        timeout_secs,
    };
    (stop != StopPolicy::default()).then_some(stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_request(req: Value) -> ContainerRecord {
        let mut r = ContainerRecord::sample("c");
        r.config
            .annotations
            .insert(CONFIG_ANNOTATION.into(), req.to_string());
        r
    }

    #[test]
    fn a_version_1_docker_record_gets_its_policy_from_the_request() {
        let r = with_request(serde_json::json!({
            "Image": "busybox",
            "HostConfig": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}}
        }));
        assert_eq!(
            docker_exit_policy(&r),
            Some(ExitPolicy {
                restart: Restart::OnFailure { max_retries: 2 },
                auto_remove: false
            })
        );
        let r = with_request(serde_json::json!({"HostConfig": {"AutoRemove": true}}));
        assert_eq!(
            docker_exit_policy(&r),
            Some(ExitPolicy {
                restart: Restart::No,
                auto_remove: true
            })
        );
    }

    #[test]
    fn a_version_2_docker_record_gets_its_stop_settings_from_the_annotations() {
        let mut r = with_request(serde_json::json!({"Image": "busybox", "StopTimeout": 3}));
        r.config
            .annotations
            .insert(STOP_SIGNAL_ANNOTATION.into(), "SIGUSR1".into());
        assert_eq!(
            docker_stop_policy(&r),
            Some(StopPolicy {
                signal: Some("SIGUSR1".into()),
                timeout_secs: Some(3)
            })
        );
        let r = with_request(serde_json::json!({"Image": "busybox"}));
        assert_eq!(docker_stop_policy(&r), None);
    }

    #[test]
    fn records_without_a_policy_are_left_alone() {
        let r = with_request(serde_json::json!({"HostConfig": {"RestartPolicy": {"Name": "no"}}}));
        assert_eq!(docker_exit_policy(&r), None);
        let r = with_request(serde_json::json!("not an object"));
        assert_eq!(docker_exit_policy(&r), None);
        let mut cri = with_request(Value::Null);
        cri.config.annotations.clear();
        assert_eq!(docker_exit_policy(&cri), None);
    }
}
