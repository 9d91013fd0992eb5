//! Docker API requests: value pools (hostile, but never naming a host
//! other than loopback) and raw HTTP/1.1 on the unix socket.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{huge, truncate, Rng, Tally, Targets, BODY_LIMIT, REQUEST_LIMIT};

/// Hostile strings for names, ids and free text (never an image name with a
/// registry host, never a URL).
fn text(r: &mut Rng, t: &Targets) -> String {
    match r.below(16) {
        0 => String::new(),
        1 => huge(70_000),
        2 => "../../../../etc/passwd".into(),
        3 => "..".into(),
        4 => "名前-ünïcødé-\u{202e}".into(),
        5 => "a\u{0}b".into(),
        6 => " spaced out ".into(),
        7 => r.pick(&t.containers).clone(),
        8 => hex::encode(r.bytes(32)),
        9 => hex::encode(r.bytes(2)),
        10 => "-1".into(),
        11 => "fz_".to_string() + &hex::encode(r.bytes(4)),
        12 => "%s%n%x".into(),
        13 => "\\\"quote'".into(),
        14 => "x".repeat(256),
        _ => "/".into(),
    }
}

/// Image references that resolve only to loopback (see the module doc).
fn image(r: &mut Rng, t: &Targets) -> String {
    match r.below(10) {
        0 => t.image.clone(),
        1 => "busybox".into(),
        2 => "nosuchimage".into(),
        3 => String::new(),
        4 => huge(5_000).to_lowercase(),
        5 => "UPPER".into(),
        6 => "a:b:c".into(),
        7 => "busybox@sha256:zz".into(),
        8 => format!("{}@sha256:{}", t.image, hex::encode(r.bytes(32))),
        _ => "sha256:".to_string() + &hex::encode(r.bytes(32)),
    }
}

fn number(r: &mut Rng) -> serde_json::Value {
    use serde_json::json;
    match r.below(9) {
        0 => json!(-1),
        1 => json!(0),
        2 => json!(i64::MAX),
        3 => json!(i64::MIN),
        4 => json!(u64::MAX),
        5 => json!(1e308),
        6 => json!(-0.5),
        7 => json!(4096),
        _ => json!(r.next() as i64),
    }
}

