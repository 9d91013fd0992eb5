//! `/_ping`, `/version`, `/info`, `/system/df`: what clients ask first.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};

use super::{ApiError, Shared, API_VERSION, MIN_API_VERSION};
use crate::engine::records::ContainerState;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/system/df", get(df))
}

/// `OK`, with the headers clients negotiate with.
async fn ping() -> Response {
    let mut res = (StatusCode::OK, "OK").into_response();
    let h = res.headers_mut();
    h.insert("builder-version", HeaderValue::from_static("1"));
    h.insert("swarm", HeaderValue::from_static("inactive"));
    h.insert(
        "cache-control",
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("pragma", HeaderValue::from_static("no-cache"));
    h.insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Go's GOARCH names, as Docker reports them in `/version`.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

async fn version() -> Json<Value> {
    let v = env!("CARGO_PKG_VERSION");
    let mut doc = json!({
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": kernel_version(),
        "BuildTime": "",
    });
    // The same details once more at the top level, as Docker answers.
    let details = doc.clone();
    doc["Platform"] = json!({"Name": "berth"});
    doc["Components"] = json!([{"Name": "Engine", "Version": v, "Details": details}]);
    doc["Version"] = json!(v);
    Json(doc)
}

async fn info(State(d): State<Shared>) -> Result<Json<Value>, ApiError> {
    let e = &d.engine;
    let node = e.node_facts();
    let containers = e.containers()?;
    let count = |f: &dyn Fn(&crate::engine::records::ContainerRecord) -> bool| {
        containers.iter().filter(|c| f(c)).count()
    };
    let running = count(&|c| c.state == ContainerState::Running && !c.paused);
    let paused = count(&|c| c.paused);
    let stopped = containers.len() - running - paused;
    let images = e.images.list()?.len();
    let cfg = &e.config;
    let runtimes: serde_json::Map<String, Value> = cfg
        .runtime
        .handlers
        .iter()
        .map(|(k, h)| (k.clone(), json!({"path": h.path})))
        .collect();
    let (cgroup_driver, cgroup_version) = (
        match cfg.runtime.cgroup_driver {
            crate::config::CgroupDriver::Cgroupfs => "cgroupfs",
            crate::config::CgroupDriver::Systemd => "systemd",
        },
        match &e.cgroups {
            Ok(h) if h.mode == crate::cgroups::Mode::V2 => "2",
            _ => "1",
        },
    );
    let mut warnings = vec![];
    if let Some(p) = e.runtime_problem() {
        warnings.push(format!("WARNING: containers cannot run: {p}"));
    }
    let insecure: Vec<&String> = cfg
        .registries
        .iter()
        .filter(|(_, r)| r.insecure)
        .map(|(h, _)| h)
        .collect();
    let index_configs: serde_json::Map<String, Value> = cfg
        .registries
        .iter()
        .map(|(h, r)| {
            (
                h.clone(),
                json!({"Name": h, "Mirrors": r.mirrors, "Secure": !r.insecure, "Official": h == "docker.io"}),
            )
        })
        .collect();
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut security = vec!["name=seccomp,profile=builtin".to_string()];
    if e.host.apparmor {
        security.insert(0, "name=apparmor".into());
    }
    if cgroup_version == "2" {
        security.push("name=cgroupns".into());
    }
    Ok(Json(json!({
        "ID": node.engine_id,
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "none"],
            "Authorization": null,
            "Log": [super::model::LOG_DRIVER],
        },
        "MemoryLimit": true,
        "SwapLimit": e.host.swap_accounting,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "IPv4Forwarding": node.ipv4_forwarding,
        "Debug": false,
        "NFd": node.open_fds,
        "NGoroutines": 0,
        "SystemTime": super::time::rfc3339(super::time::now_nanos()),
        "LoggingDriver": super::model::LOG_DRIVER,
        "CgroupDriver": cgroup_driver,
        "CgroupVersion": cgroup_version,
        "NEventsListener": 0,
        "KernelVersion": kernel_version(),
        "OperatingSystem": node.os_name,
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": null,
            "AllowNondistributableArtifactsHostnames": null,
            "InsecureRegistryCIDRs": ["127.0.0.0/8"],
            "IndexConfigs": index_configs,
            "Mirrors": cfg.registries.get("docker.io").map(|r| r.mirrors.clone()).unwrap_or_default(),
            "InsecureRegistries": insecure,
        },
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": node.mem_total,
        "GenericResources": null,
        "DockerRootDir": cfg.root,
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": runtimes,
        "DefaultRuntime": cfg.runtime.default_handler,
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": false,
            "Error": "",
            "RemoteManagers": null,
        },
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": security,
        "CDISpecDirs": [],
        "Containerd": null,
        "Warnings": warnings,
    })))
}

/// Every volume with its size and how many containers mount it.
async fn volume_usage(d: &Shared) -> Result<Vec<Value>, ApiError> {
    Ok(d.engine
        .volume_usage()
        .await?
        .iter()
        .map(|u| {
            let mut v = super::volumes::to_json(&u.volume);
            v["UsageData"] = json!({"Size": u.size, "RefCount": u.ref_count});
            v
        })
        .collect())
}

async fn df(State(d): State<Shared>) -> Result<Json<Value>, ApiError> {
    let e = &d.engine;
    let containers = e.containers()?;
    let (layers, _) = e.images.usage().await?;
    let images: Vec<Value> = e
        .images
        .list()?
        .iter()
        .map(|img| {
            let users = containers
                .iter()
                .filter(|c| c.image_id == img.id.to_string())
                .count();
            json!({
                "Id": img.id.to_string(),
                "ParentId": "",
                "RepoTags": img.repo_tags,
                "RepoDigests": img.repo_digests,
                "Created": img.pulled_at / 1_000_000_000,
                "Size": img.size,
                "SharedSize": -1,
                "VirtualSize": img.size,
                "Labels": {},
                "Containers": users,
            })
        })
        .collect();
    let volumes = volume_usage(&d).await?;
    let mut cs = vec![];
    for c in &containers {
        cs.push(super::model::summary(&d, c, true).await?);
    }
    Ok(Json(json!({
        "LayersSize": layers,
        "Images": images,
        "Containers": cs,
        "Volumes": volumes,
        "BuildCache": [],
    })))
}
