#!/usr/bin/env bash
# Run the berth chart's tests with Helm's real engine (helm-python-sdk binds
# Helm's Go SDK, v4.2.3; no helm binary is needed).
#
#   bash charts/berth/tests/run.sh [pytest args...]
#
# The virtualenv is created once under ${TMPDIR:-/tmp}/berth-helm-venv and
# reused; the pinned versions below are the ones the tests were written against.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${TMPDIR:-/tmp}/berth-helm-venv"
requirements=(
  "helm-python-sdk==0.2.2"
  "pytest==9.2.0"
  "pyyaml==6.0.3"
)

if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
# pip is a no-op when the pins are already installed.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"

export PYTHONDONTWRITEBYTECODE=1
# -p no:cacheprovider: keep .pytest_cache out of the chart directory.
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider -rs "$here" "$@"
