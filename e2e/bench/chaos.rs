//! Chaos, long mode: 50 seeded rounds (`BERTH_CHAOS_ROUNDS`,
//! `BERTH_CHAOS_SEED`) of kill -9 of berthd during `docker run -d`, a CRI
//! life cycle or a pull, with a restart and a check after each, then a
//! sweep for leftovers; prints the rounds by operation, the violations,
//! what was listed at the end and what was left behind.
//!
//! `cargo bench --bench chaos` runs it in full; under `cargo test` (no
//! `--bench` argument) it runs 2 rounds.

#[path = "../support/mod.rs"]
mod support;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::var("BERTH_CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 50 } else { 2 });
    let seed: u64 = std::env::var("BERTH_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2025);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let c = rt.block_on(support::chaos::run(seed, rounds));
    println!("chaos, seed {seed}:\n{}", c.report());
    if !c.violations.is_empty() || !c.leftovers.is_empty() {
        eprintln!("the chaos run found problems (see above)");
        std::process::exit(1);
    }
}
