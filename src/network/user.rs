//! Docker user networks as CNI network configs: network `<name>` is
//! `<root>/networks/<name>.conflist` (what the engine attaches pods with)
//! and `<name>.json` (Docker's metadata: id, creation time, labels). The
//! conflist is written first and the metadata last, each atomically, so a
//! network is listed only once both are whole; removal goes the other way.
//!
//! A network is the CNI `bridge` plugin on its own bridge `br-<id[..12]>`
//! with host-local IPAM (its data under `<root>/networks/ipam/<name>`) and
//! `portmap` for published ports.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// host-local's `dataDir` below the networks directory.
pub const IPAM_DIR: &str = "ipam";

/// The first two octets of the /24s picked when a create names no subnet.
const POOL: [u8; 2] = [10, 89];

/// A user network's metadata (`<name>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// 64 hex digits.
    pub id: String,
    pub name: String,
    /// Unix nanoseconds.
    pub created: i64,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// The host bridge (`br-` and the id's first 12 digits).
    pub bridge: String,
    /// No default route and no masquerading: no way out of the subnet.
    pub internal: bool,
    pub attachable: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl Meta {
    /// The bridge name of network `id`; 15 characters, the kernel's limit.
    pub fn bridge_for(id: &str) -> String {
        format!("br-{}", &id[..12.min(id.len())])
    }
}

/// An IPv4 prefix, kept in its network form (`10.89.3.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Subnet {
    /// Parses `a.b.c.d/len`; host bits must be zero, as Docker requires.
    pub fn parse(s: &str) -> Result<Subnet, String> {
        let bad = || format!("invalid subnet {s}: it must be an IPv4 prefix like 10.89.1.0/24");
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&len) {
            return Err(format!(
                "invalid subnet {s}: the prefix length must be between 8 and 30"
            ));
        }
        let net = Subnet { addr: ip, len };
        let base = Subnet {
            addr: Ipv4Addr::from(u32::from(ip) & net.mask()),
            len,
        };
        if base.addr != ip {
            return Err(format!("invalid subnet {s}: it should be {base}"));
        }
        Ok(base)
    }

    fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }

    /// Whether `ip` lies in this prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// Whether the two prefixes share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let shorter = if self.len <= other.len { self } else { other };
        let longer = if self.len <= other.len { other } else { self };
        shorter.contains(longer.addr)
    }

    /// The first host address (the default gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    /// Whether `ip` is a host address of this prefix (not the network or
    /// broadcast address).
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        let broadcast = u32::from(self.addr) | !self.mask();
        self.contains(ip) && ip != self.addr && u32::from(ip) != broadcast
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl TryFrom<String> for Subnet {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Subnet::parse(&s)
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

/// The first `10.89.N.0/24` that overlaps none of `used`.
pub fn pick_subnet(used: &[Subnet]) -> Option<Subnet> {
    (0..=255u8)
        .map(|n| Subnet {
            addr: Ipv4Addr::new(POOL[0], POOL[1], n, 0),
            len: 24,
        })
        .find(|s| !used.iter().any(|u| u.overlaps(s)))
}

/// The CNI 1.0.0 conflist of a network; host-local keeps its data in
/// `<ipam_dir>/<name>`.
pub fn conflist(meta: &Meta, ipam_dir: &Path) -> Value {
    let mut ipam = json!({
        "type": "host-local",
        "ranges": [[{"subnet": meta.subnet.to_string(), "gateway": meta.gateway.to_string()}]],
        "dataDir": ipam_dir,
    });
    if !meta.internal {
        ipam["routes"] = json!([{"dst": "0.0.0.0/0"}]);
    }
    json!({
        "cniVersion": "1.0.0",
        "name": meta.name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": meta.bridge,
                "isGateway": true,
                "ipMasq": !meta.internal,
                "hairpinMode": true,
                "ipam": ipam,
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    })
}

/// The IPv4 prefixes of the host's routes (`/proc/net/route`), the default
/// route excepted: a picked subnet must not shadow a network the host reaches.
pub fn host_routes() -> Vec<Subnet> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    parse_proc_routes(&text)
}

