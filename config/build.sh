#!/usr/bin/env bash
# Builds what a node runs into target/dist/ (or $CARGO_TARGET_DIR/dist/):
# berthd and berth-monitor in the dist profile (release with fat LTO, one
# codegen unit and opt-level "s": a third less code than --release, and
# berthd's idle RSS 12.4 instead of 21 MiB; see Cargo.toml), both linked
# statically against glibc (crt-static).
#
# Static, a process maps only the libc code it calls instead of touching
# pages all over libc.so, libm.so and ld.so: berth-monitor (one per container
# and per pod infra) goes from 2.5 to 1.8 MiB RSS, berthd from 23.2 to
# 21.4 MiB (release; docs/benchmarks.md), and a re-exec (`berthd ns-pin`)
# skips the dynamic loader. Neither binary looks up users or groups through
# NSS; host names (registries) resolve through glibc's built-in files and dns
# sources as before. The flag goes to the binary's own crate only (`cargo
# rustc`): crt-static takes effect at the final link, so the dependencies
# are built once for both.
set -euo pipefail
cd "$(dirname "$0")/.."
for bin in berthd berth-monitor; do
  cargo rustc --profile dist --locked --bin "$bin" -- -C target-feature=+crt-static
done
