//! Prometheus metrics: the families berth exports, their text encoding, the
//! `/metrics` endpoint, and the request layers for the CRI and Docker front doors.
//!
//! One process-wide [`Metrics`] lives behind [`global()`]. The recording points sit
//! in unrelated places (a tower layer on the CRI server, axum middleware, image
//! pulls deep inside the engine), and threading a handle through every constructor
//! would buy nothing: a process has exactly one set of counters to export. Code that
//! wants its own registry (tests asserting on values) builds a [`Metrics`] and hands
//! it to [`GrpcMetricsLayer::with`] or calls its methods directly.
//!
//! Families (all but the process ones prefixed `berth_`):
//! * `berth_requests_total{api,method,code}`, `berth_request_duration_seconds{api,method}`
//!   — `api` is `cri` (method `PullImage`, code a gRPC code name such as `NotFound`)
//!   or `docker` (method `GET /containers/{id}/json`, code the HTTP status);
//! * `berth_image_pulls_total{result}`, `berth_image_pull_bytes_total`,
//!   `berth_image_pull_duration_seconds`;
//! * `berth_images`, `berth_build_info{version}`;
//! * `berth_pods{state}`, `berth_containers{state}`, `berth_monitor_processes`,
//!   `berth_container_cpu_usage_seconds{container,name,pod,namespace}`,
//!   `berth_container_memory_working_set_bytes{…}` (read from the engine at scrape time),
//!   `berth_container_start_duration_seconds`, `berth_oom_kills_total`,
//!   `berth_cni_operations_total{operation,result}`, `berth_cni_operation_duration_seconds{operation}`;
//! * `berth_panics_total` (every panic in the daemon, caught or not),
//!   `berth_monitor_events_total{event}` (`error`: a monitor failed to create its
//!   container; `panic`, `killed`: a monitor ended without recording an exit;
//!   `restart`: a new monitor for an exited container, Docker's start/restart);
//! * `process_*` from the process collector (RSS, CPU, fds, threads, start time).

mod docker;
mod grpc;
mod runtime;
mod server;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tracing::warn;

pub use docker::track_docker;
pub use grpc::{GrpcMetrics, GrpcMetricsLayer, RecordedBody};
pub use runtime::{ContainerUsage, RuntimeSnapshot};
pub use server::{router, serve, Server};

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Request latency buckets, 1 ms to 60 s.
const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Image pull buckets, 100 ms to 10 min: pulls of large images over slow links are long.
const PULL_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// The `event` values of `berth_monitor_events_total`.
pub const MONITOR_EVENTS: &[&str] = &["error", "panic", "killed", "restart"];

/// A callback that counts the recorded images; `None` when it cannot tell.
type ImageCounter = Box<dyn Fn() -> Option<u64> + Send + Sync>;

/// Every metric berth exports, in one registry.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    pulls: IntCounterVec,
    pull_bytes: IntCounter,
    pull_duration: Histogram,
    images: ImageGauge,
    runtime: runtime::RuntimeCollector,
    container_start: Histogram,
    oom_kills: IntCounter,
    cni_ops: IntCounterVec,
    cni_duration: HistogramVec,
    panics: IntCounter,
    monitor_events: IntCounterVec,
}

/// The process-wide metrics, created on first use.
pub fn global() -> &'static Metrics {
    static GLOBAL: OnceLock<Metrics> = OnceLock::new();
    GLOBAL.get_or_init(Metrics::new)
}

