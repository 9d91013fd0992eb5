#!/usr/bin/env bash
# Sets up a Debian 12 host and runs berthd in the foreground with its embedded
# defaults (or with the config file given as $1). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "run.sh: berthd must run as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in crun runc containernetworking-plugins iptables protobuf-compiler; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
fi
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --locked --bin berthd
if [ $# -ge 1 ]; then
  exec target/release/berthd --config "$1"
fi
exec target/release/berthd
