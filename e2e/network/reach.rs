//! Two pods on one bridge network: IPs from host-local as PodSandboxStatus,
//! the containers and /etc/hosts see them; HTTP and ping between the pods;
//! a pod reaches a server on the host bound to the bridge's gateway IP.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::testnet::{Plugins, TestNet};
use super::{cni_count, cni_ops, env, pod_ip, running};
use crate::support::pods::{self, RuntimeClient};

/// `wget -qO- url` in container `id` until it succeeds; returns the body.
async fn fetch(rt: &mut RuntimeClient, id: &str, url: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        // Not `wget -T`: Debian's busybox 1.35 wget segfaults with it.
        let r = pods::exec(rt, id, &["timeout", "5", "wget", "-qO-", url], 0)
            .await
            .unwrap_or_else(|e| panic!("ExecSync wget {url}: {e:?}"));
        if r.exit_code == 0 {
            return String::from_utf8_lossy(&r.stdout).into_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{url} did not answer inside container {id}: exit {} stderr {:?}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Serves `body` to every HTTP request on `listener` (until the test's
/// runtime ends).
fn serve(listener: tokio::net::TcpListener, body: String) {
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
}

#[tokio::test]
async fn pods_on_one_bridge_reach_each_other_and_the_host() {
    let net = TestNet::new(Plugins::default()).await;
    net.install();
    let mut e = env(&net).await;

    let a_cfg = e.pod_config("web-a");
    let a = e.pod(&a_cfg).await;
    let b_cfg = e.pod_config("client-b");
    let b = e.pod(&b_cfg).await;
    let (ip_a, ip_b) = (pod_ip(&mut e.rt, &a).await, pod_ip(&mut e.rt, &b).await);
    for ip in [&ip_a, &ip_b] {
        assert!(net.contains(ip), "{ip} is in {}", net.subnet());
        assert_ne!(
            ip.as_str(),
            net.gateway().to_string(),
            "the gateway is the bridge's"
        );
    }
    assert_ne!(ip_a, ip_b);
    assert_eq!(
        net.reserved_ips(),
        BTreeSet::from([ip_a.clone(), ip_b.clone()]),
        "host-local holds exactly the two pods' IPs"
    );
    let ops = cni_ops(&e.d);
    assert_eq!(cni_count(&ops, "add", "success"), 2, "{ops:?}");

    let web = running(
        &mut e,
        &a,
        &a_cfg,
        "mkdir -p /www && echo hello-from-a > /www/file && exec httpd -f -p 8080 -h /www",
    )
    .await;
    let client = running(&mut e, &b, &b_cfg, "exec sleep 1000").await;

    for (id, ip, cfg) in [(&web, &ip_a, &a_cfg), (&client, &ip_b, &b_cfg)] {
        let addr = pods::sh(&mut e.rt, id, "ip -o -4 addr show dev eth0").await;
        assert!(
            addr.contains(&format!("inet {ip}/24 ")),
            "eth0 in the container has the status IP {ip}: {addr}"
        );
        let route = pods::sh(&mut e.rt, id, "ip -4 route show default").await;
        assert!(
            route.contains(&format!("via {} ", net.gateway())),
            "default route via the bridge: {route}"
        );
        let hosts = pods::sh(&mut e.rt, id, "cat /etc/hosts").await;
        let entry = format!("{ip}\t{}", cfg.hostname);
        assert!(
            hosts.lines().any(|l| l.trim() == entry),
            "/etc/hosts maps the hostname to the pod IP ({entry:?}):\n{hosts}"
        );
        let hostname = pods::sh(&mut e.rt, id, "hostname").await;
        assert_eq!(hostname.trim(), cfg.hostname);
    }

    let body = fetch(&mut e.rt, &client, &format!("http://{ip_a}:8080/file")).await;
    assert_eq!(body, "hello-from-a\n", "pod B fetched pod A's file");
    // Ping both ways (busybox ping needs CAP_NET_RAW, a default capability).
    pods::sh(&mut e.rt, &client, &format!("ping -c 1 -W 5 {ip_a}")).await;
    pods::sh(&mut e.rt, &web, &format!("ping -c 1 -W 5 {ip_b}")).await;

    // The host, on the gateway address only (the bridge exists by now).
    let listener = tokio::net::TcpListener::bind((net.gateway(), 0))
        .await
        .expect("bind the gateway address");
    let port = listener.local_addr().expect("local addr").port();
    let token = pods::unique("hello-from-host");
    serve(listener, token.clone());
    let url = format!("http://{}:{port}/", net.gateway());
    assert_eq!(fetch(&mut e.rt, &client, &url).await, token);
    assert_eq!(fetch(&mut e.rt, &web, &url).await, token);

    e.remove_all_pods().await;
    assert!(
        net.reserved_ips().is_empty(),
        "the IPs were released: {:?}",
        net.ipam_files()
    );
    let ops = cni_ops(&e.d);
    assert_eq!(cni_count(&ops, "del", "failure"), 0, "{ops:?}");
    assert_eq!(cni_count(&ops, "add", "failure"), 0, "{ops:?}");
    drop(e);
    net.finish();
}
