//! The request fuzzer's short seeded run (the long one is `cargo bench
//! --bench fuzz`): every Docker route and every CRI RPC with hostile input
//! must get the caller's error — never a 5xx or `Internal` — while the
//! daemon stays up, gives back its memory and descriptors, and leaves
//! nothing behind once everything listed is removed.

use std::time::Duration;

use crate::support::fuzz;

#[tokio::test]
async fn seeded_requests_get_caller_errors_and_leave_nothing() {
    let c = fuzz::campaign(15, 700, 300, 120, Duration::from_secs(240)).await;
    let report = c.report();
    println!("{report}");
    assert!(c.alive, "the daemon did not survive:\n{report}");
    assert_eq!(c.panics, 0, "{report}");
    assert_eq!(
        c.tally.fault_count, 0,
        "server faults for bad input:\n{report}"
    );
    assert!(c.leftovers.is_empty(), "left behind:\n{report}");
    // Descriptors come back (a few for pooled connections and watchers);
    // memory stays within a bound far below a leak per request.
    assert!(c.fds_after <= c.fds_before + 16, "{report}");
    assert!(c.rss_after_kib <= c.rss_before_kib + 96 * 1024, "{report}");
    assert!(c.tally.requests >= 500, "{report}");
}