/// A JSON value of a random kind (the wrong one, often).
fn value(r: &mut Rng, t: &Targets, depth: usize) -> serde_json::Value {
    use serde_json::{json, Value};
    match r.below(if depth > 2 { 5 } else { 7 }) {
        0 => json!(text(r, t)),
        1 => number(r),
        2 => json!(r.chance(50)),
        3 => Value::Null,
        4 => json!(r
            .pick(&["none", "host", "bridge", "no-such!net"])
            .to_string()),
        5 => Value::Array((0..r.below(4)).map(|_| value(r, t, depth + 1)).collect()),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..r.below(4) {
                m.insert(text(r, t), value(r, t, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// Field names the Docker create/update/network/volume/exec bodies have.
const FIELDS: &[&str] = &[
    "Cmd",
    "Entrypoint",
    "Env",
    "Labels",
    "WorkingDir",
    "User",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "AttachStdin",
    "AttachStdout",
    "ExposedPorts",
    "StopSignal",
    "StopTimeout",
    "Hostname",
    "Name",
    "Driver",
    "DriverOpts",
    "IPAM",
    "Internal",
    "Detach",
    "Privileged",
    "Memory",
    "NanoCpus",
    "CpuShares",
    "CpuQuota",
    "CpuPeriod",
    "CpusetCpus",
    "Healthcheck",
    "Volumes",
    "Options",
    "Subnet",
];

/// HostConfig keys, with values that are safe on this host (binds only
/// under the fuzz dir; network modes that name no created network).
fn host_config(r: &mut Rng, t: &Targets) -> serde_json::Value {
    use serde_json::json;
    let mut m = serde_json::Map::new();
    for _ in 0..r.below(5) {
        let (k, v) = match r.below(12) {
            0 => ("Memory", number(r)),
            1 => ("NanoCpus", number(r)),
            2 => ("CpuShares", number(r)),
            3 => (
                "Binds",
                json!([r
                    .pick(&[
                        format!("{}:/x", t.bind_dir.display()),
                        format!("{}:/x:ro,z,bad", t.bind_dir.display()),
                        "relative:/x".into(),
                        ":".into(),
                        "fzvol:/data".into(),
                        format!("{}/../nope:/x", t.bind_dir.display()),
                    ])
                    .clone()]),
            ),
            4 => (
                "NetworkMode",
                json!(r.pick(&["none", "host", "bridge", "container:nope", "bad!name"])),
            ),
            5 => (
                "PortBindings",
                json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": r.pick(&["-1", "99999", "abc", ""]).to_string()}]}),
            ),
            6 => (
                "RestartPolicy",
                json!({"Name": r.pick(&["always", "on-failure", "bogus"]).to_string(), "MaximumRetryCount": number(r)}),
            ),
            7 => (
                "Sysctls",
                json!({"net.ipv4.ip_forward": "1", "kernel.bogus": text(r, t)}),
            ),
            8 => (
                "CapAdd",
                json!([r.pick(&["ALL", "NET_ADMIN", "NOPE", ""]).to_string()]),
            ),
            9 => (
                "Mounts",
                json!([{"Type": r.pick(&["bind", "volume", "tmpfs", "x"]).to_string(), "Source": "fzvol", "Target": text(r, t)}]),
            ),
            10 => ("ShmSize", number(r)),
            _ => ("Ulimits", value(r, t, 1)),
        };
        m.insert(k.into(), v);
    }
    serde_json::Value::Object(m)
}

fn json_body(r: &mut Rng, t: &Targets) -> Vec<u8> {
    match r.below(12) {
        0 => b"{".to_vec(),
        1 => Vec::new(),
        2 => "[".repeat(100_000).into_bytes(),
        3 => r.bytes(300),
        4 => format!("{{\"Image\": \"{}\"}}", huge(3 << 20)).into_bytes(),
        5 => serde_json::to_vec(&value(r, t, 0)).unwrap_or_default(),
        _ => {
            let mut m = serde_json::Map::new();
            if r.chance(70) {
                m.insert("Image".into(), serde_json::json!(image(r, t)));
            }
            for _ in 0..r.below(6) {
                let k = r.pick(FIELDS).to_string();
                m.insert(k, value(r, t, 1));
            }
            if r.chance(50) {
                m.insert("HostConfig".into(), host_config(r, t));
            }
            let mut b = serde_json::to_vec(&m).unwrap_or_default();
            if r.chance(10) {
                let cut = r.below(b.len());
                b.truncate(cut);
            }
            b
        }
    }
}

fn tar_body(r: &mut Rng, t: &Targets) -> Vec<u8> {
    match r.below(6) {
        0 => r.bytes(2048),
        1 => b"not a tar at all".to_vec(),
        2 => {
            let cut = r.below(t.archive.len());
            t.archive[..cut].to_vec()
        }
        3 => {
            // A header with an escaping path and a lying size.
            let mut h = tar::Header::new_gnu();
            let _ = h.set_path("x");
            h.as_old_mut().name[..12].copy_from_slice(b"../../escape");
            h.set_size(1 << 40);
            h.set_cksum();
            h.as_bytes().to_vec()
        }
        4 => Vec::new(),
        _ => {
            let mut b = t.archive.clone();
            let at = r.below(b.len());
            for x in b.iter_mut().skip(at).take(64) {
                *x ^= 0x5a;
            }
            b
        }
    }
}

/// (method, path with `{id}` where an object goes, body kind).
#[derive(Clone, Copy)]
enum BodyKind {
    None,
    Json,
    Tar,
}

const ROUTES: &[(&str, &str, BodyKind)] = &[
    ("GET", "/_ping", BodyKind::None),
    ("HEAD", "/_ping", BodyKind::None),
    ("GET", "/version", BodyKind::None),
    ("GET", "/info", BodyKind::None),
    ("GET", "/system/df", BodyKind::None),
    ("GET", "/events", BodyKind::None),
    ("GET", "/containers/json", BodyKind::None),
    ("POST", "/containers/create", BodyKind::Json),
    ("POST", "/containers/prune", BodyKind::None),
    ("GET", "/containers/{id}/json", BodyKind::None),
    ("POST", "/containers/{id}/start", BodyKind::None),
    ("POST", "/containers/{id}/stop", BodyKind::None),
    ("POST", "/containers/{id}/restart", BodyKind::None),
    ("POST", "/containers/{id}/kill", BodyKind::None),
    ("POST", "/containers/{id}/wait", BodyKind::None),
    ("POST", "/containers/{id}/rename", BodyKind::None),
    ("POST", "/containers/{id}/pause", BodyKind::None),
    ("POST", "/containers/{id}/unpause", BodyKind::None),
    ("POST", "/containers/{id}/update", BodyKind::Json),
    ("GET", "/containers/{id}/stats", BodyKind::None),
    ("GET", "/containers/{id}/top", BodyKind::None),
    ("GET", "/containers/{id}/logs", BodyKind::None),
    ("DELETE", "/containers/{id}", BodyKind::None),
    ("POST", "/containers/{id}/attach", BodyKind::None),
    ("POST", "/containers/{id}/resize", BodyKind::None),
    ("POST", "/containers/{id}/exec", BodyKind::Json),
    ("GET", "/containers/{id}/changes", BodyKind::None),
    ("GET", "/containers/{id}/export", BodyKind::None),
    ("POST", "/commit", BodyKind::Json),
    ("GET", "/containers/{id}/archive", BodyKind::None),
    ("HEAD", "/containers/{id}/archive", BodyKind::None),
    ("PUT", "/containers/{id}/archive", BodyKind::Tar),
    ("POST", "/exec/{id}/start", BodyKind::Json),
    ("POST", "/exec/{id}/resize", BodyKind::None),
    ("GET", "/exec/{id}/json", BodyKind::None),
    ("GET", "/images/json", BodyKind::None),
    ("GET", "/images/search", BodyKind::None),
    ("GET", "/images/get", BodyKind::None),
    ("POST", "/images/create", BodyKind::Tar),
    ("POST", "/images/load", BodyKind::Tar),
    ("POST", "/images/prune", BodyKind::None),
    ("POST", "/build", BodyKind::Tar),
    ("POST", "/build/prune", BodyKind::None),
    ("GET", "/images/{image}/json", BodyKind::None),
    ("GET", "/images/{image}/history", BodyKind::None),
    ("GET", "/images/{image}/get", BodyKind::None),
    ("POST", "/images/{image}/tag", BodyKind::None),
    ("POST", "/images/{image}/push", BodyKind::None),
    ("GET", "/distribution/{image}/json", BodyKind::None),
    ("POST", "/auth", BodyKind::Json),
    ("DELETE", "/images/{image}", BodyKind::None),
    ("GET", "/networks", BodyKind::None),
    ("POST", "/networks/create", BodyKind::Json),
    ("POST", "/networks/prune", BodyKind::None),
    ("GET", "/networks/{id}", BodyKind::None),
    ("DELETE", "/networks/{id}", BodyKind::None),
    ("POST", "/networks/{id}/connect", BodyKind::Json),
    ("POST", "/networks/{id}/disconnect", BodyKind::Json),
    ("GET", "/volumes", BodyKind::None),
    ("POST", "/volumes/create", BodyKind::Json),
    ("POST", "/volumes/prune", BodyKind::None),
    ("GET", "/volumes/{id}", BodyKind::None),
    ("DELETE", "/volumes/{id}", BodyKind::None),
    ("GET", "/nope/{id}", BodyKind::None),
];

/// Query parameter names the routes read.
const PARAMS: &[&str] = &[
    "all",
    "limit",
    "size",
    "filters",
    "t",
    "signal",
    "condition",
    "name",
    "fromImage",
    "tag",
    "fromSrc",
    "repo",
    "force",
    "noprune",
    "stream",
    "stdin",
    "stdout",
    "stderr",
    "logs",
    "detachKeys",
    "h",
    "w",
    "follow",
    "since",
    "until",
    "timestamps",
    "tail",
    "ps_args",
    "path",
    "noOverwriteDirNonDir",
    "v",
    "link",
    "quiet",
    "names",
    "one-shot",
    "changes",
    "platform",
    "container",
    "pause",
    "comment",
    "author",
];

/// Percent-encodes everything but unreserved characters.
fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

fn query_value(r: &mut Rng, name: &str, t: &Targets) -> String {
    let raw = match name {
        "fromImage" | "repo" => image(r, t),
        "tag" => r
            .pick(&["v1", "latest", "", "nosuch", "sha256:zz"])
            .to_string(),
        "fromSrc" => r.pick(&["-", "", "nonsense"]).to_string(),
        "container" if r.chance(50) => r.pick(&t.containers).clone(),
        "pause" => r.pick(&["0", "1", "false", "maybe", ""]).to_string(),
        "filters" => r
            .pick(&[
                "{\"label\":[\"x\"]}",
                "{\"status\":[\"bogus\"]}",
                "{\"reference\":[\"*a*a*a*a*a*a*a*a*a*a*a*b\"]}",
                "{\"until\":[\"-99999999999999999\"]}",
                "{\"dangling\":{\"maybe\":true}}",
                "[1,2]",
                "{\"",
                "{\"id\":\"notalist\"}",
            ])
            .to_string(),
        "signal" => r
            .pick(&["KILL", "0", "-1", "999", "SIGFOO", ""])
            .to_string(),
        "path" => r
            .pick(&[
                "/",
                "/etc",
                "../../../../",
                "/proc/self/root",
                "",
                "/dev/null",
            ])
            .to_string(),
        "since" | "until" | "t" | "tail" | "h" | "w" | "limit" => r
            .pick(&[
                "-1",
                "0",
                "1e400",
                "18446744073709551616",
                "abc",
                "10",
                "1.5",
                "",
            ])
            .to_string(),
        _ => match r.below(4) {
            0 => r.pick(&["1", "0", "true", "yes"]).to_string(),
            _ => text(r, t),
        },
    };
    if r.chance(5) {
        return "%FF%FE%00".into();
    }
    enc(&raw)
}

/// One random Docker request: raw bytes, a short label for reports, and
/// whether its body is cut short of its Content-Length.
pub fn docker_request(r: &mut Rng, t: &Targets) -> (Vec<u8>, String, bool) {
    let &(method, template, body_kind) = r.pick(ROUTES);
    let id = match r.below(6) {
        0..=2 => {
            let c: &String = r.pick(&t.containers);
            enc(c)
        }
        3 => "%FF%FE".into(),
        4 => "..%2F..%2Fetc".into(),
        _ => enc(&text(r, t)),
    };
    let mut path = template
        .replace("{id}", &id)
        .replace("{image}", &enc(&image(r, t)));
    if r.chance(30) {
        path = format!("/v1.{}{path}", r.pick(&["24", "41", "47", "99", "x", "1"]));
    }
    let mut q = Vec::new();
    for _ in 0..r.below(4) {
        let name = *r.pick(PARAMS);
        q.push(format!("{name}={}", query_value(r, name, t)));
    }
    if !q.is_empty() {
        path = format!("{path}?{}", q.join("&"));
    }
    let body = match body_kind {
        BodyKind::None if r.chance(10) => json_body(r, t),
        BodyKind::None => Vec::new(),
        BodyKind::Json => json_body(r, t),
        BodyKind::Tar => tar_body(r, t),
    };
    let label = format!("{method} {}", truncate(&path, 160));
    let mut req = Vec::new();
    let line_method = if r.chance(2) { "BREW" } else { method };
    req.extend_from_slice(format!("{line_method} {path} HTTP/1.1\r\nHost: docker\r\n").as_bytes());
    match r.below(20) {
        0 => req.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: tcp\r\n"),
        1 => req.extend_from_slice(format!("X-Registry-Auth: {}\r\n", huge(9_000)).as_bytes()),
        2 => req.extend_from_slice(b"X-Registry-Auth: !!!notbase64\r\n"),
        3 => req.extend_from_slice(b"Content-Type: application/x-tar\r\n"),
        4 => {
            for i in 0..150 {
                req.extend_from_slice(format!("X-Many-{i}: v\r\n").as_bytes());
            }
        }
        5 => req.extend_from_slice(b"Bad Header Line\r\n"),
        _ => req.extend_from_slice(b"Content-Type: application/json\r\n"),
    }
    // A body cut short of its announced length, now and then.
    let cut_short = r.chance(3);
    let announced = body.len() + if cut_short { 100 } else { 0 };
    req.extend_from_slice(
        format!("Content-Length: {announced}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    req.extend_from_slice(&body);
    (req, label, cut_short)
}

/// Sends one raw request; returns the status and the start of the body.
/// A request whose body is `cut_short` is followed, after a moment, by the
/// end of the client's side (the body never comes). Other requests keep
/// the connection open both ways: the server closes it (`Connection:
/// close`), and an HTTP/1 server may drop a response once it reads EOF.
pub async fn send_raw(
    socket: &Path,
    req: &[u8],
    cut_short: bool,
) -> Result<(u16, String), &'static str> {
    let go = async {
        let s = UnixStream::connect(socket).await.map_err(|_| "connect")?;
        let (mut s, mut wr) = s.into_split();
        // Written while the answer is read, as HTTP clients do: a server
        // may answer (a stream such as /events) without reading a big body
        // it has no use for, and would then never see the end of it. What it
        // answered counts, whether or not it read all of the body.
        let req = req.to_vec();
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(&req).await;
            if cut_short {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = wr.shutdown().await;
            }
            // Kept open until the answer is read.
            wr
        });
        let _writer = AbortOnDrop(writer);
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        let head_end = loop {
            let n = s.read(&mut chunk).await.map_err(|_| "closed")?;
            if n == 0 {
                return Err("closed");
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 1 << 20 {
                return Err("huge head");
            }
        };
        let status = std::str::from_utf8(&buf[..head_end])
            .ok()
            .and_then(|h| h.split(' ').nth(1))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or("bad status line")?;
        let _ = tokio::time::timeout(BODY_LIMIT, async {
            while buf.len() < head_end + 4096 {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        let body = String::from_utf8_lossy(&buf[head_end..buf.len().min(head_end + 400)]);
        Ok((status, body.into_owned()))
    };
    tokio::time::timeout(REQUEST_LIMIT, go)
        .await
        .unwrap_or(Err("timeout"))
}

/// Aborts a task (and drops what it holds) when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `count` Docker requests (stopping at `limit`) into `tally`.
pub async fn fuzz_docker(
    socket: &Path,
    t: &Targets,
    r: &mut Rng,
    count: usize,
    limit: Duration,
    tally: &mut Tally,
) {
    let start = Instant::now();
    for _ in 0..count {
        if start.elapsed() > limit {
            break;
        }
        let (req, label, cut_short) = docker_request(r, t);
        let answer = send_raw(socket, &req, cut_short).await;
        match answer {
            Ok((code, body)) => {
                let class = match code {
                    501 => "docker 501 (not built)".to_string(),
                    c => format!("docker {}xx", c / 100),
                };
                tally.count(&class);
                if code >= 500 && code != 501 {
                    tally.fault(label, format!("{code} {}", body.trim()));
                }
            }
            Err(why) => {
                tally.count(&format!("docker no answer ({why})"));
                if why == "timeout" {
                    tally.fault(label, why.into());
                } else if r.chance(10) {
                    tally.note(label, why.into());
                }
            }
        }
    }
}
