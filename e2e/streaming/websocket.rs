//! CRI streaming over WebSocket end to end: the same URLs as SPDY, driven by
//! a client that speaks RFC 6455 and Kubernetes' channel protocols as
//! client-go does. Also: many concurrent sessions over both transports,
//! leaks after a vanished client, and the idle timeout.

use std::time::Duration;

use k8s_cri::v1::PortForwardRequest;
use serde_json::Value;

use super::ws_client::{self, WsClient};
use super::{exec_request, exec_url, pids_with, run_exec, target};
use crate::runtime::Env;
use crate::support::pods::{self, RuntimeClient};
use crate::support::wait_until;

const V5: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

/// What one exec returned.
struct Outcome {
    stdout: String,
    stderr: String,
    error: Vec<u8>,
}

impl Outcome {
    fn status(&self) -> Value {
        serde_json::from_slice(&self.error)
            .unwrap_or_else(|e| panic!("status {:?}: {e}", String::from_utf8_lossy(&self.error)))
    }
}

/// Runs a non-tty exec to its end over WebSocket offering `protocols`;
/// sends `stdin` and then closes the channel (v5) if given.
async fn ws_exec(
    rt: &mut RuntimeClient,
    id: &str,
    cmd: &[&str],
    stdin: Option<&[u8]>,
    protocols: &[&str],
) -> (WsClient, Outcome) {
    let url = exec_url(rt, exec_request(id, cmd, stdin.is_some(), false)).await;
    let c = ws_client::connect(&url, protocols).await.expect("upgrade");
    if let Some(data) = stdin {
        c.send(STDIN, data);
        c.close_channel(STDIN);
    }
    c.closed().await;
    let o = Outcome {
        stdout: String::from_utf8_lossy(&c.received(STDOUT)).into_owned(),
        stderr: String::from_utf8_lossy(&c.received(STDERR)).into_owned(),
        error: c.received(ERROR),
    };
    (c, o)
}

