//! Docker health checks, owned by the engine: a container's health config
//! (its image's `Healthcheck` merged with the create request's, kept in the
//! container record) and its health state (kept in the `health` table, apart
//! from the container record as containerd keeps status apart from metadata,
//! so probe results and other record writers never overwrite each other).
//!
//! ```text
//!  start ──> starting ──probe exits 0──────────────────────> healthy
//!               │  failures inside the start period do not count   │
//!               └─ `retries` failures in a row ──> unhealthy <─────┘
//!                                                   └─ probe exits 0 ─> healthy
//! ```
//! Every result goes to the log (the last [`MAX_LOG`]); a success resets the
//! failing streak. Each status change is a `health_status: <status>` event.
//! A (re)start of the container sets `starting` and a streak of 0 again and
//! keeps the log, as Docker does; a berthd restart keeps the state and the
//! runner resumes ([`runner`]).

pub mod probe;
pub mod runner;

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::Error;

/// Probe output kept per result (more is cut and marked with `...`).
pub const MAX_OUTPUT: usize = 4096;
/// Results kept in the log.
pub const MAX_LOG: usize = 5;
/// Docker's defaults for a zero field.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_START_PERIOD: Duration = Duration::ZERO;
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_RETRIES: i64 = 3;

/// Docker clients send `null` for unset fields; it reads as the default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Docker's `Healthcheck` (durations in nanoseconds, 0 = Docker's default),
/// serialised as Docker's API has it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["CMD", args…]`, `["CMD-SHELL", command]`, `["NONE"]`; empty = inherit.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub interval: i64,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub timeout: i64,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub start_period: i64,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub start_interval: i64,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub retries: i64,
}

impl HealthConfig {
    /// Refuses what Docker's daemon refuses at create.
    pub fn validate(&self) -> Result<(), Error> {
        const MIN: i64 = 1_000_000; // 1 ms
        for (name, v) in [
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("StartPeriod", self.start_period),
            ("StartInterval", self.start_interval),
        ] {
            if v != 0 && v < MIN {
                return Err(Error::InvalidArgument(format!(
                    "{name} in Healthcheck cannot be less than 1ms"
                )));
            }
        }
        if self.retries < 0 {
            return Err(Error::InvalidArgument(
                "Retries in Healthcheck cannot be negative".into(),
            ));
        }
        Ok(())
    }

    /// The create request's check over the image's, as Docker merges them:
    /// no check in the request takes the image's; fields the request leaves
    /// empty or zero come from the image's. `["NONE"]` stays (it disables).
    pub fn merge(request: Option<HealthConfig>, image: Option<&HealthConfig>) -> Option<Self> {
        let Some(mut c) = request else {
            return image.cloned();
        };
        if let Some(i) = image {
            if c.test.is_empty() {
                c.test.clone_from(&i.test);
            }
            for (mine, theirs) in [
                (&mut c.interval, i.interval),
                (&mut c.timeout, i.timeout),
                (&mut c.start_period, i.start_period),
                (&mut c.start_interval, i.start_interval),
                (&mut c.retries, i.retries),
            ] {
                if *mine == 0 {
                    *mine = theirs;
                }
            }
        }
        Some(c)
    }

    /// The probe's argv, or `None` when nothing is checked (no test, `NONE`,
    /// an unknown type). `CMD-SHELL` runs with `shell` (`/bin/sh -c` when empty).
    pub fn probe_argv(&self, shell: &[String]) -> Option<Vec<String>> {
        let (kind, rest) = self.test.split_first()?;
        let argv: Vec<String> = match kind.as_str() {
            "CMD" => rest.to_vec(),
            "CMD-SHELL" => {
                let sh: Vec<String> = if shell.is_empty() {
                    vec!["/bin/sh".into(), "-c".into()]
                } else {
                    shell.to_vec()
                };
                sh.into_iter().chain(rest.iter().cloned()).collect()
            }
            _ => return None,
        };
        (!argv.is_empty()).then_some(argv)
    }

    /// True when this config runs a probe.
    pub fn enabled(&self) -> bool {
        self.probe_argv(&[]).is_some()
    }

    pub fn interval(&self) -> Duration {
        nanos_or(self.interval, DEFAULT_INTERVAL)
    }
    pub fn timeout(&self) -> Duration {
        nanos_or(self.timeout, DEFAULT_TIMEOUT)
    }
    pub fn start_period(&self) -> Duration {
        nanos_or(self.start_period, DEFAULT_START_PERIOD)
    }
    pub fn start_interval(&self) -> Duration {
        nanos_or(self.start_interval, DEFAULT_START_INTERVAL)
    }
    pub fn retries(&self) -> i64 {
        if self.retries <= 0 {
            DEFAULT_RETRIES
        } else {
            self.retries
        }
    }

