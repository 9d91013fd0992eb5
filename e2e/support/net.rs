//! The host's network state as pod networking tests must leave it:
//! iptables (and the nf_tables objects iptables-nft makes), links, `ip
//! netns`, sysctls and `/var/lib/cni`; and undoing the iptables difference
//! to a recorded state (see `e2e/network/testnet.rs` for the guard).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// sysctls the plugins may change on the host.
pub const SYSCTLS: &[&str] = &[
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/ipv4/conf/default/route_localnet",
    "net/ipv6/conf/all/forwarding",
];

/// Runs a command; returns stdout, or the command and stderr as the error.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub fn must(cmd: &str, args: &[&str]) -> String {
    run(cmd, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Fails when the host already routes one of the /24s a test needs
/// (`prefixes` like `"10.89.91."`).
pub fn free_subnets(prefixes: &[&str]) {
    let routes = must("ip", &["-4", "route", "show", "table", "all"]);
    for p in prefixes {
        assert!(
            !routes.contains(p),
            "the host already routes {p}0/24, which this test needs:\n{routes}"
        );
    }
}

/// `iptables-save` (or `ip6tables-save`) without comments and counters.
/// A listing that lacks a chain's declaration (seen right after a network
/// namespace's first nf_tables change) is taken again.
pub fn iptables_save(save: &str) -> String {
    for _ in 0..50 {
        let text = must(save, &[])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| match (l.starts_with(':'), l.rfind(" [")) {
                (true, Some(i)) => &l[..i],
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        if well_formed(&text) {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{save} keeps listing rules of undeclared chains");
}

/// Every table declares its chains, and every rule's chain is declared.
fn well_formed(text: &str) -> bool {
    parse_save(text)
        .values()
        .all(|t| !t.chains.is_empty() && t.rules.keys().all(|c| t.chains.contains_key(c)))
}

/// Interface names (`ip -o link`), `@peer` suffixes cut.
pub fn links() -> BTreeSet<String> {
    link_names(&must("ip", &["-o", "link", "show"]))
}

/// The interfaces enslaved to `bridge` (a pod's host-side veths).
pub fn bridge_ports(bridge: &str) -> BTreeSet<String> {
    run("ip", &["-o", "link", "show", "master", bridge])
        .map(|t| link_names(&t))
        .unwrap_or_default()
}

/// Names of veth interfaces on the host.
pub fn veths() -> BTreeSet<String> {
    link_names(&must("ip", &["-o", "link", "show", "type", "veth"]))
}

fn link_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// `ip netns list` names.
pub fn netns() -> BTreeSet<String> {
    must("ip", &["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

/// Everything below `/var/lib/cni` (the plugins' default data dirs).
fn var_lib_cni() -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![PathBuf::from("/var/lib/cni")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
            out.insert(e.path());
        }
    }
    out
}

/// The host state a network test must leave as it found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    pub ipt4: String,
    pub ipt6: String,
    pub links: BTreeSet<String>,
    pub netns: BTreeSet<String>,
    pub sysctls: BTreeMap<String, String>,
    pub var_lib_cni: BTreeSet<PathBuf>,
}

impl HostState {
    pub fn take() -> HostState {
        HostState {
            ipt4: iptables_save("iptables-save"),
            ipt6: iptables_save("ip6tables-save"),
            links: links(),
            netns: netns(),
            sysctls: SYSCTLS.iter().map(|k| (k.to_string(), sysctl(k))).collect(),
            var_lib_cni: var_lib_cni(),
        }
    }
}

pub fn sysctl(key: &str) -> String {
    std::fs::read_to_string(Path::new("/proc/sys").join(key))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// One table of an `iptables-save` text: chain -> policy, chain -> rules
/// (the text after `-A <chain> `), in order.
#[derive(Debug, Default)]
struct Table {
    chains: BTreeMap<String, String>,
    rules: BTreeMap<String, Vec<String>>,
}

fn parse_save(text: &str) -> BTreeMap<String, Table> {
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let mut cur = String::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            cur = t.to_string();
            tables.entry(cur.clone()).or_default();
        } else if let Some(c) = line.strip_prefix(':') {
            let mut parts = c.split_whitespace();
            let name = parts.next().unwrap_or_default().to_string();
            let policy = parts.next().unwrap_or("-").to_string();
            tables
                .entry(cur.clone())
                .or_default()
                .chains
                .insert(name, policy);
        } else if let Some(r) = line.strip_prefix("-A ") {
            let (chain, spec) = r.split_once(' ').unwrap_or((r, ""));
            let t = tables.entry(cur.clone()).or_default();
            t.rules
                .entry(chain.to_string())
                .or_default()
                .push(spec.to_string());
        }
    }
    tables
}

/// Splits an iptables-save rule into arguments (double quotes, `\` escapes).
pub fn split_rule(spec: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.extend(chars.next());
                any = true;
            }
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Chains the portmap and firewall plugins share between all pods and
/// networks (created once, never removed by the plugins).
pub const SHARED_CHAINS: &[&str] = &[
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-SETMARK",
    "CNI-HOSTPORT-MASQ",
    "CNI-HOSTPORT-SNAT",
    "CNI-FORWARD",
    "CNI-ADMIN",
];

const BUILTIN_CHAINS: &[&str] = &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// What identifies one test network's own rules and links on a host that
/// other processes (other test sessions) change at the same time.
#[derive(Debug, Clone)]
pub struct Ours {
    /// The CNI network name (in the plugins' rule comments).
    pub name: String,
    pub bridge: String,
    /// The /24's first three octets (pod IPs, subnet matches).
    pub prefix: [u8; 3],
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Whether `text` holds `tok` not as part of a longer name.
fn has_token(text: &str, tok: &str) -> bool {
    text.match_indices(tok).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + tok.len()..].chars().next();
        !before.is_some_and(|c| is_word(c) || c == '.') && !after.is_some_and(is_word)
    })
}

impl Ours {
    /// Whether an iptables rule (or any line) names this network, its
    /// bridge, or an address of its /24.
    pub fn mentions(&self, text: &str) -> bool {
        let [a, b, c] = self.prefix;
        let net = format!("{a}.{b}.{c}.");
        let in_subnet = text.match_indices(&net).any(|(i, _)| {
            !text[..i]
                .chars()
                .next_back()
                .is_some_and(|ch| ch.is_ascii_digit() || ch == '.')
        });
        in_subnet || has_token(text, &self.name) || has_token(text, &self.bridge)
    }
}

/// A rule that names no address and no container: the fixed rules the
/// plugins put into (and in front of) their shared chains.
fn is_static(rule: &str) -> bool {
    let ipv4 = rule
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 4 && parts.iter().all(|p| !p.is_empty())
        });
    !ipv4 && !rule.contains(" id: ")
}

