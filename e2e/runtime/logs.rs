//! The CRI log file a container's monitor writes:
//! `<RFC3339Nano> <stream> <P|F> <msg>` per record.

use super::Env;
use crate::support::pods::{self, parse_log, parse_rfc3339, stream_lines};

/// The longest record message CRI runtimes write (containerd, CRI-O, berth).
const MAX_RECORD: usize = 16 * 1024;
/// The long line: more than two records' worth.
const LONG: usize = 40_000;

#[tokio::test]
async fn log_file_has_streams_partial_records_and_tail() {
    let mut e = Env::new().await;
    let pod_cfg = e.pod_config("logs");
    let pod = e.pod(&pod_cfg).await;
    let script = format!(
        "echo out-one; echo err-one >&2; echo 'out two  spaced'; \
         head -c {LONG} /dev/zero | tr '\\0' a; echo; \
         echo; echo err-two >&2; printf 'out-tail-no-newline'"
    );
    let (cfg, _) = e.container("logger", &script);
    let id = e.run(&pod, &cfg, &pod_cfg).await;
    let st = pods::wait_exited(&mut e.rt, &id).await;
    assert_eq!(st.exit_code, 0, "{st:?}");
    let path = std::path::Path::new(&pod_cfg.log_directory).join(&cfg.log_path);
    assert_eq!(
        st.log_path,
        path.display().to_string(),
        "ContainerStatus.log_path is <pod log_directory>/<container log_path>"
    );

    let text = e.log_text(&pod_cfg, &cfg);
    let recs = parse_log(&text);

    // The tail the container ended without a newline is a partial record,
    // last (as containerd and CRI-O write it): no newline is invented.
    let last = recs
        .iter()
        .rposition(|r| r.stream == "stdout")
        .expect("stdout records");
    assert!(
        recs[last].partial && recs[last].msg == "out-tail-no-newline",
        "the tail without a newline: {:?}",
        recs[last]
    );
    let mut recs = recs;
    recs[last].partial = false;
    let out = stream_lines(&recs, "stdout");
    let long = "a".repeat(LONG);
    assert_eq!(
        out,
        vec![
            "out-one".to_string(),
            "out two  spaced".to_string(),
            long,
            String::new(),
            "out-tail-no-newline".to_string(),
        ],
        "stdout lines"
    );
    assert_eq!(stream_lines(&recs, "stderr"), vec!["err-one", "err-two"]);

    // The long line: partial records, then one final record.
    let stdout: Vec<_> = recs.iter().filter(|r| r.stream == "stdout").collect();
    let first_a = stdout
        .iter()
        .position(|r| r.msg.starts_with('a'))
        .expect("the long line is logged");
    let end = first_a
        + stdout[first_a..]
            .iter()
            .position(|r| !r.partial)
            .expect("the long line ends with an F record");
    assert!(
        end - first_a >= 2,
        "{LONG} bytes need at least two P records before the F record, got {}",
        end - first_a
    );
    for r in &stdout[first_a..=end] {
        assert!(
            !r.msg.is_empty() && r.msg.len() <= MAX_RECORD,
            "record of {} bytes",
            r.msg.len()
        );
    }
    // Everything else is one full record per line.
    for r in recs.iter().filter(|r| !r.msg.starts_with('a')) {
        assert!(!r.partial, "short line logged as partial: {r:?}");
    }
    let tail = stdout.last().expect("stdout records");
    assert_eq!(tail.msg, "out-tail-no-newline");
    assert!(!tail.partial, "a tail without newline is written as F");

    // Records come after the container was created and before it finished.
    for r in &recs {
        assert!(
            r.time >= st.created_at && r.time <= st.finished_at,
            "record time {} outside [{}, {}]: {r:?}",
            r.time,
            st.created_at,
            st.finished_at
        );
    }
    e.remove_all_pods().await;
}

#[test]
fn log_parser_self_check() {
    assert_eq!(
        parse_rfc3339("2023-11-14T22:13:20.000000005Z"),
        Some(1_700_000_000_000_000_005)
    );
    assert_eq!(
        parse_rfc3339("2000-02-29T01:00:00.5+01:00"),
        Some(951_782_400_500_000_000)
    );
    assert_eq!(parse_rfc3339("2000-02-29 01:00:00Z"), None);
    let recs = parse_log(
        "2023-11-14T22:13:20.1Z stdout P ab\n\
         2023-11-14T22:13:20.2Z stderr F e\n\
         2023-11-14T22:13:20.3Z stdout F c d\n\
         2023-11-14T22:13:20.4Z stdout F \n",
    );
    assert_eq!(stream_lines(&recs, "stdout"), vec!["abc d", ""]);
    assert_eq!(stream_lines(&recs, "stderr"), vec!["e"]);
}

/// Log rotation as the kubelet does it: rename the file, call
/// ReopenContainerLog; the new file exists when the call returns and the
/// container's further output lands there, not in the renamed file.
#[tokio::test]
async fn reopen_container_log_moves_output_to_a_new_file() {
    let mut e = Env::new().await;
    let pod_cfg = e.pod_config("rotate");
    let pod = e.pod(&pod_cfg).await;
    let (cfg, _) = e.container(
        "ticker",
        "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.05; done",
    );
    let id = e.run(&pod, &cfg, &pod_cfg).await;
    let path = std::path::Path::new(&pod_cfg.log_directory).join(&cfg.log_path);
    let rotated = path.with_extension("log.1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&path)
        .unwrap_or_default()
        .contains("tick-3\n")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no output in {}",
            path.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    std::fs::rename(&path, &rotated).unwrap();
    e.rt.reopen_container_log(k8s_cri::v1::ReopenContainerLogRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap_or_else(|s| panic!("ReopenContainerLog: {s:?}\n{}", e.log_tail()));
    assert!(
        path.exists(),
        "the new log file exists when ReopenContainerLog returns"
    );
    let last_old = |text: &str| -> u64 {
        stream_lines(&parse_log(text), "stdout")
            .iter()
            .filter_map(|l| l.strip_prefix("tick-")?.parse().ok())
            .max()
            .unwrap_or(0)
    };
    let old_max = last_old(&std::fs::read_to_string(&rotated).unwrap());
    while last_old(&std::fs::read_to_string(&path).unwrap()) < old_max + 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "no output in the new file"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        last_old(&std::fs::read_to_string(&rotated).unwrap()),
        old_max,
        "the renamed file gets nothing after the reopen"
    );
    // Both files hold whole records only.
    for p in [&path, &rotated] {
        let text = std::fs::read_to_string(p).unwrap();
        assert_eq!(
            parse_log(&text).len(),
            text.lines().count(),
            "{}",
            p.display()
        );
    }
    let _ = pods::stop(&mut e.rt, &id, 0).await;
    e.remove_all_pods().await;
}