    /// How long to wait before the next probe, `elapsed` after the
    /// container started: inside the start period the start interval while
    /// still `starting`, and never past the period's end.
    pub fn next_wait(&self, elapsed: Duration, status: HealthStatus) -> Duration {
        let (interval, period) = (self.interval(), self.start_period());
        if elapsed >= period {
            return interval;
        }
        let left = period - elapsed;
        if left < interval {
            return left;
        }
        if status == HealthStatus::Starting {
            self.start_interval()
        } else {
            interval
        }
    }
}

fn nanos_or(n: i64, default: Duration) -> Duration {
    if n <= 0 {
        default
    } else {
        Duration::from_nanos(n as u64)
    }
}

/// A health status as Docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Unix nanoseconds.
    pub start: i64,
    pub end: i64,
    /// -1 when the probe timed out or could not run.
    pub exit_code: i64,
    pub output: String,
}

/// A container's health, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthState {
    pub status: HealthStatus,
    pub failing_streak: i64,
    /// The last results, oldest first.
    pub log: Vec<ProbeResult>,
}

impl HealthState {
    /// The state of a container that has just started (`previous` keeps its log).
    pub fn started(previous: Option<HealthState>) -> Self {
        HealthState {
            status: HealthStatus::Starting,
            failing_streak: 0,
            log: previous.map(|p| p.log).unwrap_or_default(),
        }
    }

    /// Applies a probe's result for a container started at `started_at`
    /// (unix nanoseconds); true when the status changed.
    pub fn record(&mut self, result: ProbeResult, cfg: &HealthConfig, started_at: i64) -> bool {
        let before = self.status;
        let in_start_period = self.status == HealthStatus::Starting
            && (result.start - started_at) < cfg.start_period().as_nanos() as i64;
        if result.exit_code == 0 {
            self.failing_streak = 0;
            self.status = HealthStatus::Healthy;
        } else if !in_start_period {
            self.failing_streak += 1;
            if self.failing_streak >= cfg.retries() {
                self.status = HealthStatus::Unhealthy;
            }
        }
        self.log.push(result);
        if self.log.len() > MAX_LOG {
            let extra = self.log.len() - MAX_LOG;
            self.log.drain(..extra);
        }
        self.status != before
    }
}

/// Probe output as Docker keeps it: the first [`MAX_OUTPUT`] bytes, `...`
/// appended when more was written.
pub fn limited_output(bytes: &[u8], truncated: bool) -> String {
    let keep = &bytes[..bytes.len().min(MAX_OUTPUT)];
    let mut s = String::from_utf8_lossy(keep).into_owned();
    if truncated || bytes.len() > MAX_OUTPUT {
        s.push_str("...");
    }
    s
}

/// A duration as Go prints it (`30s`, `1.5s`, `500ms`, `1m30s`), for
/// Docker's timeout message.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let (unit, div) = if ns < 1_000 {
            ("ns", 1)
        } else if ns < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", trim_fraction(ns, div));
    }
    let secs = ns / 1_000_000_000;
    let (h, m) = (secs / 3600, (secs % 3600) / 60);
    let s = trim_fraction(ns % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// `n / div` with its fraction, trailing zeros dropped (`1.5`, `2`).
fn trim_fraction(n: u128, div: u128) -> String {
    let (whole, frac) = (n / div, n % div);
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let f = format!("{frac:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

impl super::Engine {
    /// The `Healthcheck` of an image's config: Docker's field beside the
    /// OCI ones (berth's builder writes it for HEALTHCHECK); a malformed one
    /// is ignored, as an image's unknown fields are.
    pub async fn image_healthcheck(
        &self,
        image: &crate::image::ImageRecord,
    ) -> Result<Option<HealthConfig>, Error> {
        let bytes = self.images.read_blob(&image.id).await?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Ok(v.pointer("/config/Healthcheck")
            .filter(|h| !h.is_null())
            .and_then(|h| serde_json::from_value(h.clone()).ok()))
    }

    /// The shell `CMD-SHELL` probes of a container run with: its image's
    /// `Shell` (Dockerfile SHELL), empty for Docker's `/bin/sh -c` (also
    /// when the image is gone).
    pub(crate) async fn probe_shell(&self, rec: &super::records::ContainerRecord) -> Vec<String> {
        let Ok(Some(image)) = self.images.resolve(&rec.image_id) else {
            return Vec::new();
        };
        let Ok(bytes) = self.images.read_blob(&image.id).await else {
            return Vec::new();
        };
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.pointer("/config/Shell").cloned())
            .and_then(|s| serde_json::from_value::<Vec<String>>(s).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
