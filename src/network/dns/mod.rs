//! The embedded DNS server of user networks, as Docker's 127.0.0.11:
//! every container on a user network has a UDP and a TCP socket bound to
//! 127.0.0.11:53 inside its own network namespace (its resolv.conf names
//! that address), served from berthd's runtime. Names of the network
//! ([`Table`], rebuilt by the engine whenever a container on it starts,
//! stops, is renamed or removed) are answered from memory; everything else
//! goes to the upstream servers ([`forward`]) from the host's namespace.
//!
//! ```text
//! container ──udp/tcp 127.0.0.11:53 (socket in the pod netns)──> berthd task
//!     ├─ name of the network ──> answer (A / AAAA / PTR, TTL 600)
//!     └─ anything else ──> upstreams (docker.dns.upstreams, --dns, or the
//!                           host's resolv.conf), 4 s each ──> answer or SERVFAIL
//! ```
//! The sockets are bound by a short-lived thread that enters the pod's
//! pinned namespace with setns(2) and ends right after (never a tokio
//! worker). They live as long as berthd: after a restart the engine opens
//! them again for every pod on a user network.
//!
//! Unlike Docker, which binds random ports and DNATs 127.0.0.11:53 to them
//! with iptables inside the namespace, the server holds port 53 itself: no
//! rules to add or clean up, at the price that a container process cannot
//! bind port 53 on all addresses.

mod answer;
mod forward;
mod table;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use answer::{answer, Reply, TTL};
pub use forward::{parse_server, resolv_conf_search_options, resolv_conf_servers};
pub use table::{Endpoint, Lookup, Table};

/// Where containers on user networks find the embedded server.
pub const DNS_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// The host file the default upstream servers come from.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// A TCP client gets this long per message before its connection closes.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The embedded DNS server: the tables of user networks and the sockets
/// open in pods' namespaces.
pub struct Dns {
    inner: Arc<Inner>,
}

struct Inner {
    tables: RwLock<HashMap<String, Arc<Table>>>,
    listeners: Mutex<HashMap<String, Listener>>,
    /// `docker.dns.upstreams`; empty = the host's resolv.conf.
    configured: Vec<SocketAddr>,
}

/// A pod's sockets: the networks they answer for (the pod's user networks,
/// in attachment order: a name on several answers from the first), and
/// their tasks.
struct Listener {
    networks: Networks,
    tasks: Vec<JoinHandle<()>>,
}

/// The networks a pod's server answers for; changed in place when the pod
/// joins or leaves one (the sockets stay).
type Networks = Arc<RwLock<Vec<String>>>;

