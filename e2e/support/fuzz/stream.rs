//! The streaming server under hostile input: exec and port-forward URLs
//! from real CRI `Exec`/`PortForward` calls, upgraded to SPDY/3.1 or
//! WebSocket, then fed frames that are valid, mutated (flipped bytes, cut
//! short, absurd lengths, random stream ids and flags, header blocks that
//! are no zlib) or plain noise. The server must answer the upgrade with a
//! client error or 101, never a 5xx, survive every session, and leave no
//! exec process behind once the connections are gone.

use std::time::{Duration, Instant};

use berth::streaming::spdy::{Frame, FrameEncoder, GoAwayStatus, RstStatus, Setting};
use bytes::{Bytes, BytesMut};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Channel;

use super::{Rng, Tally, BODY_LIMIT, REQUEST_LIMIT};

/// Which door of the streaming server a round knocks on.
#[derive(Clone, Copy, Debug)]
enum Door {
    SpdyExec,
    WsExec,
    SpdyPortForward,
}

/// SPDY header blocks: names and values as the kubelet's clients send
/// them, and some they never would.
fn headers(r: &mut Rng) -> Vec<(String, String)> {
    let kinds = [
        "error", "stdin", "stdout", "stderr", "resize", "data", "", "bogus",
    ];
    let mut h = vec![("streamtype".to_string(), r.pick(&kinds).to_string())];
    match r.below(6) {
        0 => h.push((
            "port".into(),
            r.pick(&["80", "0", "65536", "-1", "x"]).to_string(),
        )),
        1 => h.push(("requestid".into(), r.below(1 << 20).to_string())),
        2 => h.push(("x".repeat(r.below(3000)), "y".repeat(r.below(3000)))),
        3 => h.push((String::new(), String::new())),
        4 => h.push(("streamtype".into(), "stdout".into())),
        _ => {}
    }
    h
}

/// One SPDY frame, well formed, with random fields.
fn spdy_frame(r: &mut Rng) -> Frame {
    let stream_id = match r.below(4) {
        0 => 0,
        1 => (r.below(8) as u32) * 2 + 1,
        2 => (r.below(8) as u32) * 2 + 2,
        _ => r.next() as u32 & 0x7fff_ffff,
    };
    let flags = r.next() as u8;
    match r.below(10) {
        0..=2 => Frame::SynStream {
            stream_id,
            associated_to: if r.chance(10) {
                r.next() as u32 & 0x7fff_ffff
            } else {
                0
            },
            priority: r.below(8) as u8,
            slot: 0,
            flags: flags & 0x03,
            headers: headers(r).into_iter().collect(),
        },
        3 => Frame::Data {
            stream_id,
            flags: flags & 0x01,
            data: Bytes::from(noise(r, 5000)),
        },
        4 => Frame::RstStream {
            stream_id,
            status: RstStatus(r.below(14) as u32),
        },
        5 => Frame::Settings {
            flags: flags & 0x01,
            entries: (0..r.below(4))
                .map(|_| Setting {
                    flags: r.next() as u8,
                    id: r.below(10) as u32,
                    value: r.next() as u32,
                })
                .collect(),
        },
        6 => Frame::Ping {
            id: r.next() as u32,
        },
        7 => Frame::GoAway {
            last_good_stream_id: stream_id,
            status: GoAwayStatus(r.below(3) as u32),
        },
        8 => Frame::WindowUpdate {
            stream_id,
            delta: r.next() as u32,
        },
        _ => Frame::Headers {
            stream_id,
            flags: flags & 0x01,
            headers: headers(r).into_iter().collect(),
        },
    }
}

/// Bytes for an upgraded SPDY connection: frames from one encoder (so the
/// header compression context is consistent), then mutated.
fn spdy_bytes(r: &mut Rng) -> Vec<u8> {
    let mut enc = FrameEncoder::new();
    let mut out = BytesMut::new();
    for _ in 0..1 + r.below(12) {
        let f = spdy_frame(r);
        let _ = enc.encode(&f, &mut out);
    }
    let mut out = out.to_vec();
    mutate(r, &mut out);
    out
}

