#!/bin/sh
# Entrypoint of the berth node-agent image (config/Containerfile).
#
# 1. Unless BERTH_INSTALL_CNI_PLUGINS=false, copy every CNI plugin the image
#    ships (CNI_PLUGIN_SRC, default /usr/lib/cni, Debian's
#    containernetworking-plugins) into the host's plugin directory
#    (CNI_BIN_DIR, default /opt/cni/bin, a hostPath mount in the Helm chart),
#    but only plugins the host does not have yet: a node's own plugins are
#    never overwritten. Each copy lands under a temporary name and is renamed
#    into place, so nothing ever sees a half-written binary.
# 2. exec berthd with the container's arguments (the chart passes
#    `--config /etc/berth/berth.yaml`), so berthd receives the signals.
set -eu

BERTHD=${BERTHD:-/usr/local/bin/berthd}
src=${CNI_PLUGIN_SRC:-/usr/lib/cni}
dst=${CNI_BIN_DIR:-/opt/cni/bin}

log() { echo "node-agent-entrypoint: $*" >&2; }

case "${BERTH_INSTALL_CNI_PLUGINS:-true}" in
  true|1|yes)
    if [ ! -d "$src" ]; then
      log "no CNI plugins in $src; skipping the install into $dst"
    else
      mkdir -p "$dst"
      installed=0
      for plugin in "$src"/*; do
        [ -f "$plugin" ] && [ -x "$plugin" ] || continue
        name=${plugin##*/}
        if [ -e "$dst/$name" ] || [ -L "$dst/$name" ]; then
          continue
        fi
        tmp="$dst/.$name.berth-install.$$"
        cp "$plugin" "$tmp"
        chmod 0755 "$tmp"
        mv -f "$tmp" "$dst/$name"
        installed=$((installed + 1))
      done
      log "installed $installed CNI plugin(s) from $src into $dst"
    fi
    ;;
  false|0|no) ;;
  *)
    log "BERTH_INSTALL_CNI_PLUGINS must be true or false, not '${BERTH_INSTALL_CNI_PLUGINS}'"
    exit 2
    ;;
esac

exec "$BERTHD" "$@"