impl Drop for Listener {
    fn drop(&mut self) {
        // The tasks own the sockets: aborting them closes the sockets.
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Dns {
    /// A server forwarding to `upstreams` (`docker.dns.upstreams`, checked
    /// at config load; bad entries are skipped), or to the host's servers.
    pub fn new(upstreams: &[String]) -> Dns {
        let configured = upstreams
            .iter()
            .filter_map(|u| parse_server(u).ok())
            .collect();
        Dns {
            inner: Arc::new(Inner {
                tables: Default::default(),
                listeners: Default::default(),
                configured,
            }),
        }
    }

    /// Replaces the table of `network` (no endpoints: the table goes).
    pub fn set_table(&self, network: &str, endpoints: &[Endpoint]) {
        let mut tables = self
            .inner
            .tables
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if endpoints.is_empty() {
            tables.remove(network);
        } else {
            tables.insert(
                network.to_string(),
                Arc::new(Table::new(network, endpoints)),
            );
        }
    }

    /// The current table of `network`.
    pub fn table(&self, network: &str) -> Option<Arc<Table>> {
        self.inner
            .tables
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(network)
            .cloned()
    }

    /// The pods with open sockets and their networks.
    pub fn listening(&self) -> Vec<(String, Vec<String>)> {
        self.listeners()
            .iter()
            .map(|(pod, l)| {
                let nets = l
                    .networks
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                (pod.clone(), nets)
            })
            .collect()
    }

    fn listeners(&self) -> std::sync::MutexGuard<'_, HashMap<String, Listener>> {
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens 127.0.0.11:53 (UDP and TCP) in the pod's network namespace
    /// `netns`, answering for `networks` (the pod's user networks, first
    /// first) and forwarding to `upstreams` (the pod's `--dns` servers) or
    /// else the default servers. A pod whose sockets are open already keeps
    /// them and answers for `networks` from now on. Blocking for the bind
    /// (a thread's setns and two binds); must be called inside the tokio
    /// runtime.
    pub fn listen(
        &self,
        pod_id: &str,
        networks: Vec<String>,
        netns: &Path,
        upstreams: Vec<SocketAddr>,
    ) -> std::io::Result<()> {
        if let Some(l) = self
            .listeners()
            .get(pod_id)
            .filter(|l| l.tasks.iter().all(|t| !t.is_finished()))
        {
            *l.networks
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = networks;
            return Ok(());
        }
        // Ended tasks (should not happen) let go of their sockets first.
        self.close(pod_id);
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|e| std::io::Error::other(format!("no async runtime: {e}")))?;
        let (udp, tcp) = bind_in_netns(netns.to_path_buf())?;
        let _entered = rt.enter();
        let udp = tokio::net::UdpSocket::from_std(udp)?;
        let tcp = tokio::net::TcpListener::from_std(tcp)?;
        let shared: Networks = Arc::new(RwLock::new(networks));
        let ctx = Arc::new(Ctx {
            inner: self.inner.clone(),
            networks: shared.clone(),
            upstreams,
        });
        let tasks = vec![
            rt.spawn(serve_udp(udp, ctx.clone())),
            rt.spawn(serve_tcp(tcp, ctx)),
        ];
        debug!(pod = %pod_id, "embedded DNS listening in the pod's namespace");
        self.listeners().insert(
            pod_id.to_string(),
            Listener {
                networks: shared,
                tasks,
            },
        );
        Ok(())
    }

    /// Closes the pod's sockets, if open.
    pub fn close(&self, pod_id: &str) {
        if self.listeners().remove(pod_id).is_some() {
            debug!(pod = %pod_id, "embedded DNS closed in the pod's namespace");
        }
    }
}

/// What one pod's sockets answer with.
struct Ctx {
    inner: Arc<Inner>,
    networks: Networks,
    /// The pod's own servers (`--dns`); empty = the defaults.
    upstreams: Vec<SocketAddr>,
}

impl Ctx {
    /// The tables of the pod's networks, in its order.
    fn tables(&self) -> Vec<Arc<Table>> {
        let nets = self
            .networks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let tables = self
            .inner
            .tables
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        nets.iter().filter_map(|n| tables.get(n).cloned()).collect()
    }

    /// The servers to forward to: the pod's, the configured ones, or the
    /// host's resolv.conf (read each time: the host's may change).
    async fn servers(&self) -> Vec<SocketAddr> {
        if !self.upstreams.is_empty() {
            return self.upstreams.clone();
        }
        if !self.inner.configured.is_empty() {
            return self.inner.configured.clone();
        }
        let text = tokio::fs::read_to_string(HOST_RESOLV_CONF)
            .await
            .unwrap_or_default();
        resolv_conf_servers(&text)
    }

    /// The answer to one query, from the table or upstream (SERVFAIL when
    /// no server answered); None = no answer at all.
    async fn reply(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let tables = self.tables();
        // The first network that knows the name answers.
        let mut reply = answer(query, None);
        for t in &tables {
            reply = answer(query, Some(t));
            if !matches!(reply, Reply::Forward) {
                break;
            }
        }
        match reply {
            Reply::Answer(b) => Some(b),
            Reply::Drop => None,
            Reply::Forward => {
                let servers = self.servers().await;
                match forward::forward(query, &servers, tcp).await {
                    Some(b) => Some(b),
                    None => answer::servfail(query),
                }
            }
        }
    }
}

async fn serve_udp(sock: tokio::net::UdpSocket, ctx: Arc<Ctx>) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors of earlier sends surface here: not fatal.
                debug!(error = %e, "embedded DNS receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let query = buf[..n.min(buf.len())].to_vec();
        let (sock, ctx) = (sock.clone(), ctx.clone());
        tokio::spawn(async move {
            if let Some(b) = ctx.reply(&query, false).await {
                let _ = sock.send_to(&b, peer).await;
            }
        });
    }
}