/// Bytes for an upgraded WebSocket connection: client frames (masked or
/// not, any opcode, lengths that lie), then mutated.
fn ws_bytes(r: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + r.below(8) {
        let opcode = *r.pick(&[0x0u8, 0x1, 0x2, 0x2, 0x2, 0x8, 0x9, 0xa, 0x3, 0xf]);
        let fin = if r.chance(80) { 0x80 } else { 0 };
        let rsv = if r.chance(5) { 0x40 } else { 0 };
        out.push(fin | rsv | opcode);
        let mut payload = match r.below(4) {
            0 => vec![r.below(5) as u8],
            1 => {
                let mut p = vec![0u8];
                p.extend(noise(r, 200));
                p
            }
            2 => vec![255, r.below(5) as u8],
            _ => noise(r, 3000),
        };
        let masked = r.chance(90);
        let mask_bit = if masked { 0x80 } else { 0 };
        let len = payload.len();
        match r.below(10) {
            // A length that claims more than follows, or absurdly much.
            0 => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(r.next() >> r.below(64)).to_be_bytes());
            }
            _ if len < 126 => out.push(mask_bit | len as u8),
            _ if len <= 0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if masked {
            let key = (r.next() as u32).to_be_bytes();
            out.extend_from_slice(&key);
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        out.extend_from_slice(&payload);
    }
    mutate(r, &mut out);
    out
}

/// Up to `max - 1` random bytes.
fn noise(r: &mut Rng, max: usize) -> Vec<u8> {
    let n = r.below(max);
    r.bytes(n)
}

/// 1 to `max` random bytes.
fn noise1(r: &mut Rng, max: usize) -> Vec<u8> {
    let n = 1 + r.below(max);
    r.bytes(n)
}

/// Flips, cuts, inserts or replaces bytes (or leaves them alone).
fn mutate(r: &mut Rng, b: &mut Vec<u8>) {
    match r.below(6) {
        0 => {}
        1 => {
            for _ in 0..1 + r.below(8) {
                if !b.is_empty() {
                    let i = r.below(b.len());
                    b[i] ^= 1 << r.below(8);
                }
            }
        }
        2 => {
            let keep = r.below(b.len().max(1));
            b.truncate(keep);
        }
        3 => {
            let at = r.below(b.len().max(1));
            let extra = noise1(r, 64);
            b.splice(at.min(b.len())..at.min(b.len()), extra);
        }
        4 => *b = noise1(r, 4096),
        _ => {
            // A frame header's length field stretched.
            if b.len() >= 8 {
                b[5] = 0xff;
                b[6] = 0xff;
            }
        }
    }
}

/// The upgrade request for `door` to `path` on `host`.
fn upgrade_request(r: &mut Rng, door: Door, host: &str, path: &str) -> String {
    let path = if r.chance(5) {
        format!("{path}/../../{}", r.below(100))
    } else {
        path.to_string()
    };
    match door {
        Door::WsExec => {
            let proto = *r.pick(&[
                "v5.channel.k8s.io",
                "v4.channel.k8s.io",
                "v4.base64.channel.k8s.io",
                "channel.k8s.io",
                "nonsense",
            ]);
            let version = if r.chance(5) { "8" } else { "13" };
            format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Protocol: {proto}\r\n\r\n"
            )
        }
        Door::SpdyExec | Door::SpdyPortForward => {
            let proto = match door {
                Door::SpdyPortForward => "portforward.k8s.io",
                _ => *r.pick(&[
                    "v4.channel.k8s.io",
                    "v3.channel.k8s.io",
                    "channel.k8s.io",
                    "v9.channel.k8s.io",
                ]),
            };
            format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
                 X-Stream-Protocol-Version: {proto}\r\nContent-Length: 0\r\n\r\n"
            )
        }
    }
}

/// A streaming URL for `door` from the runtime service.
async fn url(
    rt: &mut RuntimeServiceClient<Channel>,
    r: &mut Rng,
    door: Door,
    container: &str,
    pod: &str,
) -> Result<String, tonic::Status> {
    match door {
        Door::SpdyPortForward => rt
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: pod.to_string(),
                port: vec![*r.pick(&[80, 8080, 1])],
            })
            .await
            .map(|x| x.into_inner().url),
        Door::SpdyExec | Door::WsExec => {
            let tty = r.chance(20);
            rt.exec(cri::ExecRequest {
                container_id: container.to_string(),
                cmd: vec!["cat".into()],
                tty,
                stdin: true,
                stdout: true,
                stderr: !tty && r.chance(70),
            })
            .await
            .map(|x| x.into_inner().url)
        }
    }
}

