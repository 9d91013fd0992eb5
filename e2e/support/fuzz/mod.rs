//! A seeded request fuzzer for berthd's two front doors: malformed and
//! randomised Docker API requests (raw HTTP/1.1 on the unix socket, so
//! broken request lines, bodies and encodings reach the server as sent) and
//! CRI calls (every RPC, typed messages with hostile fields, and raw bytes
//! that are no protobuf at all).
//!
//! Everything stays on the daemon's unix sockets; image names are drawn
//! from a pool that resolves only to the loopback registry (or to
//! `docker.io`, which the fuzz daemon mirrors there with `mirrors_only`),
//! binds only name the fuzz temp dir, and network modes never name a
//! network the fuzzer can create, so no request leaves 127.0.0.0/8 or
//! touches the host's bridges.
//!
//! A run is bounded by a request count and a time limit. The [`Tally`]
//! counts answers by class; a 5xx (other than 501, "not built") or a gRPC
//! `Internal`/`Unknown`/`DataLoss` is kept as an example for the report.

mod cri;
mod docker;
mod stream;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use self::cri::fuzz_cri;
use self::docker::{fuzz_docker, send_raw};
use self::stream::{fuzz_streams, leftover_execs};

/// How long one request may take before it counts as a timeout.
const REQUEST_LIMIT: Duration = Duration::from_secs(15);
/// How long a response body is read before the connection is dropped
/// (streams such as `/events` never end).
const BODY_LIMIT: Duration = Duration::from_millis(300);

/// xorshift64*: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Answers counted by class, with examples of server faults.
#[derive(Default, Debug)]
pub struct Tally {
    pub classes: BTreeMap<String, u64>,
    /// Server faults for what the fuzzer sent: (request, answer).
    pub faults: Vec<(String, String)>,
    pub fault_count: u64,
    pub requests: u64,
    /// Examples of answers that are neither faults nor plain errors
    /// (connections closed without an answer, unusual codes).
    pub notes: Vec<(String, String)>,
}

impl Tally {
    fn count(&mut self, class: &str) {
        *self.classes.entry(class.to_string()).or_default() += 1;
        self.requests += 1;
    }
    fn note(&mut self, what: String, answer: String) {
        if self.notes.len() < 12 {
            self.notes.push((what, answer));
        }
    }
    fn fault(&mut self, what: String, answer: String) {
        self.fault_count += 1;
        if self.faults.len() < 20 {
            self.faults.push((what, answer));
        }
    }
    /// One line per class, then the first faults.
    pub fn report(&self) -> String {
        let mut s = format!("requests: {}\n", self.requests);
        for (k, v) in &self.classes {
            s.push_str(&format!("  {k}: {v}\n"));
        }
        s.push_str(&format!("server faults: {}\n", self.fault_count));
        for (w, a) in &self.faults {
            s.push_str(&format!("  {w}\n    -> {a}\n"));
        }
        s.push_str("notes:\n");
        for (w, a) in &self.notes {
            s.push_str(&format!("  {w}\n    -> {a}\n"));
        }
        s
    }
}

/// What the fuzzer may name: the fixtures the run set up.
pub struct Targets {
    /// Docker ids and names of containers that exist (running, exited).
    pub containers: Vec<String>,
    /// The busybox image in the loopback registry (`127.0.0.1:P/test/busybox:v1`).
    pub image: String,
    /// A directory binds may name.
    pub bind_dir: PathBuf,
    /// A real image archive (`docker save`), cut short or broken by the fuzzer.
    pub archive: Vec<u8>,
}

fn huge(n: usize) -> String {
    "A".repeat(n)
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &s[..end], s.len())
}

// ---------------------------------------------------------------------------
// a whole campaign: fixtures, fuzzing, invariants

/// What a campaign measured and found.
#[derive(Debug, Default)]
pub struct Campaign {
    pub tally: Tally,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub fds_before: usize,
    pub fds_after: usize,
    /// `berth_panics_total` after the run.
    pub panics: u64,
    /// The daemon answered `/_ping` and was still running at the end.
    pub alive: bool,
    /// Objects the fuzzer's requests made (listed by the API, then removed).
    pub made: Vec<String>,
    /// What was left on the host after everything listed was removed.
    pub leftovers: Vec<String>,
    pub elapsed: Duration,
}

