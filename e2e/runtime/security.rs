//! The container security context: user, image user, read-only root,
//! capabilities, privileged.

use tonic::Code;

use super::Env;
use crate::support::catalog;
use crate::support::cri;
use crate::support::pods::{self, capabilities, pod_security, run_as_user, security};

/// Bit of CAP_SYS_ADMIN in the capability masks of /proc/<pid>/status.
const CAP_SYS_ADMIN: u32 = 21;
/// Bit of CAP_CHOWN, in every default set.
const CAP_CHOWN: u32 = 0;

/// The script every case runs: who am I, and what may I do.
const PROBE: &str = "id -u; id -un; id -g; grep '^CapEff:' /proc/self/status";

struct Probe {
    uid: String,
    user: String,
    gid: String,
    cap_eff: u64,
}

fn probe(lines: &[String]) -> Probe {
    assert_eq!(lines.len(), 4, "probe output: {lines:?}");
    let hex = lines[3]
        .strip_prefix("CapEff:")
        .unwrap_or_else(|| panic!("CapEff line: {lines:?}"))
        .trim();
    Probe {
        uid: lines[0].clone(),
        user: lines[1].clone(),
        gid: lines[2].clone(),
        cap_eff: u64::from_str_radix(hex, 16).expect("CapEff is hex"),
    }
}

fn has(caps: u64, bit: u32) -> bool {
    caps & (1 << bit) != 0
}

#[tokio::test]
async fn security_context_is_honoured() {
    let mut e = Env::new().await;
    let user_image = catalog::busybox()
        .user("berthuser")
        .label("berth.e2e", "user")
        .build()
        .push_tag(&e.reg, "test/busybox-user", "v1")
        .await;
    cri::pull_ok(&mut e.images, &user_image).await;
    let pod_cfg = e.pod_config("security");
    let pod = e.pod(&pod_cfg).await;

    // Defaults: root, Docker's default capabilities, no CAP_SYS_ADMIN.
    let (cfg, _) = e.container("default", PROBE);
    let (st, out, err) = e.run_to_exit(&pod, &cfg, &pod_cfg).await;
    assert_eq!(st.exit_code, 0, "{st:?} {err:?}");
    let p = probe(&out);
    assert_eq!((p.uid.as_str(), p.user.as_str()), ("0", "root"));
    assert!(has(p.cap_eff, CAP_CHOWN), "default set: {:#x}", p.cap_eff);
    assert!(
        !has(p.cap_eff, CAP_SYS_ADMIN),
        "default set lacks CAP_SYS_ADMIN: {:#x}",
        p.cap_eff
    );

    // run_as_user.
    let (mut cfg, _) = e.container("uid", PROBE);
    run_as_user(&mut cfg, 1234);
    let (st, out, err) = e.run_to_exit(&pod, &cfg, &pod_cfg).await;
    assert_eq!(st.exit_code, 0, "{st:?} {err:?}");
    assert_eq!(probe(&out).uid, "1234");

    // The image's User, by name, resolved in the image's /etc/passwd.
    let (mut cfg, _) = e.container("image-user", PROBE);
    cfg.image = cri::spec(&user_image);
    let (st, out, err) = e.run_to_exit(&pod, &cfg, &pod_cfg).await;
    assert_eq!(st.exit_code, 0, "{st:?} {err:?}");
    let p = probe(&out);
    assert_eq!(
        (p.uid.as_str(), p.user.as_str(), p.gid.as_str()),
        ("1234", "berthuser", "1234")
    );

    // A read-only root filesystem.
    let (mut cfg, _) = e.container("readonly", "echo x > /x && echo wrote");
    security(&mut cfg).readonly_rootfs = true;
    let (st, out, err) = e.run_to_exit(&pod, &cfg, &pod_cfg).await;
    assert_ne!(st.exit_code, 0, "writing /x must fail: {st:?} {out:?}");
    assert!(out.is_empty(), "{out:?}");
    assert!(
        err.iter().any(|l| l.contains("Read-only file system")),
        "stderr: {err:?}"
    );

    // add_capabilities.
    let (mut cfg, _) = e.container("add-sys-admin", PROBE);
    capabilities(&mut cfg, &["SYS_ADMIN"], &[]);
    let (st, out, err) = e.run_to_exit(&pod, &cfg, &pod_cfg).await;
    assert_eq!(st.exit_code, 0, "{st:?} {err:?}");
    let p = probe(&out);
    assert!(has(p.cap_eff, CAP_SYS_ADMIN), "{:#x}", p.cap_eff);
    assert!(has(p.cap_eff, CAP_CHOWN), "defaults kept: {:#x}", p.cap_eff);

    // drop_capabilities ALL.
    let (mut cfg, _) = e.container("drop-all", PROBE);
    capabilities(&mut cfg, &[], &["ALL"]);
    let (st, out, err) = e.run_to_exit(&pod, &cfg, &pod_cfg).await;
    assert_eq!(st.exit_code, 0, "{st:?} {err:?}");
    assert_eq!(probe(&out).cap_eff, 0, "no capabilities at all");

    // Privileged needs a privileged pod.
    let (mut cfg, _) = e.container("privileged", PROBE);
    security(&mut cfg).privileged = true;
    let err = pods::create(&mut e.rt, &pod, &cfg, &pod_cfg)
        .await
        .expect_err("a privileged container in a non-privileged pod");
    assert!(
        matches!(
            err.code(),
            Code::InvalidArgument | Code::FailedPrecondition | Code::PermissionDenied
        ),
        "{err:?}"
    );
    assert!(err.message().contains("privileged"), "{err:?}");

    let mut priv_pod_cfg = e.pod_config("security-priv");
    pod_security(&mut priv_pod_cfg).privileged = true;
    let priv_pod = e.pod(&priv_pod_cfg).await;
    let (st, out, err) = e.run_to_exit(&priv_pod, &cfg, &priv_pod_cfg).await;
    assert_eq!(st.exit_code, 0, "{st:?} {err:?}");
    let p = probe(&out);
    assert!(
        has(p.cap_eff, CAP_SYS_ADMIN),
        "privileged: {:#x}",
        p.cap_eff
    );

    e.remove_all_pods().await;
}