/// One round: a URL, an upgrade, hostile bytes, what came back.
async fn round(url: &str, r: &mut Rng, door: Door, tally: &mut Tally) {
    let Some(rest) = url.strip_prefix("http://") else {
        tally.count("stream: url not http");
        tally.fault(format!("{door:?}"), format!("streaming URL {url}"));
        return;
    };
    let Some(slash) = rest.find('/') else {
        tally.count("stream: url without a path");
        return;
    };
    let (host, path) = rest.split_at(slash);
    let Ok(Ok(mut tcp)) = tokio::time::timeout(REQUEST_LIMIT, TcpStream::connect(host)).await
    else {
        tally.count("stream: connect failed");
        tally.fault(format!("{door:?} {url}"), "connect failed".into());
        return;
    };
    let req = upgrade_request(r, door, host, path);
    if tcp.write_all(req.as_bytes()).await.is_err() {
        tally.count("stream: closed before the upgrade");
        return;
    }
    // The head, byte by byte (what follows it belongs to the new protocol).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let deadline = Instant::now() + REQUEST_LIMIT;
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tcp.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let code: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    match code {
        101 => {}
        400..=499 => {
            tally.count("stream: upgrade refused 4xx");
            return;
        }
        0 => {
            tally.count("stream: no answer to the upgrade");
            tally.note(format!("{door:?} {req}"), head);
            return;
        }
        _ => {
            tally.count(&format!("stream: upgrade answered {}xx", code / 100));
            if code >= 500 {
                tally.fault(format!("{door:?} {req}"), head);
            }
            return;
        }
    }
    let noise = match door {
        Door::WsExec => ws_bytes(r),
        Door::SpdyExec | Door::SpdyPortForward => spdy_bytes(r),
    };
    let _ = tcp.write_all(&noise).await;
    // Whatever the server says back, until it closes or the budget is over.
    let mut sink = vec![0u8; 64 * 1024];
    let until = Instant::now() + BODY_LIMIT;
    let closed = loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tcp.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => continue,
            Err(_) => break false,
        }
    };
    tally.count(if closed {
        "stream: upgraded, closed by the server"
    } else {
        "stream: upgraded, dropped by the fuzzer"
    });
}

/// `count` rounds (within `limit`) against the exec of `container` and the
/// port-forward of `pod`.
pub async fn fuzz_streams(
    channel: Channel,
    container: &str,
    pod: &str,
    r: &mut Rng,
    count: usize,
    limit: Duration,
    tally: &mut Tally,
) {
    let mut rt = RuntimeServiceClient::new(channel);
    let start = Instant::now();
    for _ in 0..count {
        if start.elapsed() > limit {
            break;
        }
        let door = *r.pick(&[
            Door::SpdyExec,
            Door::SpdyExec,
            Door::WsExec,
            Door::WsExec,
            Door::SpdyPortForward,
        ]);
        match url(&mut rt, r, door, container, pod).await {
            Ok(u) => round(&u, r, door, tally).await,
            Err(s) => {
                tally.count(&format!("stream: url refused {:?}", s.code()));
                tally.fault(format!("{door:?} url"), s.message().to_string());
            }
        }
    }
}

/// `cat` processes still running in `container` (execs the fuzzed sessions
/// started), after waiting up to `wait` for them to go.
pub async fn leftover_execs(channel: Channel, container: &str, wait: Duration) -> usize {
    let mut rt = RuntimeServiceClient::new(channel);
    let deadline = Instant::now() + wait;
    loop {
        let n = match rt
            .exec_sync(cri::ExecSyncRequest {
                container_id: container.to_string(),
                cmd: vec!["ps".into(), "-o".into(), "comm".into()],
                timeout: 10,
            })
            .await
        {
            Ok(x) => String::from_utf8_lossy(&x.into_inner().stdout)
                .lines()
                .filter(|l| l.trim() == "cat")
                .count(),
            Err(_) => usize::MAX,
        };
        if n == 0 || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
