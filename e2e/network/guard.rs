//! The guard's own check: inside a private network namespace (so the host's
//! iptables are never touched), rules shaped like the plugins' — this
//! network's, another process's, and the shared chains — are undone for
//! this network only, and the shared chains go once nothing else uses them.

use crate::support::net::{iptables_save, restore_iptables, run, Ours};

fn ipt(args: &str) {
    let parts = crate::support::net::split_rule(args);
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    run("iptables", &parts).unwrap_or_else(|e| panic!("{e}"));
}

const SHARED: &[&str] = &[
    "-t nat -N CNI-HOSTPORT-DNAT",
    "-t nat -N CNI-HOSTPORT-SETMARK",
    "-t nat -A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
    "-t nat -A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
    r#"-t nat -A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000"#,
];

const OURS: &[&str] = &[
    "-t nat -N CNI-DN-0123456789abcdef",
    "-t nat -A CNI-DN-0123456789abcdef -s 10.23.7.0/24 -d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
    "-t nat -A CNI-DN-0123456789abcdef -d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.23.7.5:80",
    r#"-t nat -A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"berth-e2e-be12ab\" id: \"abc\"" -m multiport --dports 8080 -j CNI-DN-0123456789abcdef"#,
    "-t nat -N CNI-aaaaaaaaaaaaaaaaaaaaaaaa",
    r#"-t nat -A CNI-aaaaaaaaaaaaaaaaaaaaaaaa -d 10.23.7.0/24 -m comment --comment "name: \"berth-e2e-be12ab\" id: \"abc\"" -j ACCEPT"#,
    r#"-t nat -A POSTROUTING -s 10.23.7.5/32 -m comment --comment "name: \"berth-e2e-be12ab\" id: \"abc\"" -j CNI-aaaaaaaaaaaaaaaaaaaaaaaa"#,
    "-t filter -A FORWARD -s 10.23.7.5/32 -j ACCEPT",
];

const FOREIGN: &[&str] = &[
    "-t nat -N CNI-DN-fedcba9876543210",
    "-t nat -A CNI-DN-fedcba9876543210 -s 10.233.7.0/24 -d 127.0.0.1/32 -p tcp -m tcp --dport 9090 -j CNI-HOSTPORT-SETMARK",
    r#"-t nat -A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"crit\" id: \"f\"" -m multiport --dports 9090 -j CNI-DN-fedcba9876543210"#,
    "-t nat -N CNI-bbbbbbbbbbbbbbbbbbbbbbbb",
    r#"-t nat -A CNI-bbbbbbbbbbbbbbbbbbbbbbbb -d 10.233.7.0/24 -m comment --comment "name: \"crit\" id: \"f\"" -j ACCEPT"#,
    r#"-t nat -A POSTROUTING -s 10.233.7.9/32 -m comment --comment "name: \"crit\" id: \"f\"" -j CNI-bbbbbbbbbbbbbbbbbbbbbbbb"#,
];

fn scenario() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare the netns");
    let ours = Ours {
        name: "berth-e2e-be12ab".into(),
        bridge: "be12ab".into(),
        prefix: [10, 23, 7],
    };
    let before = iptables_save("iptables-save");
    for r in SHARED.iter().chain(OURS).chain(FOREIGN) {
        ipt(r);
    }
    let full = iptables_save("iptables-save");

    let notes = restore_iptables("iptables", "iptables-save", &before, &ours).expect("restore");
    let now = iptables_save("iptables-save");
    let left: Vec<&str> = now.lines().filter(|l| ours.mentions(l)).collect();
    assert!(left.is_empty(), "this network's rules are gone: {left:?}");
    let our_chains = [":CNI-DN-0123456789abcdef", ":CNI-aaaaaaaaaaaaaaaaaaaaaaaa"];
    let theirs = full
        .lines()
        .filter(|l| !ours.mentions(l) && !our_chains.iter().any(|c| l.starts_with(c)));
    for l in theirs {
        assert!(now.contains(l), "kept {l:?}:\n{now}");
    }
    assert!(!now.contains("CNI-DN-0123456789abcdef"), "{now}");
    assert!(!now.contains("CNI-aaaaaaaaaaaaaaaaaaaaaaaa"), "{now}");
    assert_eq!(notes.len(), 1, "the shared chains are in use: {notes:?}");

    // The other process's pods go; then the shared chains can go too.
    for (table, chain) in [("nat", "CNI-HOSTPORT-DNAT"), ("nat", "POSTROUTING")] {
        let rules: Vec<String> = now
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("-A {chain} ")))
            .filter(|r| r.contains("crit"))
            .map(|r| format!("-t {table} -D {chain} {r}"))
            .collect();
        rules.iter().for_each(|r| ipt(r));
    }
    for c in ["CNI-DN-fedcba9876543210", "CNI-bbbbbbbbbbbbbbbbbbbbbbbb"] {
        ipt(&format!("-t nat -F {c}"));
        ipt(&format!("-t nat -X {c}"));
    }
    let notes = restore_iptables("iptables", "iptables-save", &before, &ours).expect("restore");
    assert!(notes.is_empty(), "{notes:?}");
    let now = iptables_save("iptables-save");
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with('*') && !l.starts_with(':') && *l != "COMMIT")
            .map(String::from)
            .collect()
    };
    assert_eq!(strip(&now), strip(&before), "all rules undone:\n{now}");
    assert!(!now.contains(":CNI-"), "no chain left:\n{now}");
}

#[test]
fn guard_undoes_only_this_networks_rules_in_a_private_netns() {
    // unshare(CLONE_NEWNET) moves only the calling thread (and the
    // iptables processes it starts) into the new namespace.
    std::thread::spawn(scenario)
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}
