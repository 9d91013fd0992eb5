#!/usr/bin/env bash
# Links this build's berthd and berth-monitor (debug profile) statically
# against glibc, as config/build.sh does for what a node runs, into
# target/static/, for e2e/static_build.rs. Only the two binaries are
# relinked (crt-static acts at the final link); target/debug keeps the
# dynamically linked ones that the other tests run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p target/static
for bin in berthd berth-monitor; do
    cargo rustc --locked --bin "$bin" -- -C target-feature=+crt-static
    cp target/debug/"$bin" target/static/"$bin".new
    mv target/static/"$bin".new target/static/"$bin"
done
# Put the dynamically linked ones back in target/debug (already built: a copy).
cargo build --locked --bin berthd --bin berth-monitor
echo "static berthd and berth-monitor in target/static"
