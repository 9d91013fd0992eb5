#!/usr/bin/env bash
# Sets up a Debian 12 host and runs berthd in the foreground with its embedded
# defaults (or with the config file given as $1). Run as root.
#
# config/prepare-host.sh installs the OCI runtimes, CNI plugins and iptables
# and fixes a cgroup layout crun/runc would refuse; berthd brings its own pod
# network while /etc/cni/net.d is empty. The node then runs pods (CRI socket
# /run/berth/berth.sock) and Docker containers (/run/berth/docker.sock).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "run.sh: berthd must run as root" >&2
  exit 1
fi
config/prepare-host.sh
need=()
for pkg in protobuf-compiler build-essential pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if ! command -v cargo >/dev/null; then
  echo "run.sh: installing the Rust toolchain (rustup, stable, minimal)" >&2
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  . "$HOME/.cargo/env"
fi
# The dist profile (fat LTO) and a static monitor: config/build.sh.
config/build.sh
if [ $# -ge 1 ]; then
  exec target/dist/berthd --config "$1"
fi
exec target/dist/berthd
