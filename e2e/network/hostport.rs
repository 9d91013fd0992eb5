//! hostPort through the portmap plugin: a pod's port 80 answers on
//! 127.0.0.1:<host port> from the host, only on the host IP asked for, and
//! stops answering once the pod is gone.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_cri::v1::{PortMapping, Protocol};

use super::testnet::{Plugins, TestNet};
use super::{env, http_get, pod_ip, running};
use crate::support::{free_port, wait_until};

async fn get(addr: SocketAddr) -> Result<String, String> {
    tokio::task::spawn_blocking(move || http_get(addr, "/index.html"))
        .await
        .expect("http task")
}

#[tokio::test]
async fn host_port_on_loopback_reaches_the_pod() {
    let net = TestNet::new(Plugins {
        portmap: true,
        ..Default::default()
    })
    .await;
    net.install();
    let mut e = env(&net).await;

    let port = free_port();
    let mut cfg = e.pod_config("hostport");
    cfg.port_mappings.push(PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 80,
        host_port: i32::from(port),
        host_ip: "127.0.0.1".into(),
    });
    let pod = e.pod(&cfg).await;
    let ip = pod_ip(&mut e.rt, &pod).await;
    assert!(net.contains(&ip), "{ip} in {}", net.subnet());
    let token = crate::support::pods::unique("served-by-the-pod");
    running(
        &mut e,
        &pod,
        &cfg,
        &format!("mkdir -p /www && echo {token} > /www/index.html && exec httpd -f -p 80 -h /www"),
    )
    .await;

    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let body = wait_until(
        &format!("the pod to answer on {addr}"),
        Duration::from_secs(30),
        || async move { get(addr).await.ok() },
    )
    .await;
    assert_eq!(body.trim(), token);
    // The mapping is for 127.0.0.1 only: the bridge's own address does not
    // forward the port.
    let gw: SocketAddr = (net.gateway(), port).into();
    assert!(
        get(gw).await.is_err(),
        "host_ip 127.0.0.1 limits the mapping, yet {gw} answered"
    );
    // No host sysctl is needed for DNAT from 127.0.0.1: portmap sets
    // route_localnet on the bridge only (which goes with the bridge); the
    // guard checks that net.ipv4.conf.all.route_localnet is untouched.

    e.remove_all_pods().await;
    let after = get(addr).await;
    assert!(
        after.is_err(),
        "the mapping went with the pod, yet {addr} answered {after:?}"
    );
    assert!(net.reserved_ips().is_empty(), "{:?}", net.ipam_files());
    drop(e);
    net.finish();
}
