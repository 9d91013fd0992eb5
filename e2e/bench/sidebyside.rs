//! Side-by-side benchmark: the same CRI calls, with the same pod and
//! container configs, against berthd and against Debian's containerd 1.6,
//! on one machine in the same run.
//!
//! Both daemons run at the same time, each with its own root, state and
//! socket, on one CNI network the benchmark makes (bridge + host-local +
//! portmap, its own bridge name and a free private /24, removed by the
//! network guard of `e2e/network/testnet.rs`). Pods have a shared PID
//! namespace (CRI's default `pid = POD`), a log directory, and containers a
//! CRI log file; images (busybox, and the pause image containerd needs) are
//! built from busybox-static and pulled from a registry on 127.0.0.1. Both
//! use crun as the OCI runtime (containerd through its runc v2 shim).
//!
//! Per sample, each side runs a pod life cycle, every call timed on its own:
//! RunPodSandbox → CreateContainer (`exec sleep 1000`) → StartContainer →
//! StopContainer → RemoveContainer → StopPodSandbox → RemovePodSandbox;
//! and "pod + container to first log line": RunPodSandbox →
//! CreateContainer (`echo hi`) → StartContainer, until the CRI log file has
//! the line (polled every 1 ms). The sides alternate which goes first.
//! Then, with a few pods running one `sleep` container each: ListImages,
//! ListContainers, ListPodSandbox, and memory (RSS from `status`, PSS from
//! `smaps_rollup`) of the daemons and of each pod's own processes.
//!
//! Last, on berth alone: 250 pods with one container each, 10 at a time
//! (`scale.rs`; `BERTH_BENCH_SCALE_PODS=N`, 0 skips it).
//!
//! `cargo bench --bench sidebyside` runs it all (20 samples per call;
//! `BERTH_BENCH_SAMPLES=N` for more; `BERTH_BENCH_CONTAINERD_OCI=PATH` for
//! another OCI runtime under containerd's shim; `BERTH_BENCH_BERTHD=PATH`
//! for another berthd, e.g. `target/dist/berthd` from `config/build.sh`,
//! with its static `berth-monitor` beside it). Without containerd
//! installed it runs berth alone. Under `cargo test` (no `--bench`) it
//! checks berth only, with one sample and two pods, and asserts only that
//! every step worked.

#[path = "sidebyside/procs.rs"]
mod procs;
#[path = "sidebyside/report.rs"]
mod report;
#[path = "sidebyside/scale.rs"]
mod scale;
#[path = "../support/mod.rs"]
mod support;
#[path = "../network/testnet.rs"]
#[allow(dead_code)]
mod testnet;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    CreateContainerRequest, ListContainersRequest, ListImagesRequest, ListPodSandboxRequest,
    NamespaceMode, PodSandboxConfig, RemoveContainerRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
};
use tonic::transport::Channel;

use report::{Calls, Memory};
use support::containerd::{self, Containerd, ContainerdConfig};
use support::daemon::Berthd;
use support::registry::TestRegistry;
use support::{catalog, pods};
use testnet::{Plugins, TestNet, CNI_BIN};

type RuntimeClient = RuntimeServiceClient<Channel>;
type ImageClient = ImageServiceClient<Channel>;
type BenchResult<T> = Result<T, String>;

/// Samples per call in the full run.
const SAMPLES: usize = 20;
/// Pods running while the list calls and memory are measured.
const PODS: usize = 5;
/// The pause image's command: a static busybox sleeping "forever".
const PAUSE_CMD: &[&str] = &["/bin/sleep", "2147483647"];
/// The OCI runtime of both sides (berth's default handler).
const OCI_RUNTIME: &str = "/usr/bin/crun";
/// Safety net for one CRI call; not a timing assertion.
const CALL_LIMIT: Duration = Duration::from_secs(120);
/// Safety net for the first log line.
const LOG_LIMIT: Duration = Duration::from_secs(60);

/// One daemon under test and its clients.
pub struct Side {
    pub name: &'static str,
    rc: RuntimeClient,
    ic: ImageClient,
    pub daemon: procs::Daemon,
    logs: PathBuf,
    n: usize,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(run(full));
}