#[tokio::test]
async fn websocket_exec_output_exit_codes_stdin_and_tty() {
    let mut e = Env::new().await;
    let (_pod, id) = target(&mut e, "ws-exec", "exec sleep 1000").await;

    let (c, o) = ws_exec(&mut e.rt, &id, &["echo", "hi"], None, V5).await;
    assert_eq!(c.protocol, "v5.channel.k8s.io");
    assert_eq!(o.stdout, "hi\n");
    assert_eq!(
        o.status(),
        serde_json::json!({"metadata": {}, "status": "Success"})
    );
    // The server's first message, an empty one on stdout, says "ready".
    assert_eq!(c.messages(STDOUT).first(), Some(&Vec::new()));

    let script = ["sh", "-c", "echo oops >&2; exit 3"];
    let (_, o) = ws_exec(&mut e.rt, &id, &script, None, V5).await;
    assert_eq!(o.stderr, "oops\n");
    let st = o.status();
    assert_eq!(st["status"], "Failure", "{st}");
    assert_eq!(st["reason"], "NonZeroExitCode");
    assert_eq!(st["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(st["details"]["causes"][0]["message"], "3");

    // v5: stdin is half-closed with [255, 0]; cat sees EOF and exits.
    let (_, o) = ws_exec(&mut e.rt, &id, &["cat"], Some(b"through stdin\n"), V5).await;
    assert_eq!(o.stdout, "through stdin\n");
    assert_eq!(o.status()["status"], "Success");

    // The base64 protocol: text messages, channel digit, base64 payload.
    let b64 = &["v4.base64.channel.k8s.io"];
    let (c, o) = ws_exec(
        &mut e.rt,
        &id,
        &["sh", "-c", "printf '\\001\\377x'"],
        None,
        b64,
    )
    .await;
    assert_eq!(c.protocol, "v4.base64.channel.k8s.io");
    assert_eq!(c.received(STDOUT), b"\x01\xffx");
    assert_eq!(o.status()["status"], "Success");

    // Before v4 the error channel carries plain text, and nothing on success.
    let legacy = &["channel.k8s.io"];
    let (_, o) = ws_exec(&mut e.rt, &id, &script, None, legacy).await;
    let text = String::from_utf8_lossy(&o.error);
    assert!(text.contains("non-zero exit code: 3"), "{text}");
    let (_, o) = ws_exec(&mut e.rt, &id, &["true"], None, legacy).await;
    assert!(o.error.is_empty(), "{:?}", o.error);

    // A terminal: the first size is taken before the process starts, later
    // ones are applied to the pty.
    let script = "sleep 1; stty size; read x; sleep 0.5; stty size";
    let url = exec_url(
        &mut e.rt,
        exec_request(&id, &["sh", "-c", script], true, true),
    )
    .await;
    let c = ws_client::connect(&url, V5).await.expect("upgrade");
    c.send(RESIZE, br#"{"Width":100,"Height":33}"#);
    let first = c
        .wait(STDOUT, Duration::from_secs(20), |d| {
            String::from_utf8_lossy(d).contains("33 100")
        })
        .await;
    assert!(
        String::from_utf8_lossy(&first).contains("33 100"),
        "{:?}",
        String::from_utf8_lossy(&first)
    );
    c.send(RESIZE, br#"{"Width":90,"Height":20}"#);
    c.send(STDIN, b"go\r");
    let out = c.read_to_end(STDOUT).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.trim_end().ends_with("20 90"), "{text:?}");
    assert!(String::from_utf8_lossy(&c.received(ERROR)).contains("Success"));

    // Offers nothing in common: 403, and the token is spent.
    let url = exec_url(&mut e.rt, exec_request(&id, &["true"], false, false)).await;
    let (code, body) = ws_client::connect(&url, &["v9.channel.k8s.io"])
        .await
        .err()
        .expect("refused");
    assert_eq!(code, 403, "{body}");
    e.remove_all_pods().await;
}

#[tokio::test]
async fn websocket_attach_follows_output_and_detaches_on_stdin_close() {
    let mut e = Env::new().await;
    let pod_cfg = e.pod_config("ws-attach");
    let pod = e.pod(&pod_cfg).await;
    let script = "(i=0; while true; do i=$((i+1)); echo \"tick $i\"; sleep 0.2; done) & \
                  while read l; do echo \"got $l\"; done";
    let (mut cfg, _tag) = e.container("target", script);
    cfg.stdin = true;
    let id = e.run(&pod, &cfg, &pod_cfg).await;
    pods::wait_state(
        &mut e.rt,
        &id,
        k8s_cri::v1::ContainerState::ContainerRunning,
    )
    .await;
    let attach = |stdin: bool| k8s_cri::v1::AttachRequest {
        container_id: id.clone(),
        stdin,
        tty: false,
        stdout: true,
        stderr: true,
    };
    // Output only: the ticks of the running container arrive.
    let url =
        e.rt.attach(attach(false))
            .await
            .expect("Attach")
            .into_inner()
            .url;
    let watcher = ws_client::connect(&url, V5).await.expect("upgrade");
    let got = watcher
        .wait(STDOUT, Duration::from_secs(20), |d| {
            String::from_utf8_lossy(d).matches("tick").count() >= 2
        })
        .await;
    assert!(String::from_utf8_lossy(&got).contains("tick"), "{got:?}");
    watcher.disconnect();

    // With stdin: lines reach the container; closing stdin (v5) detaches.
    let url =
        e.rt.attach(attach(true))
            .await
            .expect("Attach")
            .into_inner()
            .url;
    let c = ws_client::connect(&url, V5).await.expect("upgrade");
    let mut n = 0;
    loop {
        n += 1;
        c.send(STDIN, format!("line{n}\n").as_bytes());
        let got = c
            .wait(STDOUT, Duration::from_secs(2), |d| {
                String::from_utf8_lossy(d).contains("got line")
            })
            .await;
        if String::from_utf8_lossy(&got).contains("got line") {
            break;
        }
        assert!(n < 10, "attach input never arrived: {got:?}");
    }
    c.close_channel(STDIN);
    c.closed().await;
    let status = String::from_utf8_lossy(&c.received(ERROR)).into_owned();
    assert!(status.contains("Success"), "{status}");
    let st = pods::status_ok(&mut e.rt, &id).await;
    assert_eq!(
        st.state,
        k8s_cri::v1::ContainerState::ContainerRunning as i32
    );
    e.remove_all_pods().await;
}

#[tokio::test]
async fn websocket_port_forward_reaches_a_server_inside_the_pod() {
    let mut e = Env::new().await;
    let script = "mkdir -p /www && echo hello-from-the-pod > /www/index.html && exec httpd -f -p 8080 -h /www";
    let (pod, id) = target(&mut e, "ws-pf", script).await;
    wait_until("httpd to listen", Duration::from_secs(20), || {
        let (mut rt, id) = (e.rt.clone(), id.clone());
        async move {
            let r = pods::exec(&mut rt, &id, &["wget", "-qO-", "http://127.0.0.1:8080/"], 5).await;
            r.ok().filter(|r| r.exit_code == 0).map(|_| ())
        }
    })
    .await;
    let url = || {
        let (mut rt, pod) = (e.rt.clone(), pod.clone());
        async move {
            let req = PortForwardRequest {
                pod_sandbox_id: pod,
                port: vec![8080],
            };
            rt.port_forward(req)
                .await
                .expect("PortForward")
                .into_inner()
                .url
        }
    };
    for protocols in [
        &["v4.channel.k8s.io"][..],
        &["v4.base64.channel.k8s.io"],
        &["portforward.k8s.io"],
    ] {
        let base = url().await;
        let c = ws_client::connect(&format!("{base}?port=8080"), protocols)
            .await
            .expect("upgrade");
        assert_eq!(c.protocol, protocols[0]);
        // Each channel starts with its port, little-endian.
        for ch in [0, 1] {
            let first = c.wait(ch, Duration::from_secs(10), |d| d.len() >= 2).await;
            assert_eq!(&first[..2], 8080u16.to_le_bytes(), "channel {ch}");
        }
        c.send(0, b"GET /index.html HTTP/1.0\r\n\r\n");
        // httpd answers and closes; the session ends with the connection.
        let data = c.read_to_end(0).await;
        let text = String::from_utf8_lossy(&data[2..]);
        assert!(text.contains("hello-from-the-pod"), "{text}");
        assert_eq!(c.received(1), 8080u16.to_le_bytes(), "no error");
    }

    // Two ports on one connection, one of them closed: its error channel
    // says so, the other works.
    let base = url().await;
    let c = ws_client::connect(
        &format!("{base}?port=8081&port=8080"),
        &["v4.channel.k8s.io"],
    )
    .await
    .expect("upgrade");
    let err = c.wait(1, Duration::from_secs(20), |d| d.len() > 2).await;
    assert!(
        String::from_utf8_lossy(&err[2..]).contains("failed to connect"),
        "{err:?}"
    );
    c.send(2, b"GET /index.html HTTP/1.0\r\n\r\n");
    let data = c.read_to_end(2).await;
    assert!(String::from_utf8_lossy(&data).contains("hello-from-the-pod"));

    // WebSocket port-forward names its ports in the URL.
    let base = url().await;
    let (code, _) = ws_client::connect(&base, &["v4.channel.k8s.io"])
        .await
        .err()
        .expect("no ports");
    assert_eq!(code, 400);
    e.remove_all_pods().await;
}

#[tokio::test]
async fn hundred_concurrent_execs_over_both_transports() {
    let mut e = Env::new().await;
    let (_pod, id) = target(&mut e, "stream-hundred", "exec sleep 1000").await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100 {
        let (mut rt, id) = (e.rt.clone(), id.clone());
        set.spawn(async move {
            let word = format!("exec-{i}");
            if i % 2 == 0 {
                let o = run_exec(&mut rt, &id, &["echo", &word], None).await;
                assert_eq!(o.stdout, format!("{word}\n"));
                assert_eq!(o.status["status"], "Success");
            } else {
                let (_, o) = ws_exec(&mut rt, &id, &["echo", &word], None, V5).await;
                assert_eq!(o.stdout, format!("{word}\n"));
                assert_eq!(o.status()["status"], "Success");
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("exec task");
    }
    e.remove_all_pods().await;
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits until the command line `needle` runs no more, and `berthd` holds
/// no more descriptors than `before`.
async fn wait_released(e: &Env, needle: &str, before: usize) {
    let pid = e.d.pid();
    wait_until(
        "the exec's process and descriptors to be released",
        Duration::from_secs(30),
        || async { (pids_with(needle).is_empty() && open_fds(pid) <= before).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn vanished_websocket_client_leaks_no_process_or_descriptor() {
    let mut e = Env::new().await;
    let (_pod, id) = target(&mut e, "ws-gone", "exec sleep 1000").await;
    // Warm up whatever the daemon opens once (pools, sockets).
    let (_, o) = ws_exec(&mut e.rt, &id, &["true"], None, V5).await;
    assert_eq!(o.status()["status"], "Success");
    let before = open_fds(e.d.pid());
    for (tty, needle) in [(false, "sleep 4321"), (true, "sleep 4322")] {
        let cmd = ["sleep", needle.trim_start_matches("sleep ")];
        let url = exec_url(&mut e.rt, exec_request(&id, &cmd, true, tty)).await;
        let c = ws_client::connect(&url, V5).await.expect("upgrade");
        if tty {
            c.send(RESIZE, br#"{"Width":80,"Height":24}"#);
        }
        wait_until(
            "the exec'd sleep to run",
            Duration::from_secs(20),
            || async { (!pids_with(needle).is_empty()).then_some(()) },
        )
        .await;
        assert!(open_fds(e.d.pid()) > before);
        c.disconnect();
        wait_released(&e, needle, before).await;
    }
    e.remove_all_pods().await;
}

/// Restarts the daemon with `lines` added to its `cri:` section (the
/// harness writes that section itself).
async fn restart_with_cri(e: &mut Env, lines: &str) {
    let path = e.d.config_path().to_path_buf();
    let text = std::fs::read_to_string(&path).unwrap();
    let anchor = "  streaming_address: \"127.0.0.1:0\"\n";
    assert!(text.contains(anchor), "{text}");
    std::fs::write(&path, text.replace(anchor, &format!("{anchor}{lines}"))).unwrap();
    e.d.restart().await;
    e.rt = e.d.runtime_client().await;
}

#[tokio::test]
async fn idle_sessions_are_closed() {
    let mut e = Env::new().await;
    restart_with_cri(&mut e, "  stream_idle_timeout: 2s\n").await;
    let (_pod, id) = target(&mut e, "ws-idle", "exec sleep 1000").await;
    let (_, o) = ws_exec(&mut e.rt, &id, &["true"], None, V5).await;
    assert_eq!(o.status()["status"], "Success");
    let before = open_fds(e.d.pid());

    // A silent WebSocket exec is closed and its process killed.
    let url = exec_url(
        &mut e.rt,
        exec_request(&id, &["sleep", "4331"], true, false),
    )
    .await;
    let c = ws_client::connect(&url, V5).await.expect("upgrade");
    c.closed().await;
    wait_released(&e, "sleep 4331", before).await;

    // So is a silent SPDY one.
    let url = exec_url(
        &mut e.rt,
        exec_request(&id, &["sleep", "4332"], true, false),
    )
    .await;
    let mut s = super::client::connect(&url, super::EXEC_PROTOCOLS)
        .await
        .expect("upgrade");
    let error = s.open_typed("error");
    for kind in ["stdin", "stdout", "stderr"] {
        s.open_typed(kind);
    }
    let r = s
        .wait(error, Duration::from_secs(30), |r| r.reset || r.fin)
        .await;
    drop(r);
    wait_released(&e, "sleep 4332", before).await;

    // Traffic keeps a session open past the timeout.
    let script = "for i in 1 2 3 4 5 6; do echo $i; sleep 1; done";
    let (_, o) = ws_exec(&mut e.rt, &id, &["sh", "-c", script], None, V5).await;
    assert_eq!(o.stdout, "1\n2\n3\n4\n5\n6\n");
    assert_eq!(o.status()["status"], "Success");
    e.remove_all_pods().await;
}

/// A CA and a certificate for 127.0.0.1 it signed, made with openssl.
fn make_certs(dir: &std::path::Path) {
    let sh = |cmd: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    sh(&format!(
        "openssl req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=berth-test-ca"
    ));
    sh(&format!(
        "openssl req {ec} -keyout key.pem -out req.csr -subj /CN=127.0.0.1"
    ));
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    sh(
        "openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -out cert.pem -days 2 -extfile ext.cnf",
    );
}

#[tokio::test]
async fn streaming_over_tls() {
    let mut e = Env::new().await;
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let d = certs.path().display();
    restart_with_cri(
        &mut e,
        &format!("  streaming_tls:\n    cert: {d}/cert.pem\n    key: {d}/key.pem\n"),
    )
    .await;
    let (_pod, id) = target(&mut e, "ws-tls", "exec sleep 1000").await;
    let url = exec_url(&mut e.rt, exec_request(&id, &["cat"], true, false)).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = certs.path().join("ca.pem");
    let c = ws_client::connect_tls(&url, V5, &ca)
        .await
        .expect("upgrade");
    c.send(STDIN, b"over tls\n");
    c.close_channel(STDIN);
    assert_eq!(c.read_to_end(STDOUT).await, b"over tls\n");
    assert!(String::from_utf8_lossy(&c.received(ERROR)).contains("Success"));
    e.remove_all_pods().await;
}
