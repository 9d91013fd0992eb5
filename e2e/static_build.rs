//! The binaries a node runs are linked statically against glibc
//! (`config/build.sh`: crt-static). `e2e/test.sh` relinks this build's
//! berthd and berth-monitor the same way into `target/static/`
//! (`e2e/static-build.sh`); this test checks that they are static and runs
//! containers through both doors with them: monitors and a pod's infra as
//! the static berth-monitor, and an image pulled by a host name (`localhost`),
//! which a static glibc resolves with its built-in `files` source.

use std::path::{Path, PathBuf};

use k8s_cri::v1::ContainerState;

use crate::support::docker::DockerEnv;
use crate::support::pods;

fn static_berthd() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/static/berthd");
    assert!(
        bin.exists() && bin.with_file_name("berth-monitor").exists(),
        "{} or its berth-monitor is missing: run e2e/static-build.sh (e2e/test.sh does)",
        bin.display()
    );
    bin
}

/// Whether an ELF64 file has a PT_INTERP program header (a dynamic loader).
fn has_interpreter(path: &Path) -> bool {
    let bytes = std::fs::read(path).expect("read binary");
    assert_eq!(&bytes[..4], b"\x7fELF", "{} is not ELF", path.display());
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (entsize, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * entsize;
        u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) == 3
    })
}

/// The executables of this daemon's monitor processes (`… monitor
/// <state>/…`), read from /proc.
fn monitor_executables(state: &Path) -> Vec<PathBuf> {
    let state = state.display().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.len() >= 3 && args[1] == b"monitor" && args[2].starts_with(state.as_bytes()) {
            if let Ok(exe) = std::fs::read_link(entry.path().join("exe")) {
                out.push(exe);
            }
        }
    }
    out
}

#[tokio::test]
async fn statically_linked_berthd_and_monitor_run_containers_and_pods() {
    let berthd = static_berthd();
    let monitor = berthd.with_file_name("berth-monitor");
    for bin in [&berthd, &monitor] {
        assert!(
            !has_interpreter(bin),
            "{} has a dynamic loader: not linked statically",
            bin.display()
        );
    }
    let e = DockerEnv::with_binary(&berthd, "").await;

    // A pull by host name: resolved by the static glibc (files source).
    let by_name = e.busybox.replacen("127.0.0.1", "localhost", 1);
    assert_ne!(by_name, e.busybox, "the test registry is on 127.0.0.1");
    e.docker(&["pull", &by_name]).ok();

    e.docker(&["run", "-d", "--name", "sleeper", &by_name, "sleep", "1000"])
        .ok();
    let exes = monitor_executables(&e.d.state());
    assert!(!exes.is_empty(), "no monitor process of this daemon found");
    let expected = std::fs::canonicalize(&monitor).expect("canonical monitor path");
    for exe in &exes {
        assert_eq!(exe, &expected, "a monitor runs another binary");
    }
    let out = e
        .docker(&["run", "--rm", &by_name, "echo", "hi from a static monitor"])
        .ok()
        .out()
        .to_string();
    assert_eq!(out, "hi from a static monitor");

    // CRI: a pod with a shared PID namespace (its infra is `berth-monitor
    // pause`) and a container whose log the static monitor writes.
    let mut rt = e.d.runtime_client().await;
    let logs = tempfile::tempdir().expect("log dir");
    let pod_cfg = pods::pod_config("static", logs.path());
    let pod = pods::run_pod(&mut rt, &pod_cfg).await;
    let cfg = pods::container_config("hello", &by_name, "echo static hello", "static");
    let id = pods::run(&mut rt, &pod, &cfg, &pod_cfg).await;
    let st = pods::wait_state(&mut rt, &id, ContainerState::ContainerExited).await;
    assert_eq!(st.exit_code, 0, "{st:?}");
    let text = std::fs::read_to_string(logs.path().join(&st.log_path)).expect("read log");
    let records = pods::parse_log(&text);
    assert_eq!(
        pods::stream_lines(&records, "stdout"),
        vec!["static hello".to_string()]
    );
    pods::stop_pod(&mut rt, &pod).await.expect("stop pod");
    pods::remove_pod(&mut rt, &pod).await.expect("remove pod");
    e.docker(&["rm", "-f", "sleeper"]).ok();
    assert!(
        !e.d.log().contains("panicked"),
        "the daemon log says panicked"
    );
}
