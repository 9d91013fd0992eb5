//! A test's own CNI network and the guard that puts the host back: each
//! test gets a bridge name and private /24 nothing on the host uses, a
//! host-local data dir in its temp dir, and only the plugins it needs.
//!
//! [`TestNet`] holds a process-wide lock and an inter-process `flock` for its
//! whole life, so no two network tests change the host at once; the other
//! e2e tests (loopback-only networks) run in parallel. On drop — or
//! [`TestNet::finish`], which also asserts — it deletes its bridge, removes
//! the iptables rules and chains its network added (and the plugins' shared
//! chains when they were not there before and nothing else uses them), and
//! restores the sysctls.
//!
//! The host may be shared with other processes that run CNI plugins too
//! (another test session's berthd, critest): what the guard removes and
//! what it checks is what it can attribute to its own network — rules that
//! name its network, bridge or /24 — and other processes' changes are
//! reported, never undone.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::net::{
    bridge_ports, iptables_save, links, must, nft_objects, restore_iptables, restore_nft, run,
    sysctl, tracked, HostState, NftObjects, Ours, SHARED_CHAINS,
};
use crate::support::short_tempdir;

/// Where Debian's containernetworking-plugins live.
pub const CNI_BIN: &str = "/usr/lib/cni";

/// Serialises host-network tests within this process (not poisoned by a
/// failed test, unlike a std mutex).
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Serialises them across processes (a second `cargo test` on the host).
const LOCK_FILE: &str = "/run/lock/berth-e2e-net.lock";

/// Which plugins a test network chains after `bridge`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plugins {
    /// The bridge plugin's `ipMasq` (a nat chain per pod).
    pub masq: bool,
    pub portmap: bool,
    pub firewall: bool,
}

/// A test's own CNI network and the guard that restores the host.
pub struct TestNet {
    pub name: String,
    pub bridge: String,
    /// The /24's first three octets.
    pub prefix: [u8; 3],
    pub plugins: Plugins,
    /// The daemon's `cni.conf_dir` (empty until [`TestNet::install`]).
    pub conf_dir: PathBuf,
    /// host-local's `dataDir`; its IP files are under `<data_dir>/<name>`.
    pub data_dir: PathBuf,
    before: HostState,
    nft_before: Option<NftObjects>,
    done: bool,
    _dir: tempfile::TempDir,
    _flock: nix::fcntl::Flock<std::fs::File>,
    _lock: tokio::sync::MutexGuard<'static, ()>,
}