impl Campaign {
    pub fn report(&self) -> String {
        format!(
            "{}elapsed: {:.1} s\nberthd RSS: {} KiB before, {} KiB after\nberthd fds: {} before, {} after\npanics: {}\nalive: {}\nobjects made by requests (removed through the API): {}\nleft behind: {:?}\n",
            self.tally.report(),
            self.elapsed.as_secs_f64(),
            self.rss_before_kib,
            self.rss_after_kib,
            self.fds_before,
            self.fds_after,
            self.panics,
            self.alive,
            self.made.len(),
            self.leftovers,
        )
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The pod sandbox of CRI container `id`.
async fn pod_of(e: &crate::support::docker::DockerEnv, id: &str) -> String {
    let channel = e.d.cri_channel().await;
    k8s_cri::v1::runtime_service_client::RuntimeServiceClient::new(channel)
        .list_containers(k8s_cri::v1::ListContainersRequest {
            filter: Some(k8s_cri::v1::ContainerFilter {
                id: id.to_string(),
                ..Default::default()
            }),
        })
        .await
        .ok()
        .and_then(|l| l.into_inner().containers.into_iter().next())
        .map(|c| c.pod_sandbox_id)
        .unwrap_or_default()
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn metrics_addr(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("serving metrics"))?;
    let at = line.find("address=")? + "address=".len();
    let rest: String = line[at..]
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .replace("[0m", "")
        .replace("[2m", "")
        .replace("[3m", "");
    rest.split_whitespace().next().map(str::to_string)
}

/// Runs a seeded campaign: `docker` Docker requests, `cri` CRI calls (each
/// half of `limit` at most) and `streams` hostile streaming sessions (a
/// quarter of `limit` at most) against a fresh daemon, then removes
/// everything the API lists and looks for what is left on the host.
pub async fn campaign(
    seed: u64,
    docker: usize,
    cri_calls: usize,
    streams: usize,
    limit: Duration,
) -> Campaign {
    use crate::support::docker::DockerEnv;
    let started = Instant::now();
    let reg = crate::support::registry::TestRegistry::start().await;
    // Names without a registry host resolve to docker.io: mirrored to the
    // loopback registry only, so no request leaves the machine.
    let yaml = format!(
        "{}  docker.io:\n    mirrors: [\"{}\"]\n    mirrors_only: true\n",
        reg.insecure_yaml(),
        reg.url()
    );
    let d = crate::support::daemon::Berthd::start(&yaml).await;
    let img = crate::support::catalog::busybox()
        .label("berth.e2e", "fuzz")
        .build();
    let busybox = img.push_tag(&reg, "test/busybox", "v1").await;
    img.push(&reg, "library/busybox", "latest").await;
    let e = DockerEnv {
        reg,
        d,
        busybox,
        cli_config: crate::support::short_tempdir("dc"),
    };
    let mut images = e.d.image_client().await;
    crate::support::cri::pull_ok(&mut images, &e.busybox).await;
    e.docker(&["run", "-d", "--name", "fzrun", &e.busybox, "sleep", "3600"])
        .ok();
    e.docker(&["run", "--name", "fzexit", &e.busybox, "true"])
        .ok();
    e.docker(&["volume", "create", "fzvol"]).ok();
    let bind_dir = e.dir().join("binds");
    std::fs::create_dir_all(&bind_dir).expect("bind dir");
    let archive_path = e.dir().join("busybox.tar");
    e.docker(&["save", "-o", &archive_path.to_string_lossy(), &e.busybox])
        .ok();
    let archive = std::fs::read(&archive_path).expect("saved archive");
    let ids = e.docker(&["ps", "-aq", "--no-trunc"]).ok();
    let mut containers: Vec<String> = ids.out().lines().map(String::from).collect();
    containers.extend(["fzrun".into(), "fzexit".into(), "fzvol".into()]);
    let targets = Targets {
        containers,
        image: e.busybox.clone(),
        bind_dir,
        archive,
    };
    let log_dir = e.dir().join("pod-logs");
    std::fs::create_dir_all(&log_dir).expect("pod log dir");

    let pid = e.d.pid();
    let mut c = Campaign {
        rss_before_kib: rss_kib(pid),
        fds_before: fd_count(pid),
        ..Default::default()
    };
    let mut r = Rng::new(seed);
    let socket = e.docker_socket();
    fuzz_docker(&socket, &targets, &mut r, docker, limit / 2, &mut c.tally).await;
    let channel = e.d.cri_channel().await;
    fuzz_cri(
        channel,
        &log_dir,
        &e.busybox,
        &mut r,
        cri_calls,
        limit / 2,
        &mut c.tally,
    )
    .await;
    // The streaming server, through a container of its own (the fuzzed
    // requests above may have removed the fixtures).
    let mut stream_leftovers = Vec::new();
    if streams > 0 {
        let id = e
            .docker(&[
                "run", "-d", "--name", "fzstream", &e.busybox, "sleep", "3600",
            ])
            .ok()
            .out()
            .trim()
            .to_string();
        let channel = e.d.cri_channel().await;
        let pod = pod_of(&e, &id).await;
        fuzz_streams(
            channel.clone(),
            &id,
            &pod,
            &mut r,
            streams,
            limit / 4,
            &mut c.tally,
        )
        .await;
        // A session's exec ends with its connection (the stream-creation
        // wait is 30 s when a client never opens its streams).
        let left = leftover_execs(channel, &id, Duration::from_secs(40)).await;
        if left > 0 {
            stream_leftovers.push(format!(
                "{left} exec processes of fuzzed streaming sessions still running"
            ));
        }
    }

    // Streams and hijacked sessions the fuzzer dropped wind down.
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.rss_after_kib = rss_kib(pid);
    c.fds_after = fd_count(pid);
    let ping = send_raw(
        &socket,
        b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
        false,
    )
    .await;
    let log = e.d.log();
    c.panics = metrics_addr(&log)
        .and_then(|a| {
            let text = std::process::Command::new("curl")
                .args(["-s", &format!("http://{a}/metrics")])
                .output()
                .ok()?;
            metric(&String::from_utf8_lossy(&text.stdout), "berth_panics_total")
        })
        .map_or(u64::MAX, |v| v as u64);

    // Remove everything the two doors list; what the fuzzer made counts.
    let (made, unremovable) =
        crate::support::sweep::remove_everything(&e, &targets.containers).await;
    c.made = made;
    c.leftovers = unremovable;
    c.alive = ping.is_ok_and(|(code, _)| code == 200) && e.d.pid() == pid;
    c.leftovers.extend(stream_leftovers);
    c.leftovers.extend(crate::support::sweep::leftovers(&e.d));
    if log.contains(crate::support::daemon::PANIC_MARK) {
        c.leftovers.push("panics in the daemon log".into());
    }
    c.elapsed = started.elapsed();
    drop(e);
    c
}