fn target(rule: &str) -> Option<String> {
    let parts = split_rule(rule);
    parts
        .windows(2)
        .find(|w| w[0] == "-j" || w[0] == "-g")
        .map(|w| w[1].clone())
}

/// The lines of an iptables-save text that belong to network `ours` or to
/// the plugins' shared chains (their declarations and fixed rules), sorted:
/// what a test compares before and after, leaving other processes' rules out.
pub fn tracked(save: &str, ours: &Ours) -> Vec<String> {
    let tables = parse_save(save);
    let mut out = Vec::new();
    for (tname, t) in &tables {
        for (chain, rules) in &t.rules {
            let shared = SHARED_CHAINS.contains(&chain.as_str());
            let mine = rules.iter().any(|r| ours.mentions(r));
            if (shared || mine) && t.chains.contains_key(chain) {
                out.push(format!("{tname} :{chain}"));
            }
            for r in rules {
                let to_shared = target(r).is_some_and(|c| SHARED_CHAINS.contains(&c.as_str()));
                if ours.mentions(r) || ((shared || to_shared) && is_static(r)) {
                    out.push(format!("{tname} -A {chain} {r}"));
                }
            }
        }
        for c in t.chains.keys() {
            if SHARED_CHAINS.contains(&c.as_str()) {
                out.push(format!("{tname} :{c}"));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn delete_rule(ipt: &str, table: &str, chain: &str, rule: &str, errors: &mut Vec<String>) {
    let parts = split_rule(rule);
    let mut args = vec!["-w", "-t", table, "-D", chain];
    args.extend(parts.iter().map(String::as_str));
    if let Err(e) = run(ipt, &args) {
        errors.push(e);
    }
}

fn drop_chains(ipt: &str, table: &str, chains: &[String], errors: &mut Vec<String>) {
    for flag in ["-F", "-X"] {
        for c in chains {
            if let Err(e) = run(ipt, &["-w", "-t", table, flag, c]) {
                errors.push(e);
            }
        }
    }
}

/// Undoes what network `ours` added to one iptables family since `before`:
/// its rules (in any chain) and its own chains; then the shared chains
/// that were not there before, unless another process's pods use them
/// (which is returned as a note). Other processes' rules are left alone.
pub fn restore_iptables(
    ipt: &str,
    save: &str,
    before: &str,
    ours: &Ours,
) -> Result<Vec<String>, String> {
    let old = parse_save(before);
    let (mut errors, mut notes) = (Vec::new(), Vec::new());
    let empty = Table::default();
    for (tname, t) in &parse_save(&iptables_save(save)) {
        let o = old.get(tname).unwrap_or(&empty);
        let mine: Vec<String> = t
            .rules
            .iter()
            .filter(|(c, rules)| {
                !o.chains.contains_key(*c)
                    && !SHARED_CHAINS.contains(&c.as_str())
                    && !BUILTIN_CHAINS.contains(&c.as_str())
                    && rules.iter().any(|r| ours.mentions(r))
            })
            .map(|(c, _)| c.clone())
            .collect();
        for (chain, rules) in &t.rules {
            if mine.contains(chain) {
                continue;
            }
            let mut keep = o.rules.get(chain).cloned().unwrap_or_default();
            for r in rules {
                if let Some(i) = keep.iter().position(|k| k == r) {
                    keep.remove(i);
                } else if ours.mentions(r) || target(r).is_some_and(|c| mine.contains(&c)) {
                    delete_rule(ipt, tname, chain, r, &mut errors);
                }
            }
        }
        drop_chains(ipt, tname, &mine, &mut errors);
    }
    for (tname, t) in &parse_save(&iptables_save(save)) {
        let o = old.get(tname).unwrap_or(&empty);
        let added: Vec<String> = t
            .chains
            .keys()
            .filter(|c| SHARED_CHAINS.contains(&c.as_str()) && !o.chains.contains_key(*c))
            .cloned()
            .collect();
        if added.is_empty() {
            continue;
        }
        let users: Vec<String> = t
            .rules
            .iter()
            .flat_map(|(c, rules)| rules.iter().map(move |r| (c, r)))
            .filter(|(c, r)| {
                let into = target(r).is_some_and(|x| added.contains(&x));
                let inside = added.contains(c);
                let other =
                    !BUILTIN_CHAINS.contains(&c.as_str()) && !SHARED_CHAINS.contains(&c.as_str());
                (inside && !is_static(r)) || (into && other)
            })
            .map(|(c, r)| format!("-A {c} {r}"))
            .collect();
        if !users.is_empty() {
            notes.push(format!(
                "kept the shared chains {added:?} ({tname}) that this test created: \
                 other pods use them now: {users:?}"
            ));
            continue;
        }
        for b in BUILTIN_CHAINS {
            let mut keep = o.rules.get(*b).cloned().unwrap_or_default();
            for r in t.rules.get(*b).into_iter().flatten() {
                if let Some(i) = keep.iter().position(|k| k == r) {
                    keep.remove(i);
                } else if target(r).is_some_and(|x| added.contains(&x)) {
                    delete_rule(ipt, tname, b, r, &mut errors);
                }
            }
        }
        drop_chains(ipt, tname, &added, &mut errors);
    }
    if errors.is_empty() {
        Ok(notes)
    } else {
        Err(errors.join("\n"))
    }
}

/// `(family, table)` and `(family, table, chain)` -> rule count, from
/// `nft -j list ruleset`; `None` without nft.
pub type NftObjects = (
    BTreeSet<(String, String)>,
    BTreeMap<(String, String, String), usize>,
);

pub fn nft_objects() -> Option<NftObjects> {
    let text = run("nft", &["-j", "list", "ruleset"]).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let (mut tables, mut chains) = (BTreeSet::new(), BTreeMap::new());
    let s = |o: &Value, k: &str| o[k].as_str().unwrap_or_default().to_string();
    for item in v["nftables"].as_array()? {
        if let Some(t) = item.get("table") {
            tables.insert((s(t, "family"), s(t, "name")));
        } else if let Some(c) = item.get("chain") {
            chains.insert((s(c, "family"), s(c, "table"), s(c, "name")), 0);
        } else if let Some(r) = item.get("rule") {
            *chains
                .entry((s(r, "family"), s(r, "table"), s(r, "chain")))
                .or_insert(0) += 1;
        }
    }
    Some((tables, chains))
}

/// Removes the empty base chains and tables that iptables-nft created since
/// `before` (iptables-save cannot show them, but they are host state); user
/// chains are [`restore_iptables`]'s.
pub fn restore_nft(before: &Option<NftObjects>) -> Result<(), String> {
    let (Some((old_t, old_c)), Some((_, now_c))) = (before, nft_objects()) else {
        return Ok(());
    };
    let mut errors = Vec::new();
    for ((fam, table, chain), n) in &now_c {
        let base = BUILTIN_CHAINS.contains(&chain.as_str());
        if *n == 0 && base && !old_c.contains_key(&(fam.clone(), table.clone(), chain.clone())) {
            if let Err(e) = run("nft", &["delete", "chain", fam, table, chain]) {
                errors.push(e);
            }
        }
    }
    if let Some((now_t, now_c)) = nft_objects() {
        for (fam, table) in now_t.difference(old_t) {
            let used = now_c.keys().any(|(f, t, _)| f == fam && t == table);
            if !used {
                if let Err(e) = run("nft", &["delete", "table", fam, table]) {
                    errors.push(e);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}