async fn run(full: bool) {
    let samples = if full { SAMPLES } else { 1 };
    let samples = std::env::var("BERTH_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(samples);
    let pods = if full { PODS } else { 2 };
    let with_containerd = full && containerd::available();
    if full && !with_containerd {
        println!(
            "{} is not installed: running berth only",
            containerd::CONTAINERD
        );
    }
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    eprintln!("sidebyside: {samples} samples, {pods} pods, {profile} build");

    let reg = TestRegistry::start().await;
    let busybox = catalog::busybox()
        .build()
        .push_tag(&reg, "bench/busybox", "v1")
        .await;
    let pause = catalog::busybox()
        .entrypoint(PAUSE_CMD)
        .cmd(&[])
        .build()
        .push_tag(&reg, "bench/pause", "v1")
        .await;
    let net = TestNet::new(Plugins {
        masq: false,
        portmap: true,
        firewall: false,
    })
    .await;
    net.install();
    let work = support::short_tempdir("sbs");

    let binary = support::daemon::bench_berthd();
    eprintln!("sidebyside: berthd {}", binary.display());
    let mut bd = Berthd::start_binary(
        &binary,
        &format!("{}{}", reg.insecure_yaml(), net.yaml()),
        "info",
    )
    .await;
    let mut ctd = None;
    let mut sides = vec![Side {
        name: "berth",
        rc: bd.runtime_client().await,
        ic: bd.image_client().await,
        daemon: procs::Daemon::Berth {
            pid: bd.pid() as i32,
            state: bd.state(),
        },
        logs: work.path().join("berth"),
        n: 0,
    }];
    let mut outcome = Ok(());
    if with_containerd {
        let oci = std::env::var("BERTH_BENCH_CONTAINERD_OCI").unwrap_or(OCI_RUNTIME.into());
        let cfg = ContainerdConfig {
            cni_conf_dir: &net.conf_dir,
            cni_bin_dir: CNI_BIN,
            sandbox_image: &pause,
            registry: reg.addr(),
            runtime_binary: &oci,
        };
        match Containerd::start(&cfg).await {
            Ok(c) => {
                sides.push(Side {
                    name: "containerd",
                    rc: c.runtime_client().await,
                    ic: c.image_client().await,
                    daemon: procs::Daemon::Containerd {
                        pid: c.pid() as i32,
                        socket: c.socket(),
                    },
                    logs: work.path().join("containerd"),
                    n: 0,
                });
                ctd = Some(c);
            }
            Err(e) => outcome = Err(format!("containerd: {e}")),
        }
    }

    let result = match outcome {
        Ok(()) => measure(&mut sides, &[&busybox, &pause], samples, pods).await,
        Err(e) => Err(e),
    };
    // Whatever happened, leave no pod behind on either side.
    let mut cleanup = Vec::new();
    for s in &mut sides {
        if let Err(e) = remove_all_pods(s).await {
            cleanup.push(format!("{}: {e}", s.name));
        }
    }
    let status = bd.stop();
    support::host::scrub(bd.dir());
    if let Some(c) = ctd.as_mut() {
        cleanup.extend(c.stop().into_iter().map(|p| format!("containerd: {p}")));
    }
    net.finish();
    drop(reg);
    match result {
        Ok(text) if cleanup.is_empty() => {
            assert!(status.success(), "berthd exit on SIGTERM: {status}");
            print!("{text}");
        }
        Ok(_) => panic!("sidebyside: cleanup failed: {cleanup:?}"),
        Err(e) => {
            let ctd_log = ctd.as_ref().map(Containerd::log).unwrap_or_default();
            panic!(
                "sidebyside: {e}\ncleanup: {cleanup:?}\nberthd log:\n{}\ncontainerd log:\n{ctd_log}",
                bd.log()
            )
        }
    }
}

/// Pulls the images, then takes every figure; returns the printed report.
async fn measure(
    sides: &mut [Side],
    images: &[&str],
    samples: usize,
    pods: usize,
) -> BenchResult<String> {
    let busybox = images[0];
    let mut idle = Vec::new();
    for s in sides.iter_mut() {
        for image in images {
            support::cri::pull(&mut s.ic, image)
                .await
                .map_err(|e| format!("{} PullImage {image}: {e:?}", s.name))?;
        }
        idle.push(s.daemon.rss_pss());
    }
    let mut calls: Vec<Calls> = sides.iter().map(|_| Calls::default()).collect();
    // Warm-up, not counted: the first pod also creates the bridge.
    for s in sides.iter_mut() {
        cycle(s, busybox).await?;
        first_log(s, busybox).await?;
    }
    for i in 0..samples {
        for k in order(sides.len(), i) {
            let c = cycle(&mut sides[k], busybox).await?;
            calls[k].extend(c);
            let t = first_log(&mut sides[k], busybox).await?;
            calls[k].push(report::FIRST_LOG, t);
        }
        eprintln!("  sample {}/{samples}", i + 1);
    }
    // A few pods with one running container each.
    for s in sides.iter_mut() {
        for _ in 0..pods {
            let (pod, cfg) = run_pod(s).await?;
            let c = create(s, &pod, &cfg, busybox, "exec sleep 1000").await?;
            start(s, &c).await?;
        }
    }
    for i in 0..samples {
        for k in order(sides.len(), i) {
            let t = lists(&mut sides[k], pods).await?;
            calls[k].extend(t);
        }
    }
    // Let the per-pod processes settle before their memory is read.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut memory = Vec::new();
    for (s, idle) in sides.iter().zip(idle) {
        let m = Memory::take(&s.daemon, idle, pods)?;
        memory.push(m);
    }
    let mut text = report::render(sides, &calls, &memory, samples, pods);
    // Scale, on berth alone, with nothing else running.
    let (n, parallel) = if samples > 1 {
        (scale::PODS, scale::PARALLEL)
    } else {
        (3, 2)
    };
    let n = std::env::var("BERTH_BENCH_SCALE_PODS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(n);
    if n > 0 {
        for s in sides.iter_mut() {
            remove_all_pods(s).await?;
        }
        text.push_str(&scale::scale(&mut sides[0], busybox, n, parallel).await?);
    }
    Ok(text)
}

/// Which side goes first alternates from sample to sample.
fn order(n: usize, i: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    if i % 2 == 1 {
        v.reverse();
    }
    v
}

async fn call<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> BenchResult<T> {
    match tokio::time::timeout(CALL_LIMIT, fut).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(format!("{what}: {:?}: {}", s.code(), s.message())),
        Err(_) => Err(format!("{what} did not answer within {CALL_LIMIT:?}")),
    }
}

/// Times `fut` and adds the call's side name to its error.
async fn timed<T>(
    s: &Side,
    what: &str,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> BenchResult<(T, Duration)> {
    let t = Instant::now();
    let out = call(what, fut)
        .await
        .map_err(|e| format!("{}: {e}", s.name))?;
    Ok((out, t.elapsed()))
}

/// A new pod's config (shared PID namespace) and its log dir, created first
/// as the kubelet does.
fn pod_config(s: &mut Side) -> BenchResult<PodSandboxConfig> {
    s.n += 1;
    let name = format!("sbs-{}-{}", s.name, s.n);
    let dir = s.logs.join(&name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let mut cfg = pods::pod_config(&name, &dir);
    pods::set_pid_mode(&mut cfg, NamespaceMode::Pod);
    Ok(cfg)
}

async fn run_pod_timed(s: &mut Side) -> BenchResult<(String, PodSandboxConfig, Duration)> {
    let cfg = pod_config(s)?;
    let req = RunPodSandboxRequest {
        config: Some(cfg.clone()),
        runtime_handler: String::new(),
    };
    let mut rc = s.rc.clone();
    let (r, t) = timed(s, "RunPodSandbox", rc.run_pod_sandbox(req)).await?;
    Ok((r.pod_sandbox_id, cfg, t))
}

async fn run_pod(s: &mut Side) -> BenchResult<(String, PodSandboxConfig)> {
    run_pod_timed(s).await.map(|(id, cfg, _)| (id, cfg))
}

async fn create_timed(
    s: &Side,
    pod: &str,
    pod_cfg: &PodSandboxConfig,
    image: &str,
    script: &str,
) -> BenchResult<(String, Duration)> {
    let req = CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(pods::container_config("c", image, script, s.name)),
        sandbox_config: Some(pod_cfg.clone()),
    };
    let mut rc = s.rc.clone();
    let (r, t) = timed(s, "CreateContainer", rc.create_container(req)).await?;
    Ok((r.container_id, t))
}

async fn create(
    s: &Side,
    pod: &str,
    pod_cfg: &PodSandboxConfig,
    image: &str,
    script: &str,
) -> BenchResult<String> {
    create_timed(s, pod, pod_cfg, image, script)
        .await
        .map(|(id, _)| id)
}

async fn start(s: &Side, id: &str) -> BenchResult<Duration> {
    let req = StartContainerRequest {
        container_id: id.into(),
    };
    let mut rc = s.rc.clone();
    Ok(timed(s, "StartContainer", rc.start_container(req)).await?.1)
}

async fn stop_pod(s: &Side, id: &str) -> BenchResult<Duration> {
    let req = StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    };
    let mut rc = s.rc.clone();
    Ok(timed(s, "StopPodSandbox", rc.stop_pod_sandbox(req))
        .await?
        .1)
}

async fn remove_pod(s: &Side, id: &str) -> BenchResult<Duration> {
    let req = RemovePodSandboxRequest {
        pod_sandbox_id: id.into(),
    };
    let mut rc = s.rc.clone();
    Ok(timed(s, "RemovePodSandbox", rc.remove_pod_sandbox(req))
        .await?
        .1)
}

/// One pod life cycle, every call timed.
async fn cycle(s: &mut Side, image: &str) -> BenchResult<Calls> {
    let mut out = Calls::default();
    let (pod, cfg, t) = run_pod_timed(s).await?;
    out.push("RunPodSandbox", t);
    let (c, t) = create_timed(s, &pod, &cfg, image, "exec sleep 1000").await?;
    out.push("CreateContainer", t);
    out.push("StartContainer", start(s, &c).await?);
    let mut rc = s.rc.clone();
    let req = StopContainerRequest {
        container_id: c.clone(),
        timeout: 10,
    };
    out.push(
        "StopContainer",
        timed(s, "StopContainer", rc.stop_container(req)).await?.1,
    );
    let req = RemoveContainerRequest { container_id: c };
    out.push(
        "RemoveContainer",
        timed(s, "RemoveContainer", rc.remove_container(req))
            .await?
            .1,
    );
    out.push("StopPodSandbox", stop_pod(s, &pod).await?);
    out.push("RemovePodSandbox", remove_pod(s, &pod).await?);
    Ok(out)
}

/// RunPodSandbox → CreateContainer (`echo hi`) → StartContainer until the
/// CRI log file holds `hi`; then the pod is removed (not timed).
async fn first_log(s: &mut Side, image: &str) -> BenchResult<Duration> {
    let t0 = Instant::now();
    let (pod, cfg, _) = run_pod_timed(s).await?;
    let (c, _) = create_timed(s, &pod, &cfg, image, "echo hi").await?;
    start(s, &c).await?;
    let log = Path::new(&cfg.log_directory).join("c/0.log");
    while !has_record(&log, "hi") {
        if t0.elapsed() > LOG_LIMIT {
            return Err(format!(
                "{}: no `hi` in {} after {LOG_LIMIT:?}: {:?}",
                s.name,
                log.display(),
                support::read_text(&log)
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = t0.elapsed();
    stop_pod(s, &pod).await?;
    remove_pod(s, &pod).await?;
    Ok(took)
}

/// Whether a CRI log holds the full stdout record `msg` (a line still being
/// written does not count).
fn has_record(log: &Path, msg: &str) -> bool {
    support::read_text(log).lines().any(|l| {
        let mut f = l.splitn(4, ' ');
        let (_ts, stream, tag, m) = (f.next(), f.next(), f.next(), f.next());
        stream == Some("stdout") && tag == Some("F") && m == Some(msg)
    })
}

/// ListImages, ListContainers and ListPodSandbox once each, checking the
/// lists hold what is running.
async fn lists(s: &mut Side, pods: usize) -> BenchResult<Calls> {
    let mut out = Calls::default();
    let mut ic = s.ic.clone();
    let (r, t) = timed(
        s,
        "ListImages",
        ic.list_images(ListImagesRequest { filter: None }),
    )
    .await?;
    out.push("ListImages", t);
    let images = r.images.len();
    let mut rc = s.rc.clone();
    let req = ListContainersRequest { filter: None };
    let (r, t) = timed(s, "ListContainers", rc.list_containers(req)).await?;
    out.push("ListContainers", t);
    let containers = r.containers.len();
    let req = ListPodSandboxRequest { filter: None };
    let (r, t) = timed(s, "ListPodSandbox", rc.list_pod_sandbox(req)).await?;
    out.push("ListPodSandbox", t);
    if images != 2 || containers != pods || r.items.len() != pods {
        return Err(format!(
            "{}: listed {images} images, {containers} containers, {} pods; \
             expected 2, {pods}, {pods}",
            s.name,
            r.items.len()
        ));
    }
    Ok(out)
}

/// Stops and removes every pod the daemon knows (all are the benchmark's).
async fn remove_all_pods(s: &mut Side) -> BenchResult<()> {
    let mut rc = s.rc.clone();
    let req = ListPodSandboxRequest { filter: None };
    let items = call("ListPodSandbox", rc.list_pod_sandbox(req))
        .await?
        .items;
    let mut first = Ok(());
    for p in items {
        let r = match stop_pod(s, &p.id).await {
            Ok(_) => remove_pod(s, &p.id).await.map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            first = first.and(Err(e));
        }
    }
    first
}
