//! `GET /containers/{id}/stats` and `GET /containers/{id}/top`.
//!
//! Stats are Docker's `StatsResponse`, rendered from the engine's sample
//! ([`crate::engine::sampler`]: the container's cgroup in v1, hybrid or v2
//! files, the host's CPU time, the container's network counters).
//! As Docker does: streaming sends one object a second, the first without
//! `precpu_stats`; `stream=0` takes two samples a second apart so clients can
//! compute a CPU percentage, unless `one-shot=1`; a container that is not
//! running gets zeros with its id and name.
//!
//! Top has the engine run the host's `ps` and keeps the rows whose PID is in
//! the container's cgroup, as moby does.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::error::{flag, Query};
use super::{time, ApiError, ApiVersion, Shared};
use crate::cgroups::BlkioEntry;
use crate::engine::records::ContainerState;
use crate::engine::sampler::ContainerSample;

/// How often streamed stats are sent (Docker's collector interval).
const INTERVAL: Duration = Duration::from_secs(1);

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/containers/{id}/stats", get(stats))
        .route("/containers/{id}/top", get(top))
}

/// Docker's memory.stat keys on cgroup v1, all present (0 when absent).
const V1_MEMORY_KEYS: &[&str] = &[
    "cache",
    "rss",
    "rss_huge",
    "mapped_file",
    "dirty",
    "writeback",
    "pgpgin",
    "pgpgout",
    "pgfault",
    "pgmajfault",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "hierarchical_memory_limit",
    "hierarchical_memsw_limit",
    "total_cache",
    "total_rss",
    "total_rss_huge",
    "total_mapped_file",
    "total_dirty",
    "total_writeback",
    "total_pgpgin",
    "total_pgpgout",
    "total_pgfault",
    "total_pgmajfault",
    "total_inactive_anon",
    "total_active_anon",
    "total_inactive_file",
    "total_active_file",
    "total_unevictable",
];

/// Docker's memory.stat keys on cgroup v2.
const V2_MEMORY_KEYS: &[&str] = &[
    "anon",
    "file",
    "kernel_stack",
    "slab",
    "sock",
    "shmem",
    "file_mapped",
    "file_dirty",
    "file_writeback",
    "anon_thp",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "slab_reclaimable",
    "slab_unreclaimable",
    "pgfault",
    "pgmajfault",
    "workingset_refault",
    "workingset_activate",
    "workingset_nodereclaim",
    "pgrefill",
    "pgscan",
    "pgsteal",
    "pgactivate",
    "pgdeactivate",
    "pglazyfree",
    "pglazyfreed",
    "thp_fault_alloc",
    "thp_collapse_alloc",
];

const BLKIO_KEYS: &[&str] = &[
    "io_service_bytes_recursive",
    "io_serviced_recursive",
    "io_queue_recursive",
    "io_service_time_recursive",
    "io_wait_time_recursive",
    "io_merged_recursive",
    "io_time_recursive",
    "sectors_recursive",
];

