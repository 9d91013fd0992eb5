#!/usr/bin/env bash
# The one command that sets up a fresh Debian 12 machine and runs berth's
# whole test suite, as root:
#   format, lint, unit + end-to-end tests (+ the benchmark's smoke run),
#   then the Helm chart tests when present.
# Every step runs even if an earlier one failed; the exit status is non-zero
# if any failed, and the failed steps are listed at the end.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" != 0 ]; then
    echo "e2e/test.sh: must run as root (the end-to-end tests mount, unpack as other owners and set xattrs)" >&2
    exit 1
fi

log() { printf '\n==> %s\n' "$*"; }

# --- packages -------------------------------------------------------------
packages=(
    crun runc containernetworking-plugins iptables busybox-static docker-registry
    skopeo protobuf-compiler zstd apache2-utils tar prometheus
    build-essential pkg-config ca-certificates curl openssl bsdutils procps tini docker-compose
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

# The Docker API tests drive the docker CLI at /usr/local/bin/docker, which
# these machines provide (Debian 12 packages the CLI only together with a
# Docker daemon, which must not run beside berthd's tests).
if [ ! -x /usr/local/bin/docker ]; then
    echo "e2e/test.sh: the Docker API tests need the docker CLI at /usr/local/bin/docker" >&2
    exit 1
fi

# The Docker SDK for Python (what docker-py users run), from PyPI into a venv
# under the build dir; the e2e tests find it at target/e2e-venv.
if ! target/e2e-venv/bin/python -c 'import docker' 2>/dev/null; then
    log "installing the Docker SDK for Python into target/e2e-venv"
    dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q 'install ok installed' ||
        apt-get install -y --no-install-recommends python3-venv
    python3 -m venv target/e2e-venv &&
        target/e2e-venv/bin/pip install --quiet 'docker==7.1.0' ||
        echo "warning: the Docker SDK for Python could not be installed; its tests will fail" >&2
fi

# --- Rust toolchain --------------------------------------------------------
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null; then
    log "installing rustup (stable, minimal + rustfmt + clippy)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y --profile minimal -c rustfmt -c clippy
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done
cargo --version

# --- host -----------------------------------------------------------------
# The cgroup fix-up berthd's own set-up does (config/run.sh): on a hybrid host
# hugetlb may sit on the v2 side, and crun/runc then refuse every container.
log "preparing the host (config/prepare-host.sh)"
config/prepare-host.sh --no-install ||
    echo "warning: host preparation failed; container tests may fail" >&2

# --- checks ----------------------------------------------------------------
failed=()
step() {
    log "$*"
    if ! "$@"; then
        failed+=("$*")
    fi
}

step cargo fmt --check
step cargo clippy --all-targets -- -D warnings
# The upgrade test (e2e/upgrade.rs) replaces a berthd of the previous
# release: build that one first, from this build's third-party artifacts.
step cargo test --all-targets --no-run
step bash e2e/prev-release.sh
step bash e2e/static-build.sh
step cargo test --all-targets
if [ -f charts/berth/tests/run.sh ]; then
    step bash charts/berth/tests/run.sh
fi

if [ ${#failed[@]} -gt 0 ]; then
    printf '\nFAILED steps:\n' >&2
    printf '  %s\n' "${failed[@]}" >&2
    exit 1
fi
printf '\nall steps passed\n'