fn parse_proc_routes(text: &str) -> Vec<Subnet> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::from_be);
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dst, mask) = (hex(f.get(1)?)?, hex(f.get(7)?)?);
            let len = mask.count_ones() as u8;
            (len > 0).then(|| Subnet {
                addr: Ipv4Addr::from(dst & mask),
                len,
            })
        })
        .collect()
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("failed to {what} {}: {e}", path.display())
}

/// Every network's metadata in `dir`, by name.
pub fn list(dir: &Path) -> Result<Vec<Meta>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", dir, e)),
    };
    let mut out = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        match std::fs::read(&p)
            .map_err(|e| io_err("read", &p, e))
            .and_then(|b| serde_json::from_slice::<Meta>(&b).map_err(|e| e.to_string()))
        {
            Ok(m) => out.push(m),
            Err(e) => tracing::warn!("skipping network metadata {}: {e}", p.display()),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One network's metadata, or `None`.
#[cfg(test)]
pub fn get(dir: &Path, name: &str) -> Result<Option<Meta>, String> {
    if !crate::docker::create::valid_name(name) {
        return Ok(None);
    }
    let p = dir.join(format!("{name}.json"));
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("bad network metadata {}: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", &p, e)),
    }
}

/// Writes `bytes` to `dir/file` atomically (temp file, fsync, rename).
fn write_atomic(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), String> {
    let (tmp, dest) = (dir.join(format!(".{file}.tmp")), dir.join(file));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &dest)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(|e| io_err("write", &dest, e))
}

/// Creates a network's files: the conflist, then the metadata.
pub fn create(dir: &Path, meta: &Meta) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
    let conf = conflist(meta, &dir.join(IPAM_DIR));
    let conf = serde_json::to_vec_pretty(&conf).expect("a conflist serializes");
    write_atomic(dir, &format!("{}.conflist", meta.name), &conf)?;
    let m = serde_json::to_vec_pretty(meta).expect("metadata serializes");
    if let Err(e) = write_atomic(dir, &format!("{}.json", meta.name), &m) {
        let _ = std::fs::remove_file(dir.join(format!("{}.conflist", meta.name)));
        return Err(e);
    }
    Ok(())
}

/// Removes a network's files: metadata, conflist, host-local's data.
pub fn remove(dir: &Path, name: &str) -> Result<(), String> {
    let gone = |p: PathBuf, r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("remove", &p, e)),
        _ => Ok(()),
    };
    let meta = dir.join(format!("{name}.json"));
    gone(meta.clone(), std::fs::remove_file(&meta))?;
    let conf = dir.join(format!("{name}.conflist"));
    gone(conf.clone(), std::fs::remove_file(&conf))?;
    let ipam = dir.join(IPAM_DIR).join(name);
    gone(ipam.clone(), std::fs::remove_dir_all(&ipam))
}

