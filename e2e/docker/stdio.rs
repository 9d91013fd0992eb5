//! Every byte through `docker run -i` and `docker exec -i`, many times: the
//! hijacked stdin/stdout path must lose nothing and never panic (the attach
//! relay once polled a finished oneshot and panicked a worker on ordinary
//! `docker run -i` use).

use std::io::Write;
use std::process::Stdio;

use sha2::{Digest, Sha256};

use crate::support::docker::DockerEnv;
use crate::support::layers::pseudo_random;

const ROUNDS: usize = 20;
const SIZE: usize = 1 << 20;

/// Runs the CLI with `input` written from another thread (the output is
/// read at the same time, so neither pipe fills), returning (exit code,
/// stdout bytes, stderr).
fn pipe_through(e: &DockerEnv, args: &[&str], input: &[u8]) -> (i32, Vec<u8>, String) {
    let mut c = e.command(args);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn docker");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        // A container that ends early closes the pipe: not this test's failure.
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait docker");
    writer.join().expect("stdin writer");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn digest(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[tokio::test]
async fn a_megabyte_through_run_i_and_exec_i_twenty_times() {
    let e = DockerEnv::new("").await;
    e.docker(&["run", "-d", "--name", "sink", &e.busybox, "sleep", "3600"])
        .ok();
    for round in 0..ROUNDS {
        let input = pseudo_random(round as u64 + 1, SIZE);
        let want = digest(&input);
        let (code, out, err) = pipe_through(&e, &["run", "-i", "--rm", &e.busybox, "cat"], &input);
        assert_eq!(code, 0, "round {round}: docker run -i failed: {err}");
        assert_eq!(
            (out.len(), digest(&out)),
            (SIZE, want.clone()),
            "round {round}: docker run -i cat gave other bytes"
        );
        let (code, out, err) = pipe_through(&e, &["exec", "-i", "sink", "cat"], &input);
        assert_eq!(code, 0, "round {round}: docker exec -i failed: {err}");
        assert_eq!(
            (out.len(), digest(&out)),
            (SIZE, want),
            "round {round}: docker exec -i cat gave other bytes"
        );
    }
    let log = e.d.log();
    assert!(!log.contains("panicked"), "berthd panicked:\n{log}");
    e.docker(&["rm", "-f", "sink"]).ok();
    let ps = e.docker(&["ps", "-aq"]).ok();
    assert_eq!(ps.out(), "", "{ps:?}");
}
