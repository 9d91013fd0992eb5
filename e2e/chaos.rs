//! Chaos in CI: a few seeded rounds of kill -9 of berthd in the middle of
//! `docker run -d`, a CRI life cycle or a pull, each followed by a restart
//! and a check of what is listed; at the end everything listed is removed
//! and nothing may be left on the host. The long mode is `cargo bench
//! --bench chaos`.

use crate::support::chaos;

#[tokio::test]
async fn kill_9_at_random_moments_leaves_true_states_and_nothing_behind() {
    let c = chaos::run(2025, 9).await;
    let report = c.report();
    println!("{report}");
    assert_eq!(c.rounds, 9, "{report}");
    assert!(c.violations.is_empty(), "{report}");
    assert!(c.leftovers.is_empty(), "{report}");
}
