//! CRI ImageService end to end: pulls from a loopback registry into a real
//! berthd, checked through the CRI API and on the daemon's filesystem.

mod crash;
mod full_disk;
mod hostile;
mod layers;
mod pull;
mod registries;
mod remove;

use std::path::Path;

use crate::support::cri::ImageClient;
use crate::support::daemon::Berthd;
use crate::support::registry::TestRegistry;

/// A registry, a daemon allowed to reach it over plain HTTP, and a client.
pub struct Env {
    pub reg: TestRegistry,
    pub d: Berthd,
    pub c: ImageClient,
}

impl Env {
    pub async fn new() -> Env {
        let reg = TestRegistry::start().await;
        let d = Berthd::start(&reg.insecure_yaml()).await;
        let c = d.image_client().await;
        Env { reg, d, c }
    }
}

/// Every path under `dir` whose file name is `name` (symlinks not followed).
pub fn find_named(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in rd.filter_map(Result::ok) {
            let path = entry.path();
            if entry.file_name() == name {
                found.push(path.clone());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    found
}

/// Whether any snapshot under the daemon's root has `rel` in its `fs/`.
pub fn any_snapshot_has(d: &Berthd, rel: &str) -> bool {
    d.snapshot_entries().iter().any(|s| {
        d.root()
            .join("snapshots")
            .join(s)
            .join("fs")
            .join(rel)
            .exists()
    })
}
