//! The real Go client: crictl v1.26.1 (`/usr/local/bin/crictl`), which
//! streams over SPDY only (it has no `--transport websocket` yet).

use std::io::Write;
use std::process::{Command, Stdio};

use super::target;
use crate::runtime::Env;

const CRICTL: &str = "/usr/local/bin/crictl";

/// Runs crictl against `e`'s daemon with `stdin`; returns (exit code, stdout, stderr).
fn crictl(e: &Env, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let endpoint = format!("unix://{}", e.d.socket().display());
    let mut child = Command::new(CRICTL)
        .args(["--runtime-endpoint", &endpoint, "--timeout", "30s"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run crictl");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn crictl_exec_over_spdy() {
    if !std::path::Path::new(CRICTL).exists() {
        eprintln!("skipped: no {CRICTL}");
        return;
    }
    let mut e = Env::new().await;
    let (_pod, id) = target(&mut e, "crictl-exec", "exec sleep 1000").await;
    let (code, out, err) = crictl(&e, &["exec", &id, "echo", "hi"], b"");
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{err}");
    // crictl 1.26 reports the code from the Status and exits 1 itself.
    let (code, _, err) = crictl(&e, &["exec", &id, "sh", "-c", "exit 3"], b"");
    assert!(code != 0 && err.contains("exit code 3"), "{code} {err}");
    let (code, out, err) = crictl(&e, &["exec", "-i", &id, "cat"], b"from crictl\n");
    assert_eq!((code, out.as_str()), (0, "from crictl\n"), "{err}");
    e.remove_all_pods().await;
}
