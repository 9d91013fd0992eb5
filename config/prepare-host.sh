#!/usr/bin/env bash
# Prepares a Debian 12 host for berthd, as root; safe to run again.
#
#   1. the packages berthd runs with (OCI runtimes, CNI plugins, iptables, tini for --init);
#      --no-install skips this step;
#   2. a cgroup layout the OCI runtimes accept: on a v1/hybrid host (tmpfs at
#      /sys/fs/cgroup) every enabled controller that has a v2 interface but no
#      v1 mount would sit on the v2 side, and crun and runc then refuse every
#      container with a cgroup path; each such controller is mounted as its own
#      v1 hierarchy (on these machines: hugetlb).
#
# The pod network needs nothing here: while /etc/cni/net.d has no config,
# berthd uses its built-in one (cni.builtin_network).
set -euo pipefail

install=1
for arg in "$@"; do
    case "$arg" in
    --no-install) install=0 ;;
    *)
        echo "usage: $0 [--no-install]" >&2
        exit 2
        ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    echo "prepare-host.sh: must run as root" >&2
    exit 1
fi

log() { echo "prepare-host: $*" >&2; }

if [ "$install" = 1 ]; then
    need=()
    for pkg in crun runc containernetworking-plugins iptables tini; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            need+=("$pkg")
    done
    if [ ${#need[@]} -gt 0 ]; then
        log "installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
fi

# Controllers that appear on the v2 side when no v1 hierarchy holds them.
v2_capable=" cpuset cpu blkio memory hugetlb pids rdma misc "
if [ "$(stat -fc %T /sys/fs/cgroup)" = tmpfs ] && [ -r /proc/cgroups ]; then
    while read -r name _hierarchy _count enabled; do
        case "$name" in '#'*) continue ;; esac
        [ "$enabled" = 1 ] || continue
        case "$v2_capable" in *" $name "*) ;; *) continue ;; esac
        if awk -v c="$name" '$3 == "cgroup" { n = split($4, o, ","); for (i = 1; i <= n; i++) if (o[i] == c) found = 1 }
            END { exit !found }' /proc/mounts; then
            continue
        fi
        log "mounting the $name cgroup controller as a v1 hierarchy at /sys/fs/cgroup/$name"
        mkdir -p "/sys/fs/cgroup/$name"
        if ! mount -t cgroup -o "$name" cgroup "/sys/fs/cgroup/$name"; then
            log "could not mount $name as cgroup v1; berthd's Status will say why containers cannot run"
        fi
    done </proc/cgroups
fi