/// The process-wide metrics in the text exposition format.
pub fn encode() -> String {
    global().encode()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry holding berth's families and the process collector.
    pub fn new() -> Metrics {
        let requests = IntCounterVec::new(
            Opts::new(
                "berth_requests_total",
                "API requests handled, by API, method and result code.",
            ),
            &["api", "method", "code"],
        )
        .expect("valid requests_total");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "berth_request_duration_seconds",
                "Time taken to handle API requests, by API and method.",
            )
            .buckets(REQUEST_BUCKETS.to_vec()),
            &["api", "method"],
        )
        .expect("valid request_duration_seconds");
        let pulls = IntCounterVec::new(
            Opts::new(
                "berth_image_pulls_total",
                "Image pulls, by result (success or failure).",
            ),
            &["result"],
        )
        .expect("valid image_pulls_total");
        // Both series exist from the start, so rate() works before the first failure.
        pulls.with_label_values(&["success"]);
        pulls.with_label_values(&["failure"]);
        let pull_bytes = IntCounter::new(
            "berth_image_pull_bytes_total",
            "Size of successfully pulled images (config and compressed layers), in bytes.",
        )
        .expect("valid image_pull_bytes_total");
        let pull_duration = Histogram::with_opts(
            HistogramOpts::new(
                "berth_image_pull_duration_seconds",
                "Time taken by successful image pulls.",
            )
            .buckets(PULL_BUCKETS.to_vec()),
        )
        .expect("valid image_pull_duration_seconds");
        let images = ImageGauge {
            gauge: IntGauge::new("berth_images", "Images recorded in the image store.")
                .expect("valid images"),
            source: Arc::new(RwLock::new(None)),
        };
        let build_info = IntGaugeVec::new(
            Opts::new(
                "berth_build_info",
                "Always 1; labelled with the berth version.",
            ),
            &["version"],
        )
        .expect("valid build_info");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let runtime = runtime::RuntimeCollector::new();
        let container_start = Histogram::with_opts(
            HistogramOpts::new(
                "berth_container_start_duration_seconds",
                "Time from CreateContainer to a running container (create plus start).",
            )
            .buckets(REQUEST_BUCKETS.to_vec()),
        )
        .expect("valid container_start_duration_seconds");
        let oom_kills = IntCounter::new(
            "berth_oom_kills_total",
            "Containers whose exit was an OOM kill, as recorded by their monitors.",
        )
        .expect("valid oom_kills_total");
        let cni_ops = IntCounterVec::new(
            Opts::new(
                "berth_cni_operations_total",
                "CNI operations, by operation (add, del) and result.",
            ),
            &["operation", "result"],
        )
        .expect("valid cni_operations_total");
        let cni_duration = HistogramVec::new(
            HistogramOpts::new(
                "berth_cni_operation_duration_seconds",
                "Time taken by CNI operations.",
            )
            .buckets(REQUEST_BUCKETS.to_vec()),
            &["operation"],
        )
        .expect("valid cni_operation_duration_seconds");
        let panics = IntCounter::new(
            "berth_panics_total",
            "Panics in the daemon (each one is a bug; the request it hit got an error).",
        )
        .expect("valid panics_total");
        let monitor_events = IntCounterVec::new(
            Opts::new(
                "berth_monitor_events_total",
                "Container monitor incidents, by event (error, panic, killed, restart).",
            ),
            &["event"],
        )
        .expect("valid monitor_events_total");
        for e in MONITOR_EVENTS {
            monitor_events.with_label_values(&[e]);
        }
        let registry = Registry::new();
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(requests.clone()),
            Box::new(request_duration.clone()),
            Box::new(pulls.clone()),
            Box::new(pull_bytes.clone()),
            Box::new(pull_duration.clone()),
            Box::new(images.clone()),
            Box::new(runtime.clone()),
            Box::new(container_start.clone()),
            Box::new(oom_kills.clone()),
            Box::new(cni_ops.clone()),
            Box::new(cni_duration.clone()),
            Box::new(panics.clone()),
            Box::new(monitor_events.clone()),
            Box::new(build_info),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for c in collectors {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            request_duration,
            pulls,
            pull_bytes,
            pull_duration,
            images,
            runtime,
            container_start,
            oom_kills,
            cni_ops,
            cni_duration,
            panics,
            monitor_events,
        }
    }

    /// A panic happened (called from the panic hook: no locks, no allocation).
    pub fn panicked(&self) {
        self.panics.inc();
    }

    /// Panics counted so far.
    pub fn panics(&self) -> u64 {
        self.panics.get()
    }

    /// A monitor incident (one of [`MONITOR_EVENTS`]).
    pub fn monitor_event(&self, event: &str) {
        self.monitor_events.with_label_values(&[event]).inc();
    }

    /// Sets how the runtime families are read: `probe` runs on every scrape.
    pub fn probe_runtime_with(
        &self,
        probe: impl Fn() -> Option<RuntimeSnapshot> + Send + Sync + 'static,
    ) {
        *self
            .runtime
            .probe
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Box::new(probe));
    }

    /// A container reached running this long after its CreateContainer.
    pub fn observe_container_start(&self, elapsed: Duration) {
        self.container_start.observe(elapsed.as_secs_f64());
    }

    /// A CNI ADD or DEL finished.
    pub fn observe_cni(&self, op: &str, ok: bool, elapsed: Duration) {
        let result = if ok { "success" } else { "failure" };
        self.cni_ops.with_label_values(&[op, result]).inc();
        self.cni_duration
            .with_label_values(&[op])
            .observe(elapsed.as_secs_f64());
    }

    /// A container was OOM-killed.
    pub fn count_oom_kill(&self) {
        self.oom_kills.inc();
    }

    /// The registry, for collectors other modules want to add.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records one handled request.
    pub fn observe_request(&self, api: &str, method: &str, code: &str, elapsed: Duration) {
        self.requests.with_label_values(&[api, method, code]).inc();
        self.request_duration
            .with_label_values(&[api, method])
            .observe(elapsed.as_secs_f64());
    }

    /// Starts timing an image pull; a timer dropped without [`PullTimer::success`]
    /// counts as a failure, so a cancelled pull is counted too.
    pub fn start_pull(&self) -> PullTimer<'_> {
        PullTimer {
            metrics: self,
            started: Instant::now(),
            done: false,
        }
    }

    /// Sets how `berth_images` is counted: `count` runs on every scrape (off the
    /// async workers). It should hold only a weak reference to what it counts.
    pub fn count_images_with(&self, count: impl Fn() -> Option<u64> + Send + Sync + 'static) {
        let mut source = self
            .images
            .source
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *source = Some(Box::new(count));
    }

    /// Every family in the text exposition format. May block (scrape callbacks).
    pub fn encode(&self) -> String {
        let families = self.registry.gather();
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut out) {
            warn!(error = %e, "failed to encode metrics");
        }
        out
    }
}

/// Times one image pull; see [`Metrics::start_pull`].
pub struct PullTimer<'a> {
    metrics: &'a Metrics,
    started: Instant,
    done: bool,
}

impl PullTimer<'_> {
    /// Records a successful pull of an image of `bytes` bytes.
    pub fn success(mut self, bytes: u64) {
        self.done = true;
        let m = self.metrics;
        m.pulls.with_label_values(&["success"]).inc();
        m.pull_bytes.inc_by(bytes);
        m.pull_duration
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for PullTimer<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.metrics.pulls.with_label_values(&["failure"]).inc();
        }
    }
}

/// `berth_images`: a gauge refreshed from a callback at scrape time, so removals
/// and pulls by any path are reflected without each one updating it.
#[derive(Clone)]
struct ImageGauge {
    gauge: IntGauge,
    source: Arc<RwLock<Option<ImageCounter>>>,
}

impl Collector for ImageGauge {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let source = self.source.read().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = source.as_ref().and_then(|count| count()) {
            self.gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.gauge.collect()
    }
}
