//! CRI streaming end to end: Exec and PortForward URLs from a real berthd,
//! served over HTTP/1.1 upgraded to SPDY/3.1, driven by a client that speaks
//! the protocol as crictl and the kubelet do. `websocket` does the same over
//! WebSocket.

mod client;
mod crictl;
mod websocket;
mod ws_client;

use std::time::Duration;

use k8s_cri::v1::{ExecRequest, PortForwardRequest};
use serde_json::Value;

use crate::runtime::Env;
use crate::support::pods::{self, RuntimeClient};
use crate::support::wait_until;

const EXEC_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// A pod with one long-running busybox container; returns (pod, container).
async fn target(e: &mut Env, name: &str, script: &str) -> (String, String) {
    let pod_cfg = e.pod_config(name);
    let pod = e.pod(&pod_cfg).await;
    let (cfg, _tag) = e.container("target", script);
    let id = e.run(&pod, &cfg, &pod_cfg).await;
    pods::wait_state(
        &mut e.rt,
        &id,
        k8s_cri::v1::ContainerState::ContainerRunning,
    )
    .await;
    (pod, id)
}

fn exec_request(id: &str, cmd: &[&str], stdin: bool, tty: bool) -> ExecRequest {
    ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    }
}

async fn exec_url(rt: &mut RuntimeClient, req: ExecRequest) -> String {
    rt.exec(req).await.expect("Exec").into_inner().url
}

/// What one exec returned: stdout, stderr, and the status on the error stream.
struct Outcome {
    stdout: String,
    stderr: String,
    status: Value,
}

/// Runs a non-tty exec to its end, sending `stdin` (then FIN) if given.
async fn run_exec(rt: &mut RuntimeClient, id: &str, cmd: &[&str], stdin: Option<&[u8]>) -> Outcome {
    let url = exec_url(rt, exec_request(id, cmd, stdin.is_some(), false)).await;
    let mut c = client::connect(&url, EXEC_PROTOCOLS)
        .await
        .expect("upgrade");
    assert_eq!(c.protocol, "v4.channel.k8s.io");
    let error = c.open_typed("error");
    let input = stdin.map(|_| c.open_typed("stdin"));
    let out = c.open_typed("stdout");
    let err = c.open_typed("stderr");
    if let (Some(s), Some(data)) = (input, stdin) {
        c.send(s, data, true);
    }
    let status = c.read_to_end(error).await;
    let stdout = c.read_to_end(out).await;
    let stderr = c.read_to_end(err).await;
    Outcome {
        stdout: String::from_utf8_lossy(&stdout.data).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.data).into_owned(),
        status: serde_json::from_slice(&status.data)
            .unwrap_or_else(|e| panic!("status {:?}: {e}", String::from_utf8_lossy(&status.data))),
    }
}

