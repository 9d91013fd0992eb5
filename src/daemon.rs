//! Daemon life cycle: lock the root, recover the engine, open the sockets,
//! serve until SIGTERM/SIGINT, then remove the sockets.
//!
//! Start-up order follows containerd: recover state first, open sockets last,
//! so no client ever sees a half-recovered daemon.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::engine::Engine;

/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the daemon until a shutdown signal.
pub async fn run(config: Config) -> Result<()> {
    let config = Arc::new(config);
    for dir in [&config.root, &config.state] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    let _lock = lock_root(&config.root)?;
    let engine = Arc::new(
        Engine::open(config.clone())
            .await
            .context("failed to recover state")?,
    );

    let (cri_socket, cri_listener) = SocketFile::bind(&config.cri.socket)?;
    info!(socket = %config.cri.socket.display(), "serving CRI");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (docker_socket, docker_tasks) = start_docker(&config, &engine, &stop_rx).await?;
    let metrics = start_metrics(&config, &engine, &stop_rx).await?;
    let (streaming, streaming_task) = start_streaming(&config, &engine, &stop_rx).await?;
    // Start-up is done: what it freed goes back now, and later bursts'
    // frees every half minute (crate::memory).
    let trim = tokio::spawn(crate::memory::trim_periodically());
    let server = tonic::transport::Server::builder()
        .layer(crate::metrics::GrpcMetricsLayer::new())
        .layer(crate::cri::deadline::DeadlineLayer)
        .layer(crate::panics::CatchPanicLayer::new(
            crate::panics::grpc_response,
        ))
        .layer(tower::util::MapResponseLayer::new(
            crate::cri::decode_errors_are_invalid_argument::<tonic::body::Body>,
        ))
        .add_routes(crate::cri::router(engine.clone(), Some(streaming)))
        .serve_with_incoming_shutdown(crate::cri::authority::incoming(cri_listener), {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        });
    let mut server = tokio::spawn(server);

    let mut term = signal(SignalKind::terminate()).context("failed to watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("failed to watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received, shutting down"),
        _ = int.recv() => info!("SIGINT received, shutting down"),
        res = &mut server => {
            res.context("CRI server task failed")?.context("CRI server failed")?;
            bail!("CRI server stopped unexpectedly");
        }
    }
    let _ = stop_tx.send(true);
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
        Ok(Ok(Err(e))) => error!(error = %e, "CRI server failed while stopping"),
        Ok(_) => {}
        Err(_) => {
            warn!("requests still running after {SHUTDOWN_GRACE:?}, stopping anyway");
            server.abort();
        }
    }
    // Upgraded sessions run on their own; only the listener is waited for.
    let mut streaming_task = streaming_task;
    if tokio::time::timeout(SHUTDOWN_GRACE, &mut streaming_task)
        .await
        .is_err()
    {
        streaming_task.abort();
    }
    if let Some(mut metrics) = metrics {
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut metrics)
            .await
            .is_err()
        {
            metrics.abort();
        }
    }
    for mut t in docker_tasks {
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut t).await.is_err() {
            t.abort();
        }
    }
    trim.abort();
    drop(docker_socket);
    drop(cri_socket);
    info!("stopped");
    Ok(())
}

/// Binds `metrics.address` (unless empty) and serves `/metrics` until `stop` turns true.
async fn start_metrics(
    config: &Config,
    engine: &Arc<Engine>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    if config.metrics.address.is_empty() {
        return Ok(None);
    }
    let addr: std::net::SocketAddr = config
        .metrics
        .address
        .parse()
        .with_context(|| format!("bad metrics.address {:?}", config.metrics.address))?;
    let server = crate::metrics::Server::bind(addr)
        .await
        .with_context(|| format!("failed to listen on metrics.address {addr}"))?;
    // Weak: the global metrics outlive the engine.
    let weak = Arc::downgrade(engine);
    crate::metrics::global().count_images_with(move || {
        let images = weak.upgrade()?.images.list().ok()?;
        Some(images.len() as u64)
    });
    let weak = Arc::downgrade(engine);
    crate::metrics::global().probe_runtime_with(move || Some(weak.upgrade()?.metrics_snapshot()));
    let mut stop = stop.clone();
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = server.run(shutdown).await {
            error!(error = %e, "metrics server failed");
        }
    })))
}

