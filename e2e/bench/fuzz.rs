//! The request fuzzer's long mode: a seeded campaign of 20 000 requests
//! (14 000 Docker, 6 000 CRI, plus 2 000 hostile SPDY/WebSocket streaming
//! sessions; `BERTH_FUZZ_REQUESTS` and `BERTH_FUZZ_SEED`
//! change them) against a fresh berthd, printing the answers by status
//! class, the server faults (5xx other than 501, gRPC Internal/Unknown),
//! panics, berthd's RSS and fd count before and after, what the requests
//! made and what was left behind after everything listed was removed.
//!
//! `cargo bench --bench fuzz` runs it in full. Under `cargo test` (no
//! `--bench` argument) it runs 300 requests to check the plumbing.

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let total: usize = std::env::var("BERTH_FUZZ_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 20_000 } else { 300 });
    let seed: u64 = std::env::var("BERTH_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_251);
    let docker = total * 7 / 10;
    // Hostile streaming sessions on top: a tenth as many as requests.
    let streams = total / 10;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Bounded in time as well as in count (a fifth of a second per request).
    let limit = Duration::from_secs((total as u64 / 5).max(300));
    let c = rt.block_on(support::fuzz::campaign(
        seed,
        docker,
        total - docker,
        streams,
        limit,
    ));
    println!("fuzz campaign, seed {seed}:\n{}", c.report());
    let clean = c.alive && c.panics == 0 && c.tally.fault_count == 0 && c.leftovers.is_empty();
    if !clean {
        eprintln!("the campaign found problems (see above)");
        std::process::exit(1);
    }
}