async fn serve_tcp(listener: tokio::net::TcpListener, ctx: Arc<Ctx>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "embedded DNS accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            loop {
                let read = async {
                    let n = stream.read_u16().await?;
                    let mut q = vec![0u8; usize::from(n)];
                    stream.read_exact(&mut q).await?;
                    Ok::<_, std::io::Error>(q)
                };
                let Ok(Ok(q)) = tokio::time::timeout(TCP_IDLE, read).await else {
                    return;
                };
                let Some(b) = ctx.reply(&q, true).await else {
                    return;
                };
                let Ok(len) = u16::try_from(b.len()) else {
                    return;
                };
                if stream.write_all(&len.to_be_bytes()).await.is_err()
                    || stream.write_all(&b).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

/// Binds 127.0.0.11:53 over UDP and TCP inside the network namespace at
/// `netns` (a pinned namespace file), from a thread made for it: setns(2)
/// changes only the calling thread's namespace, and the thread ends once
/// the sockets exist — a socket stays in the namespace it was made in.
fn bind_in_netns(netns: PathBuf) -> std::io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let ns = std::fs::File::open(&netns)?;
    let t = std::thread::Builder::new()
        .name("dns-bind".into())
        .spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| std::io::Error::other(format!("setns {}: {e}", netns.display())))?;
            let addr = SocketAddr::from((DNS_ADDR, 53));
            let udp = std::net::UdpSocket::bind(addr)?;
            let tcp = std::net::TcpListener::bind(addr)?;
            udp.set_nonblocking(true)?;
            tcp.set_nonblocking(true)?;
            Ok((udp, tcp))
        })?;
    t.join()
        .map_err(|_| std::io::Error::other("the DNS bind thread panicked"))?
}

/// The DNS settings a container on a user network gets in its
/// resolv.conf: the embedded server; its own `--dns-search`/`--dns-option`
/// or the host's; `ndots:0` unless an ndots is given (as Docker writes it).
pub fn embedded_resolv_conf(
    given: Option<&k8s_cri::v1::DnsConfig>,
    host_resolv: &str,
) -> k8s_cri::v1::DnsConfig {
    let (host_search, host_options) = resolv_conf_search_options(host_resolv);
    let searches = match given.filter(|d| !d.searches.is_empty()) {
        Some(d) => d.searches.clone(),
        None => host_search,
    };
    let mut options = match given.filter(|d| !d.options.is_empty()) {
        Some(d) => d.options.clone(),
        None => host_options,
    };
    if !options.iter().any(|o| o.starts_with("ndots:")) {
        options.push("ndots:0".into());
    }
    k8s_cri::v1::DnsConfig {
        servers: vec![DNS_ADDR.to_string()],
        searches,
        options,
    }
}

/// Logs once what a daemon start found to reopen.
pub fn log_restored(pods: usize, networks: usize) {
    if pods > 0 {
        info!(
            pods,
            networks, "embedded DNS reopened for pods on user networks"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_of_a_user_network_container() {
        let host = "nameserver 192.0.2.1\nsearch corp.example\noptions edns0\n";
        let d = embedded_resolv_conf(None, host);
        assert_eq!(d.servers, ["127.0.0.11"]);
        assert_eq!(d.searches, ["corp.example"]);
        assert_eq!(d.options, ["edns0", "ndots:0"]);
        let given = k8s_cri::v1::DnsConfig {
            servers: vec!["192.0.2.9".into()],
            searches: vec!["my.example".into()],
            options: vec!["ndots:3".into()],
        };
        let d = embedded_resolv_conf(Some(&given), host);
        assert_eq!(d.servers, ["127.0.0.11"]);
        assert_eq!(d.searches, ["my.example"]);
        assert_eq!(d.options, ["ndots:3"]);
    }

    #[test]
    fn tables_are_replaced_and_dropped() {
        let dns = Dns::new(&["127.0.0.1:5353".into(), "bad".into()]);
        assert_eq!(dns.inner.configured, ["127.0.0.1:5353".parse().unwrap()]);
        let ep = Endpoint {
            container_id: "c".into(),
            ips: vec!["10.2.0.2".parse().unwrap()],
            names: vec!["web".into()],
        };
        dns.set_table("n", &[ep]);
        assert_eq!(
            dns.table("n").unwrap().lookup_v4("web"),
            Lookup::Found(vec![Ipv4Addr::new(10, 2, 0, 2)])
        );
        dns.set_table("n", &[]);
        assert!(dns.table("n").is_none());
    }
}