#[tokio::test]
async fn exec_streams_output_stdin_exit_codes_and_tty() {
    let mut e = Env::new().await;
    let (_pod, id) = target(&mut e, "stream-exec", "exec sleep 1000").await;

    let o = run_exec(&mut e.rt, &id, &["echo", "hi"], None).await;
    assert_eq!(o.stdout, "hi\n");
    assert_eq!(
        o.status,
        serde_json::json!({"metadata": {}, "status": "Success"})
    );

    let o = run_exec(&mut e.rt, &id, &["sh", "-c", "echo oops >&2; exit 3"], None).await;
    assert_eq!(o.stderr, "oops\n");
    assert_eq!(o.status["status"], "Failure", "{}", o.status);
    assert_eq!(o.status["reason"], "NonZeroExitCode");
    assert_eq!(o.status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(o.status["details"]["causes"][0]["message"], "3");

    let o = run_exec(&mut e.rt, &id, &["cat"], Some(b"through stdin\n")).await;
    assert_eq!(o.stdout, "through stdin\n");
    assert_eq!(o.status["status"], "Success");

    // Interactive stdin: the server keeps its half of the stdin stream open
    // (Go clients end the session when it closes) while input trickles in.
    let url = exec_url(&mut e.rt, exec_request(&id, &["cat"], true, false)).await;
    let mut c = client::connect(&url, EXEC_PROTOCOLS)
        .await
        .expect("upgrade");
    let error = c.open_typed("error");
    let stdin = c.open_typed("stdin");
    let out = c.open_typed("stdout");
    let _err = c.open_typed("stderr");
    c.send(stdin, b"one\n", false);
    let got = c
        .wait(out, Duration::from_secs(20), |r| r.data.ends_with(b"one\n"))
        .await;
    assert_eq!(got.data, b"one\n");
    let s = c
        .wait(stdin, Duration::from_millis(300), |r| r.fin || r.reset)
        .await;
    assert!(!s.fin && !s.reset, "the server closed stdin early: {s:?}");
    c.send(stdin, b"two\n", true);
    let status = c.read_to_end(error).await;
    assert_eq!(c.read_to_end(out).await.data, b"one\ntwo\n");
    assert!(String::from_utf8_lossy(&status.data).contains("Success"));

    // A terminal: it takes the size the client sends first (as soon as the
    // runtime hands it over, hence the sleep) and follows later resizes.
    let script = "sleep 1; stty size; read x; sleep 0.5; stty size";
    let req = exec_request(&id, &["sh", "-c", script], true, true);
    let url = exec_url(&mut e.rt, req).await;
    let mut c = client::connect(&url, EXEC_PROTOCOLS)
        .await
        .expect("upgrade");
    let error = c.open_typed("error");
    let stdin = c.open_typed("stdin");
    let out = c.open_typed("stdout");
    let resize = c.open_typed("resize");
    c.send(resize, br#"{"Width":100,"Height":33}"#, false);
    let first = c
        .wait(out, Duration::from_secs(20), |r| {
            String::from_utf8_lossy(&r.data).contains("33 100")
        })
        .await;
    assert!(
        String::from_utf8_lossy(&first.data).contains("33 100"),
        "{first:?}"
    );
    c.send(resize, br#"{"Width":90,"Height":20}"#, false);
    c.send(stdin, b"go\r", false);
    let status = c.read_to_end(error).await;
    let stdout = c.read_to_end(out).await;
    let text = String::from_utf8_lossy(&stdout.data);
    assert!(text.trim_end().ends_with("20 90"), "{text:?}");
    assert!(
        String::from_utf8_lossy(&status.data).contains("Success"),
        "{status:?}"
    );

    // A URL works once; a bad one and a plain request are refused.
    let url = exec_url(&mut e.rt, exec_request(&id, &["true"], false, false)).await;
    let c = client::connect(&url, EXEC_PROTOCOLS)
        .await
        .expect("upgrade");
    drop(c);
    let (code, _) = client::connect(&url, EXEC_PROTOCOLS)
        .await
        .err()
        .expect("reused token");
    assert_eq!(code, 404);
    let url = exec_url(&mut e.rt, exec_request(&id, &["true"], false, false)).await;
    let plain = reqwest::get(&url).await.expect("GET");
    assert_eq!(plain.status().as_u16(), 400);

    // The CRI call validates before handing out a URL.
    let err =
        e.rt.exec(exec_request("nope", &["true"], false, false))
            .await
            .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let mut none = exec_request(&id, &["true"], false, false);
    none.stdout = false;
    none.stderr = false;
    let err = e.rt.exec(none).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let err =
        e.rt.exec(exec_request(&id, &[], false, false))
            .await
            .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    e.remove_all_pods().await;
}

#[tokio::test]
async fn twenty_concurrent_execs() {
    let mut e = Env::new().await;
    let (_pod, id) = target(&mut e, "stream-many", "exec sleep 1000").await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (mut rt, id) = (e.rt.clone(), id.clone());
        set.spawn(async move {
            let word = format!("exec-{i}");
            let o = run_exec(&mut rt, &id, &["echo", &word], None).await;
            assert_eq!(o.stdout, format!("{word}\n"));
            assert_eq!(o.status["status"], "Success");
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("exec task");
    }
    e.remove_all_pods().await;
}

/// Host pids whose command line contains `needle`.
fn pids_with(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) && pid != std::process::id() as i32 {
            out.push(pid);
        }
    }
    out
}

#[tokio::test]
async fn client_disconnect_ends_the_exec() {
    let mut e = Env::new().await;
    let (_pod, id) = target(&mut e, "stream-gone", "exec sleep 1000").await;
    let url = exec_url(
        &mut e.rt,
        exec_request(&id, &["sleep", "4321"], true, false),
    )
    .await;
    let mut c = client::connect(&url, EXEC_PROTOCOLS)
        .await
        .expect("upgrade");
    for kind in ["error", "stdin", "stdout", "stderr"] {
        c.open_typed(kind);
    }
    wait_until(
        "the exec'd sleep to run",
        Duration::from_secs(20),
        || async {
            (!pids_with("sleep 4321").is_empty() && !pids_with("exec --process").is_empty())
                .then_some(())
        },
    )
    .await;
    let crun: Vec<i32> = pids_with("exec --process")
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&id))
        })
        .collect();
    assert!(!crun.is_empty());
    c.disconnect();
    wait_until(
        "the exec and its runtime to be gone",
        Duration::from_secs(20),
        || async {
            let left = pids_with("sleep 4321").is_empty()
                && crun
                    .iter()
                    .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists());
            left.then_some(())
        },
    )
    .await;
    e.remove_all_pods().await;
}

