//! Forwarding a query the network's table does not answer to the upstream
//! servers, from berthd's own (the host's) network namespace — so a
//! loopback resolver of the host (127.0.0.53, a test's 127.0.0.x) is
//! reachable, as Docker's resolver reaches it since 20.10. Each server
//! in turn, each with a timeout; the first answer wins.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// How long one upstream server has to answer (Docker's is 4 s).
pub const TIMEOUT: Duration = Duration::from_secs(4);

/// The largest UDP answer taken from an upstream server.
const MAX_UDP: usize = 4096;

/// Sends `query` to each server in turn over UDP (or TCP when `tcp`) and
/// returns the first answer whose id matches.
pub async fn forward(query: &[u8], servers: &[SocketAddr], tcp: bool) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    for s in servers {
        let got = if tcp {
            timeout(TIMEOUT, via_tcp(query, *s)).await
        } else {
            timeout(TIMEOUT, via_udp(query, *s)).await
        };
        match got {
            Ok(Ok(answer)) if answer.get(..2) == Some(id) => return Some(answer),
            Ok(Ok(_)) => tracing::debug!(server = %s, "upstream DNS answered another id"),
            Ok(Err(e)) => tracing::debug!(server = %s, error = %e, "upstream DNS failed"),
            Err(_) => tracing::debug!(server = %s, "upstream DNS timed out"),
        }
    }
    None
}

async fn via_udp(query: &[u8], server: SocketAddr) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
        SocketAddr::V6(_) => "[::]:0".parse().expect("literal"),
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(server).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; MAX_UDP];
    let n = sock.recv(&mut buf).await?;
    buf.truncate(n);
    Ok(buf)
}

async fn via_tcp(query: &[u8], server: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(server).await?;
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::other("query longer than 64 KiB"))?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(query).await?;
    let n = s.read_u16().await?;
    let mut buf = vec![0u8; usize::from(n)];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Parses an upstream server: `ip` (port 53) or `ip:port` / `[v6]:port`.
pub fn parse_server(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| format!("{s:?} is not an IP address or ip:port"))
}

/// The `nameserver` lines of a resolv.conf, as upstream servers.
pub fn resolv_conf_servers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        // A zone (`fe80::1%eth0`) cannot be carried here: left out.
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The `search` domains and `options` of a resolv.conf (the last line of
/// each kind counts, as for the C library).
pub fn resolv_conf_search_options(text: &str) -> (Vec<String>, Vec<String>) {
    let (mut search, mut options) = (Vec::new(), Vec::new());
    for l in text.lines() {
        let mut w = l.split_whitespace();
        match w.next() {
            Some("search") | Some("domain") => search = w.map(String::from).collect(),
            Some("options") => options = w.map(String::from).collect(),
            _ => {}
        }
    }
    (search, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse() {
        assert_eq!(
            parse_server("10.0.0.1").unwrap(),
            "10.0.0.1:53".parse().unwrap()
        );
        assert_eq!(
            parse_server("127.0.0.77:5353").unwrap(),
            "127.0.0.77:5353".parse().unwrap()
        );
        assert_eq!(parse_server("::1").unwrap(), "[::1]:53".parse().unwrap());
        assert!(parse_server("dns.example").is_err());
    }

    #[test]
    fn resolv_conf_is_read() {
        let text = "# hi\nnameserver 192.0.2.1\nnameserver fe80::1%eth0\nnameserver ::1\nsearch a.example b.example\noptions edns0 ndots:2\n";
        assert_eq!(
            resolv_conf_servers(text),
            vec![
                "192.0.2.1:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        let (s, o) = resolv_conf_search_options(text);
        assert_eq!(s, ["a.example", "b.example"]);
        assert_eq!(o, ["edns0", "ndots:2"]);
    }

    #[tokio::test]
    async fn nothing_to_ask_gives_nothing() {
        assert_eq!(forward(b"\x00\x01rest", &[], false).await, None);
        assert_eq!(
            forward(b"", &["127.0.0.1:9".parse().unwrap()], false).await,
            None
        );
    }
}