/// Go's zero `CPUStats`.
fn zero_cpu() -> Value {
    json!({
        "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    })
}

/// The response for a container that is not running: only id and name set.
pub fn empty(id: &str, name: &str) -> Value {
    let blkio: Map<String, Value> = BLKIO_KEYS
        .iter()
        .map(|k| (k.to_string(), Value::Null))
        .collect();
    json!({
        "id": id,
        "name": name,
        "os_type": "linux",
        "read": time::ZERO,
        "preread": time::ZERO,
        "pids_stats": {},
        "blkio_stats": blkio,
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": zero_cpu(),
        "precpu_stats": zero_cpu(),
        "memory_stats": {},
    })
}

fn blkio_json(entries: &[BlkioEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| json!({"major": e.major, "minor": e.minor, "op": e.op, "value": e.value}))
            .collect(),
    )
}

/// Inserts `v` unless it is 0 (Go's `omitempty`).
fn put_nonzero(m: &mut Map<String, Value>, k: &str, v: u64) {
    if v != 0 {
        m.insert(k.into(), v.into());
    }
}

/// One sample as Docker's `StatsResponse` (without the `pre*` fields).
/// Docker's `StatsResponse` of one sample (`precpu_stats` zero).
pub fn to_json(id: &str, name: &str, s: &ContainerSample) -> Value {
    let (d, system, machine_memory, read) = (&s.detail, s.system_cpu, s.machine_memory, s.read);
    let networks: Map<String, Value> = s
        .networks
        .iter()
        .map(|n| {
            (
                n.name.clone(),
                json!({
                    "rx_bytes": n.rx_bytes, "rx_packets": n.rx_packets,
                    "rx_errors": n.rx_errors, "rx_dropped": n.rx_dropped,
                    "tx_bytes": n.tx_bytes, "tx_packets": n.tx_packets,
                    "tx_errors": n.tx_errors, "tx_dropped": n.tx_dropped,
                }),
            )
        })
        .collect();
    let mut usage = Map::new();
    usage.insert("total_usage".into(), d.cpu_total_ns.into());
    if !d.cpu_percpu_ns.is_empty() {
        usage.insert("percpu_usage".into(), json!(d.cpu_percpu_ns));
    }
    usage.insert("usage_in_kernelmode".into(), d.cpu_system_ns.into());
    usage.insert("usage_in_usermode".into(), d.cpu_user_ns.into());
    let mut cpu = Map::new();
    cpu.insert("cpu_usage".into(), Value::Object(usage));
    if let Some((sys, cpus)) = system {
        put_nonzero(&mut cpu, "system_cpu_usage", sys);
        put_nonzero(&mut cpu, "online_cpus", u64::from(cpus));
    }
    cpu.insert(
        "throttling_data".into(),
        json!({
            "periods": d.throttle_periods,
            "throttled_periods": d.throttled_periods,
            "throttled_time": d.throttled_time_ns,
        }),
    );

    let keys = if d.v2 { V2_MEMORY_KEYS } else { V1_MEMORY_KEYS };
    let stats: Map<String, Value> = keys
        .iter()
        .map(|k| {
            (
                k.to_string(),
                d.memory_stat.get(*k).copied().unwrap_or(0).into(),
            )
        })
        .collect();
    let mut limit = d.memory_limit.unwrap_or(u64::MAX);
    if machine_memory > 0 && limit > machine_memory {
        limit = machine_memory;
    }
    let mut memory = Map::new();
    put_nonzero(&mut memory, "usage", d.memory_usage);
    put_nonzero(&mut memory, "max_usage", d.memory_max_usage);
    memory.insert("stats".into(), Value::Object(stats));
    put_nonzero(&mut memory, "failcnt", d.memory_failcnt);
    put_nonzero(&mut memory, "limit", limit);

    let mut pids = Map::new();
    put_nonzero(&mut pids, "current", d.pids_current);
    put_nonzero(&mut pids, "limit", d.pids_limit);

    let blkio: Map<String, Value> = BLKIO_KEYS
        .iter()
        .map(|k| {
            let v = match d.blkio.get(k) {
                // v2 reports only service bytes, and null for no device.
                Some(e) if d.v2 && e.is_empty() => Value::Null,
                Some(e) => blkio_json(e),
                None => Value::Null,
            };
            (k.to_string(), v)
        })
        .collect();

    let mut out = json!({
        "id": id,
        "name": name,
        "os_type": "linux",
        "read": time::rfc3339(read),
        "preread": time::ZERO,
        "cpu_stats": cpu,
        "precpu_stats": zero_cpu(),
        "memory_stats": memory,
        "pids_stats": pids,
        "blkio_stats": blkio,
        "num_procs": 0,
        "storage_stats": {},
    });
    if !networks.is_empty() {
        out["networks"] = Value::Object(networks);
    }
    out
}

/// Takes one sample of a container: zeros when it is not running.
fn sample(d: &Shared, id: &str, name: &str) -> Result<Value, ApiError> {
    Ok(match d.engine.sample_container(id)? {
        Some(s) => to_json(id, name, &s),
        None => empty(id, name),
    })
}

async fn sample_async(d: &Shared, id: &str, name: &str) -> Result<Value, ApiError> {
    let (d, id, name) = (d.clone(), id.to_string(), name.to_string());
    tokio::task::spawn_blocking(move || sample(&d, &id, &name))
        .await
        .map_err(|e| ApiError::internal(format!("stats task failed: {e}")))?
}

/// Fills `pre*` of `next` from the previous sample.
fn with_previous(mut next: Value, prev: &Value) -> Value {
    next["preread"] = prev["read"].clone();
    next["precpu_stats"] = prev["cpu_stats"].clone();
    next
}

#[derive(Deserialize)]
struct StatsParams {
    stream: Option<String>,
    #[serde(rename = "one-shot")]
    one_shot: Option<String>,
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

async fn stats(
    State(d): State<Shared>,
    Path(id): Path<String>,
    version: Option<Extension<ApiVersion>>,
    Query(p): Query<StatsParams>,
) -> Result<Response, ApiError> {
    let rec = d.container(&id)?;
    let name = format!("/{}", d.engine.container_name(&rec));
    let stream = p.stream.is_none() || flag(&p.stream);
    let one_shot = flag(&p.one_shot) && version.is_none_or(|Extension(v)| v >= ApiVersion(1, 41));
    let json_response = |body: Body| {
        Response::builder()
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| ApiError::internal(format!("failed to build the stats response: {e}")))
    };
    if !stream {
        let first = sample_async(&d, &rec.id, &name).await?;
        if one_shot || first["read"] == time::ZERO {
            return json_response(Body::from(line(&first)));
        }
        tokio::time::sleep(INTERVAL).await;
        let second = sample_async(&d, &rec.id, &name).await?;
        return json_response(Body::from(line(&with_previous(second, &first))));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    tokio::spawn(async move {
        let mut prev: Option<Value> = None;
        loop {
            let v = match sample_async(&d, &rec.id, &name).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(container = %rec.id, "stats: {e}");
                    return;
                }
            };
            let out = match &prev {
                Some(p) => with_previous(v.clone(), p),
                None => v.clone(),
            };
            if tx.send(line(&out)).await.is_err() {
                return;
            }
            prev = Some(v);
            tokio::select! {
                _ = tokio::time::sleep(INTERVAL) => {}
                _ = tx.closed() => return,
            }
        }
    });
    let body =
        tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>);
    json_response(Body::from_stream(body))
}