/// Binds `cri.streaming_address` and serves exec/attach/port-forward URLs
/// until `stop` turns true.
async fn start_streaming(
    config: &Config,
    engine: &Arc<Engine>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<(
    Arc<crate::streaming::Streaming>,
    tokio::task::JoinHandle<()>,
)> {
    let addr: std::net::SocketAddr = config.cri.streaming_address.parse().with_context(|| {
        format!(
            "bad cri.streaming_address {:?}",
            config.cri.streaming_address
        )
    })?;
    let tls = crate::streaming::tls::acceptor(&config.cri.streaming_tls)
        .context("bad cri.streaming_tls")?;
    let idle = config.cri.stream_idle_timeout;
    let server = crate::streaming::Server::bind(addr, engine.clone(), idle, tls)
        .await
        .with_context(|| format!("failed to listen on cri.streaming_address {addr}"))?;
    let streaming = server.streaming();
    let mut stop = stop.clone();
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let task = tokio::spawn(async move {
        if let Err(e) = server.run(shutdown).await {
            error!(error = %e, "CRI streaming server failed");
        }
    });
    Ok((streaming, task))
}

/// Serves the Docker API on `docker.socket`, and on `docker.tcp` with TLS
/// client verification when configured, until `stop` turns true.
async fn start_docker(
    config: &Config,
    engine: &Arc<Engine>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<(SocketFile, Vec<tokio::task::JoinHandle<()>>)> {
    let docker = crate::docker::Docker::new(engine.clone());
    let router = crate::docker::router(docker.clone());
    let stopped = |stop: &tokio::sync::watch::Receiver<bool>| {
        let mut rx = stop.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = vec![
        tokio::spawn(crate::engine::exits::run(engine.clone(), stopped(stop))),
        tokio::spawn(crate::engine::health::runner::run(
            engine.clone(),
            stopped(stop),
        )),
    ];
    if let Some(addr) = &config.docker.tcp {
        let acceptor = crate::docker::serve::tls_acceptor(&config.docker.tls)
            .with_context(|| format!("refusing docker.tcp {addr}"))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("failed to listen on docker.tcp {addr}"))?;
        info!(address = %addr, "serving Docker API over TLS");
        tasks.push(tokio::spawn(crate::docker::serve::tcp_tls(
            listener,
            acceptor,
            router.clone(),
            stopped(stop),
        )));
    }
    let (file, listener) = SocketFile::bind(&config.docker.socket)?;
    info!(socket = %config.docker.socket.display(), "serving Docker API");
    tasks.push(tokio::spawn(crate::docker::serve::unix(
        listener,
        router,
        stopped(stop),
    )));
    Ok((file, tasks))
}

/// Holds `<root>/berthd.lock` so that a second daemon on the same root refuses to start.
fn lock_root(root: &Path) -> Result<Flock<File>> {
    let path = root.join("berthd.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(l),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => bail!(
            "another berthd is already running with root {} (lock {} is held)",
            root.display(),
            path.display()
        ),
        Err((_, e)) => Err(e).with_context(|| format!("failed to lock {}", path.display())),
    }
}

/// A unix socket's path, removed when dropped.
struct SocketFile {
    path: PathBuf,
}

impl SocketFile {
    /// Binds with mode 0660, replacing a stale socket file (we hold the root lock).
    fn bind(path: &Path) -> Result<(Self, UnixListener)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
        }
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e)
                    .with_context(|| format!("failed to remove stale socket {}", path.display()))
            }
            _ => {}
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("failed to listen on {}", path.display()))?;
        let file = SocketFile {
            path: path.to_path_buf(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("failed to set the mode of {}", path.display()))?;
        Ok((file, listener))
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(socket = %self.path.display(), error = %e, "failed to remove socket");
            }
        }
    }
}