impl TestNet {
    /// Takes the locks, records the host, picks a free bridge name and /24.
    pub async fn new(plugins: Plugins) -> TestNet {
        let lock = LOCK.lock().await;
        let flock = tokio::task::spawn_blocking(|| {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(LOCK_FILE)
                .expect("open the network test lock file");
            nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| e)
                .expect("flock the network test lock file")
        })
        .await
        .expect("lock task");
        let before = HostState::take();
        let nft_before = nft_objects();
        let (bridge, prefix) = pick(&before.links);
        let dir = short_tempdir("bn");
        let (conf_dir, data_dir) = (dir.path().join("conf"), dir.path().join("data"));
        std::fs::create_dir_all(&conf_dir).expect("create conf dir");
        TestNet {
            name: format!("berth-e2e-{bridge}"),
            bridge,
            prefix,
            plugins,
            conf_dir,
            data_dir,
            before,
            nft_before,
            done: false,
            _dir: dir,
            _flock: flock,
            _lock: lock,
        }
    }

    /// The `cni:` YAML section pointing a daemon at this network.
    pub fn yaml(&self) -> String {
        format!(
            "cni:\n  conf_dir: {}\n  bin_dirs: [{CNI_BIN}]\n  builtin_network: false\n",
            self.conf_dir.display()
        )
    }

    pub fn subnet(&self) -> String {
        let [a, b, c] = self.prefix;
        format!("{a}.{b}.{c}.0/24")
    }

    /// The bridge's address, the first of the subnet.
    pub fn gateway(&self) -> Ipv4Addr {
        let [a, b, c] = self.prefix;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// Whether `ip` lies in this network's /24.
    pub fn contains(&self, ip: &str) -> bool {
        ip.parse::<Ipv4Addr>()
            .is_ok_and(|ip| ip.octets()[..3] == self.prefix)
    }

    /// The conflist of network `name` on bridge `bridge`.
    pub fn conflist_for(&self, name: &str, bridge: &str) -> Value {
        let mut plugins = vec![json!({
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": self.plugins.masq,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.subnet()}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.data_dir,
            }
        })];
        if self.plugins.portmap {
            plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
        }
        if self.plugins.firewall {
            plugins.push(json!({"type": "firewall"}));
        }
        json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins})
    }

    /// Writes this network's conflist into the conf dir (atomically).
    pub fn install(&self) {
        let conf = self.conflist_for(&self.name, &self.bridge);
        self.write_conf("10-e2e.conflist", &conf);
    }

    /// Writes `conf` as `file` in the conf dir, atomically (a temp name the
    /// daemon ignores, then a rename).
    pub fn write_conf(&self, file: &str, conf: &Value) {
        let tmp = self.conf_dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(conf).expect("json")).expect("write conf");
        std::fs::rename(&tmp, self.conf_dir.join(file)).expect("rename conf");
    }

    /// Names of host-local's files for this network (IPs, lock, last reserved).
    pub fn ipam_files(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.data_dir.join(&self.name))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The IPs host-local holds reserved.
    pub fn reserved_ips(&self) -> BTreeSet<String> {
        self.ipam_files()
            .into_iter()
            .filter(|f| f.parse::<Ipv4Addr>().is_ok())
            .collect()
    }

    /// Puts the host back and checks it equals the recorded state; call it
    /// after the daemon and its pods are gone.
    pub fn finish(mut self) {
        self.done = true;
        if let Err(e) = self.restore() {
            panic!("the host is not as the test found it:\n{e}");
        }
    }

    /// What identifies this network's rules and links.
    pub fn ours(&self) -> Ours {
        Ours {
            name: self.name.clone(),
            bridge: self.bridge.clone(),
            prefix: self.prefix,
        }
    }

    /// This network's lines of iptables-save (v4 then v6) plus the shared
    /// chains' fixed rules: see [`tracked`].
    pub fn tracked_rules(&self) -> Vec<String> {
        let ours = self.ours();
        let mut v = tracked(&iptables_save("iptables-save"), &ours);
        v.extend(tracked(&iptables_save("ip6tables-save"), &ours));
        v
    }

    fn restore(&mut self) -> Result<(), String> {
        let ours = self.ours();
        let (mut errors, mut notes) = (Vec::new(), Vec::new());
        let mut our_links = bridge_ports(&self.bridge);
        our_links.insert(self.bridge.clone());
        if links().contains(&self.bridge) {
            if let Err(e) = run("ip", &["link", "del", &self.bridge]) {
                errors.push(e);
            }
        }
        for (ipt, save, before) in [
            ("iptables", "iptables-save", &self.before.ipt4),
            ("ip6tables", "ip6tables-save", &self.before.ipt6),
        ] {
            match restore_iptables(ipt, save, before, &ours) {
                Ok(n) => notes.extend(n),
                Err(e) => errors.push(e),
            }
        }
        if let Err(e) = restore_nft(&self.nft_before) {
            errors.push(e);
        }
        for (k, v) in &self.before.sysctls {
            if sysctl(k) != *v && !v.is_empty() {
                if let Err(e) = std::fs::write(Path::new("/proc/sys").join(k), v) {
                    errors.push(format!("restore sysctl {k}={v}: {e}"));
                }
            }
        }
        // A pod's veth goes when its netns is freed, which the kernel does
        // a little after the last reference (the pinning mount) is gone.
        let start = Instant::now();
        let (mine, foreign) = loop {
            let (mine, foreign) = classify(&self.before, &HostState::take(), &ours, &our_links);
            if mine.is_empty() || start.elapsed() > Duration::from_secs(20) {
                break (mine, foreign);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        errors.extend(mine);
        notes.extend(foreign);
        if !notes.is_empty() {
            eprintln!(
                "network test guard ({}): left alone, changed by other processes meanwhile:\n{}",
                self.name,
                notes.join("\n")
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }
}

/// Splits the differences between two host states into this test's
/// (errors) and other processes' (notes). A difference that names neither
/// — a chain declaration, a shared chain's rule, a sysctl, `ip netns` —
/// counts as this test's unless other processes visibly changed the host
/// meanwhile (rules naming other networks, other links).
fn classify(
    before: &HostState,
    now: &HostState,
    ours: &Ours,
    our_links: &BTreeSet<String>,
) -> (Vec<String>, Vec<String>) {
    let (mut mine, mut foreign, mut unsure) = (Vec::new(), Vec::new(), Vec::new());
    for (what, b, n) in [
        ("iptables", &before.ipt4, &now.ipt4),
        ("ip6tables", &before.ipt6, &now.ipt6),
    ] {
        let (bl, nl): (BTreeSet<&str>, BTreeSet<&str>) = (b.lines().collect(), n.lines().collect());
        let added = nl.difference(&bl).map(|l| (l, "added"));
        for (l, how) in added.chain(bl.difference(&nl).map(|l| (l, "removed"))) {
            let line = format!("{what} {how}: {l}");
            if ours.mentions(l) {
                mine.push(line);
            } else if l.starts_with(':') || SHARED_CHAINS.iter().any(|c| has_chain(l, c)) {
                unsure.push(line);
            } else {
                foreign.push(line);
            }
        }
    }
    for l in now.links.difference(&before.links) {
        let line = format!("link added: {l}");
        if our_links.contains(l) {
            mine.push(line);
        } else {
            foreign.push(line);
        }
    }
    for l in before.links.difference(&now.links) {
        foreign.push(format!("link removed: {l}"));
    }
    if before.netns != now.netns {
        unsure.push(format!("ip netns {:?} -> {:?}", before.netns, now.netns));
    }
    if before.sysctls != now.sysctls {
        unsure.push(format!("sysctls {:?} -> {:?}", before.sysctls, now.sysctls));
    }
    for p in now.var_lib_cni.symmetric_difference(&before.var_lib_cni) {
        let line = format!("/var/lib/cni changed: {}", p.display());
        if ours.mentions(&p.display().to_string()) {
            mine.push(line);
        } else {
            unsure.push(line);
        }
    }
    if foreign.is_empty() {
        mine.extend(unsure);
    } else {
        foreign.extend(unsure);
    }
    (mine, foreign)
}

fn has_chain(line: &str, chain: &str) -> bool {
    line.split_whitespace()
        .any(|w| w.trim_start_matches(':') == chain)
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.restore() {
                eprintln!("network test guard: the host is not as the test found it:\n{e}");
            }
        }
    }
}

/// A bridge name and a private /24 that nothing on the host uses.
fn pick(links: &BTreeSet<String>) -> (String, [u8; 3]) {
    static N: AtomicU32 = AtomicU32::new(0);
    let used = used_v4();
    let mut seed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(N.fetch_add(1, Ordering::Relaxed).wrapping_mul(40_503));
    for _ in 0..1000 {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let bridge = format!("be{:04x}", (seed >> 8) & 0xffff);
        let prefix = [10, 200 + ((seed >> 4) % 50) as u8, (seed >> 16) as u8];
        let base = u32::from(Ipv4Addr::new(prefix[0], prefix[1], prefix[2], 0));
        let clash = used.iter().any(|&(net, len)| overlaps(base, 24, net, len));
        if !links.contains(&bridge) && !clash {
            return (bridge, prefix);
        }
    }
    panic!("no free bridge name and /24 found");
}

/// Every IPv4 prefix in the host's routes (all tables) and addresses,
/// the default route excepted.
fn used_v4() -> Vec<(u32, u8)> {
    let routes = must("ip", &["-4", "route", "show", "table", "all"]);
    let addrs = must("ip", &["-4", "-o", "addr"]);
    let mut out = Vec::new();
    let words = routes
        .lines()
        .flat_map(|l| l.split_whitespace().take(2))
        .chain(addrs.lines().filter_map(|l| l.split_whitespace().nth(3)));
    for w in words {
        let (ip, len) = w.split_once('/').unwrap_or((w, "32"));
        if let (Ok(ip), Ok(len)) = (ip.parse::<Ipv4Addr>(), len.parse::<u8>()) {
            if len > 0 && len <= 32 {
                out.push((u32::from(ip), len));
            }
        }
    }
    out
}

fn overlaps(a: u32, alen: u8, b: u32, blen: u8) -> bool {
    let len = alen.min(blen);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a & mask == b & mask
}

#[test]
fn splits_quoted_rules() {
    let r = r#"-s 10.1.2.3/32 -m comment --comment "name: \"n\" id: \"x\"" -j CNI-abc"#;
    assert_eq!(
        crate::support::net::split_rule(r),
        vec![
            "-s",
            "10.1.2.3/32",
            "-m",
            "comment",
            "--comment",
            "name: \"n\" id: \"x\"",
            "-j",
            "CNI-abc"
        ]
    );
}

#[test]
fn attributes_rules_to_a_network() {
    let ours = Ours {
        name: "berth-e2e-be12ab".into(),
        bridge: "be12ab".into(),
        prefix: [10, 23, 7],
    };
    assert!(ours.mentions(r#"-s 10.23.7.9/32 -j CNI-abc"#));
    assert!(ours.mentions(r#"--comment "name: \"berth-e2e-be12ab\" id: \"x\"" -j X"#));
    assert!(!ours.mentions(r#"-s 10.233.7.9/32 -j CNI-abc"#));
    assert!(!ours.mentions(r#"-s 110.23.7.9/32"#));
    assert!(!ours.mentions(r#"--comment "name: \"berth-e2e-be12ab-other\"""#));
    assert!(!ours.mentions("-o be12abc -j ACCEPT"));
}