#[derive(Deserialize)]
struct TopParams {
    ps_args: Option<String>,
}

/// Refuses `ps` output options that rename the PID column (`-o x=PID`),
/// which would make the filter pick the wrong column; moby's check.
fn validate_ps_args(args: &str) -> Result<(), String> {
    let mut rest = args;
    while let Some(eq) = rest.find('=') {
        let before = &rest[..eq];
        let key = before
            .rsplit(|c: char| c.is_ascii_whitespace())
            .next()
            .unwrap_or("");
        // moby's pattern needs whitespace before the key.
        let spaced = before.len() > key.len();
        let after = rest[eq + 1..].trim_start();
        let value: String = after
            .chars()
            .take_while(|c| !c.is_ascii_whitespace())
            .collect();
        if spaced && value.starts_with("PID") && key != "pid" {
            return Err(format!("specifying \"{key}={value}\" is not allowed"));
        }
        rest = &rest[eq + 1..];
    }
    Ok(())
}

/// Docker's `TopResponse` from `ps` output, keeping the rows of `pids` (and
/// the thread rows, PID `-`, that follow one of them).
pub fn parse_ps(output: &str, pids: &[i32]) -> Result<Value, String> {
    let ascii_fields = |s: &str| -> Vec<String> {
        s.split(['\t', '\n', '\x0c', '\r', ' '])
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut lines = output.split('\n');
    let titles = ascii_fields(lines.next().unwrap_or(""));
    let pid_index = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or("Couldn't find PID field in ps output")?;
    let mut processes: Vec<Vec<String>> = Vec::new();
    let mut in_container = false;
    for l in lines.filter(|l| !l.is_empty()) {
        let fields = ascii_fields(l);
        let Some(pid) = fields.get(pid_index) else {
            continue;
        };
        let keep = if pid == "-" {
            in_container
        } else {
            let p: i32 = pid
                .parse()
                .map_err(|e| format!("Unexpected pid '{pid}': {e}"))?;
            in_container = pids.contains(&p);
            in_container
        };
        if keep && fields.len() >= titles.len() {
            // Overhanging fields (a command with spaces) join into the last column.
            let mut row = fields[..titles.len() - 1].to_vec();
            row.push(fields[titles.len() - 1..].join(" "));
            processes.push(row);
        }
    }
    Ok(json!({"Titles": titles, "Processes": processes}))
}

async fn top(
    State(d): State<Shared>,
    Path(id): Path<String>,
    Query(p): Query<TopParams>,
) -> Result<Json<Value>, ApiError> {
    let ps_args = p
        .ps_args
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "-ef".into());
    validate_ps_args(&ps_args).map_err(ApiError::bad_request)?;
    let rec = d.container(&id)?;
    let rec = d.engine.refreshed(&rec.id)?.unwrap_or(rec);
    if rec.state != ContainerState::Running {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            rec.id
        )));
    }
    let pids = d.engine.container_pids(&rec)?;
    let args: Vec<&str> = ps_args.split(' ').collect();
    let quick = format!(
        "-q{}",
        pids.iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let run = |with_quick: bool| {
        let mut a = args.clone();
        if with_quick {
            a.push(&quick);
        }
        let d = d.clone();
        async move { d.engine.host_ps(&a).await }
    };
    let mut out = run(!pids.is_empty()).await;
    // Some ps options (f) refuse -q: retry without it.
    if !out.as_ref().is_ok_and(|o| o.status.success()) {
        out = run(false).await;
    }
    let out = out?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("").to_string();
        // ps refusing the caller's ps_args is the caller's error.
        return Err(if ps_args.is_empty() {
            ApiError::internal(format!("ps: {first}"))
        } else {
            ApiError::bad_request(format!("ps: {first}"))
        });
    }
    let v = parse_ps(&String::from_utf8_lossy(&out.stdout), &pids).map_err(ApiError::internal)?;
    Ok(Json(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::Detail;
    use crate::sandbox::InterfaceCounters;

    fn sample(read: i64, d: &Detail, system: Option<(u64, u32)>, mem: u64) -> ContainerSample {
        ContainerSample {
            read,
            detail: d.clone(),
            system_cpu: system,
            machine_memory: mem,
            networks: Vec::new(),
        }
    }

    #[test]
    fn unlimited_memory_is_the_machine_and_v1_keys_are_all_there() {
        let mut d = Detail {
            cpu_total_ns: 5,
            cpu_percpu_ns: vec![2, 3],
            memory_usage: 4096,
            ..Detail::default()
        };
        d.memory_stat.insert("cache".into(), 7);
        let mut s = sample(1, &d, Some((10, 2)), 1 << 30);
        s.networks.push(InterfaceCounters {
            name: "eth0".into(),
            rx_bytes: 2000,
            tx_packets: 30,
            ..Default::default()
        });
        let v = to_json("x", "/n", &s);
        assert_eq!(v["networks"]["eth0"]["rx_bytes"], 2000);
        assert_eq!(v["networks"]["eth0"]["tx_packets"], 30);
        let v = to_json("x", "/n", &sample(1, &d, Some((10, 2)), 1 << 30));
        assert_eq!(v["memory_stats"]["limit"], 1u64 << 30);
        assert_eq!(v["memory_stats"]["usage"], 4096);
        assert_eq!(v["memory_stats"]["stats"]["cache"], 7);
        assert_eq!(v["memory_stats"]["stats"]["total_inactive_file"], 0);
        assert_eq!(v["cpu_stats"]["cpu_usage"]["percpu_usage"], json!([2, 3]));
        assert_eq!(v["cpu_stats"]["system_cpu_usage"], 10);
        assert_eq!(v["cpu_stats"]["online_cpus"], 2);
        assert!(v.get("networks").is_none());
        assert_eq!(v["blkio_stats"]["io_service_bytes_recursive"], Value::Null);
        d.memory_limit = Some(1 << 20);
        d.v2 = true;
        let v = to_json("x", "/n", &sample(1, &d, None, 1 << 30));
        assert_eq!(v["memory_stats"]["limit"], 1u64 << 20);
        assert!(v["memory_stats"]["stats"].get("anon").is_some());
        assert!(v["cpu_stats"].get("system_cpu_usage").is_none());
    }

    #[test]
    fn previous_sample_fills_pre_fields() {
        let d = Detail {
            cpu_total_ns: 9,
            ..Detail::default()
        };
        let a = to_json("x", "/n", &sample(1_000, &d, None, 0));
        let b = with_previous(to_json("x", "/n", &sample(2_000, &d, None, 0)), &a);
        assert_eq!(b["preread"], a["read"]);
        assert_eq!(b["precpu_stats"]["cpu_usage"]["total_usage"], 9);
        let e = empty("x", "/n");
        assert_eq!(e["read"], time::ZERO);
        assert_eq!(e["cpu_stats"]["cpu_usage"]["total_usage"], 0);
    }

    #[test]
    fn ps_output_is_filtered_by_pid() {
        let out = "UID   PID  PPID  C STIME TTY          TIME CMD\n\
                   root    1     0  0 10:00 ?        00:00:01 /sbin/init\n\
                   root   42     1  0 10:01 ?        00:00:00 sleep 1000\n\
                   root    -     -  0 10:01 ?        00:00:00 -\n\
                   root   43     1  0 10:01 ?        00:00:00 other\n\
                   root    -     -  0 10:01 ?        00:00:00 -\n";
        let v = parse_ps(out, &[42]).unwrap();
        assert_eq!(v["Titles"].as_array().unwrap().len(), 8);
        let p = v["Processes"].as_array().unwrap();
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0][1], "42");
        assert_eq!(p[0][7], "sleep 1000");
        assert!(parse_ps("USER CMD\n", &[]).is_err());
    }

    #[test]
    fn ps_args_may_not_rename_pid() {
        assert!(validate_ps_args("-ef").is_ok());
        assert!(validate_ps_args("-o pid=PID,comm").is_ok());
        assert!(validate_ps_args("-o user=PID").is_err());
    }
}