/// Deletes a network's host bridge, if it is there.
pub async fn delete_bridge(bridge: &str) -> Result<(), String> {
    if !Path::new("/sys/class/net").join(bridge).exists() {
        return Ok(());
    }
    let out = tokio::process::Command::new("ip")
        .args(["link", "delete", bridge])
        .output()
        .await
        .map_err(|e| format!("failed to run ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "failed to delete bridge {bridge}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, subnet: &str, internal: bool) -> Meta {
        let subnet = Subnet::parse(subnet).unwrap();
        let id = "0123456789abcdef".repeat(4);
        Meta {
            bridge: Meta::bridge_for(&id),
            id,
            name: name.into(),
            created: 1,
            gateway: subnet.first_host(),
            subnet,
            internal,
            attachable: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
        }
    }

    #[test]
    fn subnets_parse_in_network_form() {
        let s = Subnet::parse("10.89.77.0/24").unwrap();
        assert_eq!(s.to_string(), "10.89.77.0/24");
        assert_eq!(s.first_host(), Ipv4Addr::new(10, 89, 77, 1));
        assert!(s.is_host(Ipv4Addr::new(10, 89, 77, 254)));
        assert!(!s.is_host(Ipv4Addr::new(10, 89, 77, 255)));
        assert!(!s.is_host(Ipv4Addr::new(10, 89, 77, 0)));
        assert!(!s.is_host(Ipv4Addr::new(10, 89, 78, 1)));
        let e = Subnet::parse("10.89.77.5/24").unwrap_err();
        assert!(e.contains("it should be 10.89.77.0/24"), "{e}");
        for bad in [
            "10.89.77.0",
            "10.89.77.0/33",
            "10.89.77.0/31",
            "fd00::/64",
            "x/24",
        ] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
        let wide = Subnet::parse("10.0.0.0/8").unwrap();
        assert!(wide.overlaps(&s) && s.overlaps(&wide));
        assert!(!s.overlaps(&Subnet::parse("10.89.78.0/24").unwrap()));
    }

    #[test]
    fn subnet_picking_skips_every_used_prefix() {
        assert_eq!(pick_subnet(&[]).unwrap().to_string(), "10.89.0.0/24");
        let used: Vec<Subnet> = [
            "10.89.0.0/24",
            "10.89.1.0/25",
            "10.89.2.7/32",
            "10.89.4.0/23",
        ]
        .iter()
        .map(|s| {
            let (ip, len) = s.split_once('/').unwrap();
            Subnet {
                addr: ip.parse().unwrap(),
                len: len.parse().unwrap(),
            }
        })
        .collect();
        assert_eq!(pick_subnet(&used).unwrap().to_string(), "10.89.3.0/24");
        let all = [Subnet::parse("10.89.0.0/16").unwrap()];
        assert_eq!(pick_subnet(&all), None);
    }

    #[test]
    fn host_routes_come_from_proc_net_route() {
        let text =
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            br0\t00005A0A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let got: Vec<String> = parse_proc_routes(text)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["192.168.0.0/24", "10.90.0.0/16"]);
    }

    #[test]
    fn conflist_is_a_bridge_with_host_local_and_portmap() {
        let m = meta("mynet", "10.89.77.0/24", false);
        let c = conflist(&m, Path::new("/var/lib/berth/networks/ipam"));
        assert_eq!(c["cniVersion"], "1.0.0");
        assert_eq!(c["name"], "mynet");
        let bridge = &c["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "br-0123456789ab");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(
            bridge["ipam"]["ranges"],
            json!([[{"subnet": "10.89.77.0/24", "gateway": "10.89.77.1"}]])
        );
        assert_eq!(bridge["ipam"]["routes"], json!([{"dst": "0.0.0.0/0"}]));
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/berth/networks/ipam");
        assert_eq!(
            c["plugins"][1],
            json!({"type": "portmap", "capabilities": {"portMappings": true}})
        );
        // It is a config the CNI caller accepts, named as its file.
        let parsed =
            crate::network::NetworkConfigList::from_value(c, Path::new("mynet.conflist")).unwrap();
        assert_eq!(parsed.name, "mynet");
        // Internal: no way out — no masquerading, no default route.
        let c = conflist(&meta("inner", "10.89.5.0/24", true), Path::new("/x"));
        assert_eq!(c["plugins"][0]["ipMasq"], false);
        assert!(c["plugins"][0]["ipam"].get("routes").is_none());
    }

    #[test]
    fn files_are_written_listed_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("networks");
        assert!(list(&dir).unwrap().is_empty());
        let m = meta("mynet", "10.89.77.0/24", false);
        create(&dir, &m).unwrap();
        assert_eq!(list(&dir).unwrap(), vec![m.clone()]);
        assert_eq!(get(&dir, "mynet").unwrap(), Some(m.clone()));
        assert_eq!(get(&dir, "../mynet").unwrap(), None);
        let bins = vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")];
        if crate::network::find_plugin("bridge", &bins).is_ok()
            && crate::network::find_plugin("portmap", &bins).is_ok()
        {
            let net = crate::network::load_named(&dir, "mynet", &bins)
                .unwrap()
                .unwrap();
            assert_eq!(net.name, "mynet");
        }
        std::fs::create_dir_all(dir.join(IPAM_DIR).join("mynet")).unwrap();
        std::fs::write(dir.join(IPAM_DIR).join("mynet").join("lock"), "").unwrap();
        remove(&dir, "mynet").unwrap();
        assert!(list(&dir).unwrap().is_empty());
        assert!(!dir.join("mynet.conflist").exists());
        assert!(!dir.join(IPAM_DIR).join("mynet").exists());
        remove(&dir, "mynet").unwrap();
    }
}