#[tokio::test]
async fn port_forward_reaches_a_server_inside_the_pod() {
    let mut e = Env::new().await;
    let script = "mkdir -p /www && echo hello-from-the-pod > /www/index.html && exec httpd -f -p 8080 -h /www";
    let (pod, id) = target(&mut e, "stream-pf", script).await;
    wait_until("httpd to listen", Duration::from_secs(20), || {
        let (mut rt, id) = (e.rt.clone(), id.clone());
        async move {
            let r = pods::exec(&mut rt, &id, &["wget", "-qO-", "http://127.0.0.1:8080/"], 5).await;
            r.ok().filter(|r| r.exit_code == 0).map(|_| ())
        }
    })
    .await;
    let req = PortForwardRequest {
        pod_sandbox_id: pod.clone(),
        port: vec![8080],
    };
    let url =
        e.rt.port_forward(req)
            .await
            .expect("PortForward")
            .into_inner()
            .url;
    assert!(url.contains("/portforward/"), "{url}");
    let mut c = client::connect(&url, &["portforward.k8s.io"])
        .await
        .expect("upgrade");
    assert_eq!(c.protocol, "portforward.k8s.io");
    for (n, port) in [("1", "8080"), ("2", "8080")] {
        let error = c.open(&[("streamType", "error"), ("port", port), ("requestID", n)]);
        let data = c.open(&[("streamType", "data"), ("port", port), ("requestID", n)]);
        c.send(data, b"GET /index.html HTTP/1.0\r\n\r\n", false);
        let got = c.read_to_end(data).await;
        let text = String::from_utf8_lossy(&got.data);
        assert!(text.contains("hello-from-the-pod"), "{text}");
        c.send(error, b"", true);
    }
    // Nothing listens on 8081 in the pod (the host may have one): an error.
    let error = c.open(&[
        ("streamType", "error"),
        ("port", "8081"),
        ("requestID", "3"),
    ]);
    let _data = c.open(&[("streamType", "data"), ("port", "8081"), ("requestID", "3")]);
    let msg = c.read_to_end(error).await;
    assert!(
        String::from_utf8_lossy(&msg.data).contains("failed to connect"),
        "{msg:?}"
    );
    drop(c);
    let err =
        e.rt.port_forward(PortForwardRequest {
            pod_sandbox_id: "nope".into(),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    e.remove_all_pods().await;
}

#[tokio::test]
async fn attach_joins_stdin_and_output_of_the_container() {
    let mut e = Env::new().await;
    let pod_cfg = e.pod_config("stream-attach");
    let pod = e.pod(&pod_cfg).await;
    let script = "while read l; do echo \"got $l\"; echo \"err $l\" >&2; done; echo bye";
    let (mut cfg, _tag) = e.container("target", script);
    cfg.stdin = true;
    cfg.stdin_once = true;
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
    // An output-only watcher, then a client that types.
    let url =
        e.rt.attach(attach(false))
            .await
            .expect("Attach")
            .into_inner()
            .url;
    assert!(url.contains("/attach/"), "{url}");
    let mut watcher = client::connect(&url, EXEC_PROTOCOLS)
        .await
        .expect("upgrade");
    let w_error = watcher.open_typed("error");
    let w_out = watcher.open_typed("stdout");
    let _w_err = watcher.open_typed("stderr");
    let url =
        e.rt.attach(attach(true))
            .await
            .expect("Attach")
            .into_inner()
            .url;
    let mut c = client::connect(&url, EXEC_PROTOCOLS)
        .await
        .expect("upgrade");
    let error = c.open_typed("error");
    let stdin = c.open_typed("stdin");
    let out = c.open_typed("stdout");
    let err = c.open_typed("stderr");
    // Both attaches are registered with the monitor once a line round-trips.
    let saw = |needle: &'static str| {
        move |r: &client::Received| String::from_utf8_lossy(&r.data).contains(needle)
    };
    let mut n = 0;
    loop {
        n += 1;
        c.send(stdin, format!("line{n}\n").as_bytes(), false);
        let got = c.wait(out, Duration::from_secs(2), saw("got line")).await;
        let w = watcher
            .wait(w_out, Duration::from_secs(1), saw("got line"))
            .await;
        if String::from_utf8_lossy(&got.data).contains("got line")
            && String::from_utf8_lossy(&w.data).contains("got line")
        {
            break;
        }
        assert!(n < 10, "attach output never arrived: {got:?} {w:?}");
    }
    let e_line = c.wait(err, Duration::from_secs(10), saw("err line")).await;
    assert!(String::from_utf8_lossy(&e_line.data).contains("err line"));
    // stdin_once: closing our stdin ends the container's input, so it exits.
    c.send(stdin, b"last\n", true);
    let status = c.read_to_end(error).await;
    let output = c.read_to_end(out).await;
    let text = String::from_utf8_lossy(&output.data);
    assert!(text.contains("got last") && text.contains("bye"), "{text}");
    assert!(
        String::from_utf8_lossy(&status.data).contains("Success"),
        "{status:?}"
    );
    let w = watcher.read_to_end(w_error).await;
    assert!(
        String::from_utf8_lossy(&w.data).contains("Success"),
        "{w:?}"
    );
    pods::wait_exited(&mut e.rt, &id).await;
    let err = e.rt.attach(attach(false)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    e.remove_all_pods().await;
}

#[tokio::test]
async fn closing_stdin_detaches_an_attach() {
    let mut e = Env::new().await;
    let pod_cfg = e.pod_config("stream-detach");
    let pod = e.pod(&pod_cfg).await;
    let (mut cfg, _tag) = e.container("target", "exec cat");
    cfg.stdin = true;
    let id = e.run(&pod, &cfg, &pod_cfg).await;
    pods::wait_state(
        &mut e.rt,
        &id,
        k8s_cri::v1::ContainerState::ContainerRunning,
    )
    .await;
    let req = k8s_cri::v1::AttachRequest {
        container_id: id.clone(),
        stdin: true,
        tty: false,
        stdout: true,
        stderr: true,
    };
    let url = e.rt.attach(req).await.expect("Attach").into_inner().url;
    let mut c = client::connect(&url, EXEC_PROTOCOLS)
        .await
        .expect("upgrade");
    let error = c.open_typed("error");
    let stdin = c.open_typed("stdin");
    let out = c.open_typed("stdout");
    let _err = c.open_typed("stderr");
    c.send(stdin, b"echoed\n", false);
    let got = c
        .wait(out, Duration::from_secs(20), |r| {
            r.data.ends_with(b"echoed\n")
        })
        .await;
    assert_eq!(got.data, b"echoed\n");
    // Without stdin_once, closing stdin ends the attach, not the container.
    c.send(stdin, b"", true);
    let status = c.read_to_end(error).await;
    assert!(
        String::from_utf8_lossy(&status.data).contains("Success"),
        "{status:?}"
    );
    let st = pods::status_ok(&mut e.rt, &id).await;
    assert_eq!(
        st.state,
        k8s_cri::v1::ContainerState::ContainerRunning as i32
    );
    e.remove_all_pods().await;
}

#[tokio::test]
async fn tty_attach_applies_resizes() {
    let mut e = Env::new().await;
    let pod_cfg = e.pod_config("stream-tty-attach");
    let pod = e.pod(&pod_cfg).await;
    let (mut cfg, _tag) = e.container("target", "while true; do stty size; sleep 0.2; done");
    cfg.tty = true;
    cfg.stdin = true;
    let id = e.run(&pod, &cfg, &pod_cfg).await;
    pods::wait_state(
        &mut e.rt,
        &id,
        k8s_cri::v1::ContainerState::ContainerRunning,
    )
    .await;
    let req = k8s_cri::v1::AttachRequest {
        container_id: id.clone(),
        stdin: true,
        tty: true,
        stdout: true,
        stderr: false,
    };
    let url = e.rt.attach(req).await.expect("Attach").into_inner().url;
    let mut c = client::connect(&url, EXEC_PROTOCOLS)
        .await
        .expect("upgrade");
    assert_eq!(c.protocol, "v4.channel.k8s.io");
    let error = c.open_typed("error");
    let stdin = c.open_typed("stdin");
    let out = c.open_typed("stdout");
    let resize = c.open_typed("resize");
    // The loop's output reaches us through the container's terminal.
    let first = c
        .wait(out, Duration::from_secs(20), |r| r.data.contains(&b'\n'))
        .await;
    assert!(first.data.contains(&b'\n'), "no output: {first:?}");
    c.send(resize, br#"{"Width":90,"Height":30}"#, false);
    let got = c
        .wait(out, Duration::from_secs(20), |r| {
            String::from_utf8_lossy(&r.data).contains("30 90")
        })
        .await;
    assert!(
        String::from_utf8_lossy(&got.data).contains("30 90"),
        "{:?}",
        String::from_utf8_lossy(&got.data)
    );
    // Closing stdin detaches; the container keeps running.
    c.send(stdin, b"", true);
    let status = c.read_to_end(error).await;
    assert!(
        String::from_utf8_lossy(&status.data).contains("Success"),
        "{status:?}"
    );
    let st = pods::status_ok(&mut e.rt, &id).await;
    assert_eq!(
        st.state,
        k8s_cri::v1::ContainerState::ContainerRunning as i32
    );
    e.remove_all_pods().await;
}
