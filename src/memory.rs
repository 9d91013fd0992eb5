//! Giving freed heap memory back to the system.
//!
//! glibc returns freed memory to the kernel only from the top of the main
//! heap (past `M_TRIM_THRESHOLD`); pages freed in the middle of a heap, or
//! in the second arena, stay resident. berthd frees most of what start-up
//! allocates (config, recovery, the routers' builders) and what a burst of
//! pods allocated, then idles: `malloc_trim(0)` hands those pages back
//! (`MADV_DONTNEED` on free chunks of every arena), once start-up is done,
//! every [`TRIM_INTERVAL`] and after each image pull. Measured on the idle
//! daemon: 1.4 MiB of its heap (docs/benchmarks.md).
#![allow(unsafe_code)]

use std::time::Duration;

/// How often the daemon trims while it runs: cheap (a walk of the free
/// lists), and only pages that are free are given back.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(30);

/// Returns free heap pages of every malloc arena to the kernel; true if
/// any memory was released.
pub fn release_free_memory() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim only inspects and madvises malloc's own free
        // chunks under the arenas' locks; it takes no pointer from us.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// Trims now and then every [`TRIM_INTERVAL`], for as long as the task
/// runs (the daemon aborts it at shutdown); each trim on a blocking thread,
/// as a large heap takes a moment to walk.
pub async fn trim_periodically() {
    let mut tick = tokio::time::interval(TRIM_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
    }
}
