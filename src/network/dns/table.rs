//! One user network's names, as Docker's embedded DNS knows them: each
//! running container answers to its DNS names (its name, its network
//! aliases, its 12-digit short id and its hostname, in that order — the
//! first one names it in PTR answers) and `<name>.<network>`. Several
//! containers behind one name are answered in turn (round robin).
//! Names are matched without regard to ASCII case, as DNS requires.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One container's place on a network: its addresses there and the
/// names it answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The container's id (the table keeps endpoints in this order).
    pub container_id: String,
    pub ips: Vec<IpAddr>,
    /// Its DNS names, the first naming it in PTR answers.
    pub names: Vec<String>,
}

impl Endpoint {
    /// Docker's DNS names of a container: its name, its aliases on the
    /// network, its short id and its hostname, without repeats.
    pub fn dns_names(name: &str, aliases: &[String], id: &str, hostname: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let short = id.get(..12).unwrap_or(id);
        for n in std::iter::once(name)
            .chain(aliases.iter().map(String::as_str))
            .chain([short, hostname])
        {
            let n = n.trim_start_matches('/');
            if !n.is_empty() && !out.iter().any(|o| o == n) {
                out.push(n.to_string());
            }
        }
        out
    }
}

/// What the table says about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// The name is the network's, with these records (possibly none of
    /// the asked family: an empty answer, not a forward).
    Found(Vec<T>),
    /// Not a name of this network: the query goes to the upstream servers.
    NotOurs,
}

/// A network's names → addresses, and addresses → the name PTR gives.
#[derive(Debug, Default)]
pub struct Table {
    network: String,
    names: HashMap<String, Entry>,
    ptr: HashMap<IpAddr, String>,
}

#[derive(Debug, Default)]
struct Entry {
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    /// The next rotation of the answer (round robin).
    turn: AtomicUsize,
}

impl Table {
    /// The table of `network` with these endpoints (in a stable order).
    pub fn new(network: &str, endpoints: &[Endpoint]) -> Table {
        let network_lc = network.to_ascii_lowercase();
        let mut t = Table {
            network: network_lc.clone(),
            ..Default::default()
        };
        for ep in endpoints {
            for name in &ep.names {
                let key = name.to_ascii_lowercase();
                let qualified = format!("{key}.{network_lc}");
                for k in [key, qualified] {
                    let e = t.names.entry(k).or_default();
                    for ip in &ep.ips {
                        match ip {
                            IpAddr::V4(a) if !e.v4.contains(a) => e.v4.push(*a),
                            IpAddr::V6(a) if !e.v6.contains(a) => e.v6.push(*a),
                            _ => {}
                        }
                    }
                }
            }
            if let Some(first) = ep.names.first() {
                for ip in &ep.ips {
                    t.ptr
                        .entry(*ip)
                        .or_insert_with(|| format!("{first}.{network_lc}"));
                }
            }
        }
        t
    }

    /// The network this table is of.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// How many names (with their network-qualified forms) the table has.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the table has no names.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The IPv4 addresses of `name` (trailing dot allowed), rotated one
    /// step on each answer.
    pub fn lookup_v4(&self, name: &str) -> Lookup<Ipv4Addr> {
        match self.entry(name) {
            Some(e) => Lookup::Found(rotated(&e.v4, &e.turn)),
            None => Lookup::NotOurs,
        }
    }

    /// The IPv6 addresses of `name`; a name with only IPv4 addresses is
    /// `Found` with none (NODATA, as Docker answers).
    pub fn lookup_v6(&self, name: &str) -> Lookup<Ipv6Addr> {
        match self.entry(name) {
            Some(e) => Lookup::Found(rotated(&e.v6, &e.turn)),
            None => Lookup::NotOurs,
        }
    }

    /// The name of the container holding `ip` on this network
    /// (`<name>.<network>`).
    pub fn reverse(&self, ip: IpAddr) -> Option<&str> {
        self.ptr.get(&ip).map(String::as_str)
    }

    fn entry(&self, name: &str) -> Option<&Entry> {
        let key = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        self.names.get(&key)
    }
}

fn rotated<T: Copy>(v: &[T], turn: &AtomicUsize) -> Vec<T> {
    if v.len() < 2 {
        return v.to_vec();
    }
    let k = turn.fetch_add(1, Ordering::Relaxed) % v.len();
    v[k..].iter().chain(&v[..k]).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(id: &str, ip: &str, names: &[&str]) -> Endpoint {
        Endpoint {
            container_id: id.into(),
            ips: vec![ip.parse().unwrap()],
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn docker_dns_names_are_name_aliases_short_id_hostname() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let names = Endpoint::dns_names("/web", &["app".into(), "web".into()], id, "0123456789ab");
        assert_eq!(names, ["web", "app", "0123456789ab"]);
        let names = Endpoint::dns_names("web", &[], id, "box");
        assert_eq!(names, ["web", "0123456789ab", "box"]);
    }

    #[test]
    fn names_resolve_without_case_and_with_the_network_suffix() {
        let t = Table::new("MyNet", &[ep("a", "10.0.0.2", &["Web", "app"])]);
        let want = Lookup::Found(vec![Ipv4Addr::new(10, 0, 0, 2)]);
        assert_eq!(t.lookup_v4("web"), want);
        assert_eq!(t.lookup_v4("WEB."), want);
        assert_eq!(t.lookup_v4("app.mynet."), want);
        assert_eq!(t.lookup_v4("App.MYNET"), want);
        assert_eq!(t.lookup_v4("other"), Lookup::NotOurs);
        assert_eq!(t.lookup_v4("web.othernet"), Lookup::NotOurs);
        // Known without IPv6: an empty answer, not a forward.
        assert_eq!(t.lookup_v6("web"), Lookup::Found(vec![]));
        assert_eq!(t.lookup_v6("nosuch"), Lookup::NotOurs);
        assert_eq!(t.reverse("10.0.0.2".parse().unwrap()), Some("Web.mynet"));
        assert_eq!(t.reverse("10.0.0.3".parse().unwrap()), None);
    }

    #[test]
    fn a_shared_alias_answers_every_container_in_turn() {
        let t = Table::new(
            "n",
            &[
                ep("a", "10.0.0.2", &["a", "svc"]),
                ep("b", "10.0.0.3", &["b", "svc"]),
            ],
        );
        let (x, y) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(t.lookup_v4("svc"), Lookup::Found(vec![x, y]));
        assert_eq!(t.lookup_v4("svc"), Lookup::Found(vec![y, x]));
        assert_eq!(t.lookup_v4("svc"), Lookup::Found(vec![x, y]));
        assert_eq!(t.lookup_v4("a"), Lookup::Found(vec![x]));
        // PTR names the container by its first name.
        assert_eq!(t.reverse(IpAddr::V4(y)), Some("b.n"));
    }
}
