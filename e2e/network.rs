//! Pod networking through real CNI plugins (Debian's containernetworking-
//! plugins): pod IPs and reachability, hostPort mappings, host-network pods,
//! IP and interface leaks over many pod cycles, NetworkReady following the
//! config directory, and DEL after a daemon kill -9.
//!
//! Every test brings its own network (bridge, /24, host-local data dir) and
//! holds a [`TestNet`] guard, declared before the [`Env`] so that on failure
//! the daemon and its pods go first and the guard then restores the host.

mod cycles;
mod guard;
mod hostnet;
mod hostport;
mod podcidr;
mod reach;
mod ready;
mod restart;
pub mod testnet;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use k8s_cri::v1::{ContainerState, PodSandboxConfig, StatusRequest};

use crate::runtime::Env;
use crate::support::daemon::Berthd;
use crate::support::pods::{self, RuntimeClient};
use testnet::TestNet;

/// A registry with busybox, and a daemon whose CNI config dir is `net`'s.
pub async fn env(net: &TestNet) -> Env {
    Env::with(&net.yaml(), "network").await
}

/// Starts a busybox container running `script` in the pod and waits until
/// it runs; returns its id.
pub async fn running(e: &mut Env, pod: &str, pod_cfg: &PodSandboxConfig, script: &str) -> String {
    let name = pods::unique("c");
    let (cfg, _) = e.container(&name, script);
    let id = e.run(pod, &cfg, pod_cfg).await;
    pods::wait_state(&mut e.rt, &id, ContainerState::ContainerRunning).await;
    id
}

/// The pod's IP as PodSandboxStatus reports it.
pub async fn pod_ip(rt: &mut RuntimeClient, pod: &str) -> String {
    let st = pods::pod_status(rt, pod)
        .await
        .unwrap_or_else(|e| panic!("PodSandboxStatus {pod}: {e:?}"));
    st.network.map(|n| n.ip).unwrap_or_default()
}

/// The NetworkReady condition: (status, reason, message).
pub async fn network_ready(rt: &mut RuntimeClient) -> (bool, String, String) {
    let st = rt
        .status(StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner()
        .status
        .expect("Status has a status");
    let c = st
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .expect("a NetworkReady condition");
    (c.status, c.reason, c.message)
}

/// The body of `GET http://<addr><path>` (HTTP/1.0), or why not.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response from {addr}: {text:?}"))?;
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        return Err(format!("{addr}{path}: {head}"));
    }
    Ok(body.to_string())
}

/// The metrics endpoint's address, from the daemon's (last) start-up log.
fn metrics_addr(d: &Berthd) -> SocketAddr {
    let log = d.log();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("serving metrics"))
        .expect("berthd logs its metrics address");
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("address="))
        .expect("address= in the metrics log line");
    addr.parse().expect("a socket address")
}

/// `berth_cni_operations_total` by (operation, result).
pub fn cni_ops(d: &Berthd) -> BTreeMap<(String, String), u64> {
    let text = http_get(metrics_addr(d), "/metrics").expect("GET /metrics");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("berth_cni_operations_total{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").expect("a sample line");
        let label = |k: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        out.insert(
            (label("operation"), label("result")),
            value.trim().parse().expect("a counter value"),
        );
    }
    out
}

/// One count from [`cni_ops`] (0 when absent).
pub fn cni_count(ops: &BTreeMap<(String, String), u64>, op: &str, result: &str) -> u64 {
    ops.get(&(op.to_string(), result.to_string()))
        .copied()
        .unwrap_or(0)
}
