//! Interface counters of pods' network namespaces (`/proc/net/dev` as seen
//! from inside each), for pod stats and CRI metrics.
//!
//! The namespaces are entered by one short-lived std thread per call:
//! `setns` changes only the calling thread, which ends afterwards, so no
//! daemon thread ever leaves the host's network namespace.

use std::path::PathBuf;

/// One interface's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev`; `lo` is left out (the kubelet never reports it).
pub fn parse_net_dev(text: &str) -> Vec<InterfaceCounters> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            if v.len() < 12 {
                return None;
            }
            Some(InterfaceCounters {
                name: name.to_string(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .collect()
}

/// Reads the interfaces of each network namespace file (a pinned nsfs
/// path), in order; `None` for one that cannot be entered or read.
/// Blocking: call it from a blocking task.
pub fn read_netns_counters(netns: Vec<PathBuf>) -> Vec<Option<Vec<InterfaceCounters>>> {
    if netns.is_empty() {
        return Vec::new();
    }
    let n = netns.len();
    std::thread::Builder::new()
        .name("berth-netstat".into())
        .spawn(move || {
            netns
                .iter()
                .map(|path| {
                    let ns = std::fs::File::open(path).ok()?;
                    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
                    std::fs::read_to_string("/proc/thread-self/net/dev")
                        .ok()
                        .map(|t| parse_net_dev(&t))
                })
                .collect()
        })
        .ok()
        .and_then(|t| t.join().ok())
        .unwrap_or_else(|| vec![None; n])
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0:   90422     731    1    2    0     0          0         0     4420      52    3    4    0     0       0          0
";

    #[test]
    fn net_dev_without_lo() {
        assert_eq!(
            parse_net_dev(NET_DEV),
            vec![InterfaceCounters {
                name: "eth0".into(),
                rx_bytes: 90422,
                rx_packets: 731,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 4420,
                tx_packets: 52,
                tx_errors: 3,
                tx_dropped: 4,
            }]
        );
        assert!(parse_net_dev("garbage").is_empty());
    }

    #[test]
    fn own_namespace_reads_and_missing_files_are_none() {
        let got = read_netns_counters(vec![
            PathBuf::from("/proc/self/ns/net"),
            PathBuf::from("/nonexistent/ns/net"),
        ]);
        assert_eq!(got.len(), 2);
        assert!(got[0].is_some(), "the host's own netns can be read");
        assert!(got[1].is_none());
    }
}
