#!/usr/bin/env bash
# Builds berthd and berth-monitor of the previous release — the commit named
# in e2e/prev-release — into target/prev-release/debug, for the upgrade test
# (e2e/upgrade.rs). The source comes out of this repository's own history
# (git archive), and the build starts from a copy of this build's third-party
# artifacts in target/debug, so only berth itself is compiled.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

commit=$(tr -d '[:space:]' < e2e/prev-release)
out=target/prev-release
stamp="$out/built-from"
if [ -x "$out/debug/berthd" ] && [ -x "$out/debug/berth-monitor" ] &&
    [ "$(cat "$stamp" 2>/dev/null)" = "$commit" ]; then
    echo "previous release $commit: already built in $out/debug"
    exit 0
fi
if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
    # A shallow clone: deepen it from where it was cloned (a local path or
    # a mirror; nothing else is reached), then look again.
    if [ "$(git rev-parse --is-shallow-repository 2>/dev/null)" = true ]; then
        echo "e2e/prev-release.sh: shallow clone, fetching the history for $commit" >&2
        git fetch --quiet --unshallow 2>/dev/null || git fetch --quiet origin "$commit" 2>/dev/null || true
    fi
fi
if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
    echo "e2e/prev-release.sh: commit $commit is not in this repository's history (a shallow clone?)" >&2
    exit 1
fi
rm -rf "$out/src"
mkdir -p "$out/src" "$out/debug"
git archive "$commit" | tar -x -C "$out/src"
# Seed the build with this build's third-party artifacts (berth's own are
# left out: they are rebuilt from the old source).
if [ -d target/debug/deps ] && [ ! -d "$out/debug/deps" ]; then
    for d in .fingerprint build deps; do
        [ -d "target/debug/$d" ] || continue
        mkdir -p "$out/debug/$d"
        find "target/debug/$d" -mindepth 1 -maxdepth 1 ! -name 'berth*' ! -name 'libberth*' \
            ! -name 'e2e-*' -print0 | xargs -0 -r cp -a -t "$out/debug/$d"
    done
fi
CARGO_INCREMENTAL=0 cargo build --locked --manifest-path "$out/src/Cargo.toml" \
    --target-dir "$out" --bin berthd --bin berth-monitor
echo "$commit" > "$stamp"
echo "previous release $commit built in $out/debug"
