//! CRI RuntimeService end to end: pod sandboxes and containers run by a real
//! berthd under real crun, from images pulled from a loopback registry,
//! checked through the CRI API and against what the host kernel shows.

mod cleanup;
mod errors;
mod exec;
mod exits;
mod halfway;
mod handlers;
mod logs;
mod metrics;
mod monitor;
mod pod;
mod restart;
mod security;
mod stop;

use k8s_cri::v1::{ContainerConfig, ContainerStatus, PodSandboxConfig};

use crate::support::catalog;
use crate::support::cri::{self, ImageClient};
use crate::support::daemon::Berthd;
use crate::support::host;
use crate::support::pods::{self, RuntimeClient};
use crate::support::registry::TestRegistry;
use crate::support::{read_text, short_tempdir};

/// A registry with busybox pushed, a daemon that pulled it, CRI clients, and
/// a directory for the pods' logs. On drop (a failed test), whatever the
/// test left running is ended: the daemon, then its containers and mounts.
pub struct Env {
    pub reg: TestRegistry,
    pub d: Berthd,
    pub images: ImageClient,
    pub rt: RuntimeClient,
    /// The pulled busybox image, by name.
    pub busybox: String,
    pub logs: tempfile::TempDir,
}

impl Env {
    pub async fn new() -> Env {
        Env::with("", "runtime").await
    }

    /// Like [`Env::new`], with `extra` daemon YAML (e.g. a `cni:` section)
    /// and the image labelled `berth.e2e=<label>`.
    pub async fn with(extra: &str, label: &str) -> Env {
        let reg = TestRegistry::start().await;
        let d = Berthd::start(&format!("{}{extra}", reg.insecure_yaml())).await;
        let mut images = d.image_client().await;
        let rt = d.runtime_client().await;
        let busybox = catalog::busybox()
            .label("berth.e2e", label)
            .build()
            .push_tag(&reg, "test/busybox", "v1")
            .await;
        cri::pull_ok(&mut images, &busybox).await;
        Env {
            reg,
            d,
            images,
            rt,
            busybox,
            logs: short_tempdir("bl"),
        }
    }

    /// A pod config named `name` (also its hostname), logging under `self.logs`.
    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        pods::pod_config(name, self.logs.path())
    }

    /// A busybox container running `sh -c script`, tagged with a fresh tag
    /// (returned) so its processes can be found on the host.
    pub fn container(&self, name: &str, script: &str) -> (ContainerConfig, String) {
        let tag = pods::unique(name);
        (
            pods::container_config(name, &self.busybox, script, &tag),
            tag,
        )
    }

    /// Starts a pod; returns its id.
    pub async fn pod(&mut self, cfg: &PodSandboxConfig) -> String {
        pods::run_pod(&mut self.rt, cfg).await
    }

    /// Creates and starts a container; returns its id.
    pub async fn run(
        &mut self,
        pod_id: &str,
        cfg: &ContainerConfig,
        pod_cfg: &PodSandboxConfig,
    ) -> String {
        pods::run(&mut self.rt, pod_id, cfg, pod_cfg).await
    }

    /// The text of a container's CRI log file.
    pub fn log_text(&self, pod_cfg: &PodSandboxConfig, cfg: &ContainerConfig) -> String {
        read_text(&std::path::Path::new(&pod_cfg.log_directory).join(&cfg.log_path))
    }

    /// Runs a container to its end; returns its status and its stdout and
    /// stderr lines from the CRI log.
    pub async fn run_to_exit(
        &mut self,
        pod_id: &str,
        cfg: &ContainerConfig,
        pod_cfg: &PodSandboxConfig,
    ) -> (ContainerStatus, Vec<String>, Vec<String>) {
        let id = self.run(pod_id, cfg, pod_cfg).await;
        let st = pods::wait_exited(&mut self.rt, &id).await;
        let recs = pods::parse_log(&self.log_text(pod_cfg, cfg));
        (
            st,
            pods::stream_lines(&recs, "stdout"),
            pods::stream_lines(&recs, "stderr"),
        )
    }

    /// Removes every pod the daemon lists (and so their containers).
    pub async fn remove_all_pods(&mut self) {
        for p in pods::list_pods(&mut self.rt).await {
            pods::remove_pod(&mut self.rt, &p.id)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "RemovePodSandbox {}: {e:?}; daemon log:\n{}",
                        p.id,
                        self.d.log()
                    )
                });
        }
        assert!(pods::list_pods(&mut self.rt).await.is_empty());
        assert!(pods::list_containers(&mut self.rt, None).await.is_empty());
    }

    /// The daemon's last log lines of its own (no HTTP/2 chatter, no colours),
    /// for failure messages.
    pub fn log_tail(&self) -> String {
        let log = strip_ansi(&self.d.log());
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("berth"))
            .filter(|l| !l.contains("h2::") && !l.contains("loona_hpack"))
            .collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// Text without ANSI colour sequences (`ESC [ ... m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for Env {
    fn drop(&mut self) {
        self.d.kill9();
        host::scrub(self.d.dir());
    }
}
