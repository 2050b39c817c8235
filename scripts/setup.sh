#!/usr/bin/env bash
# Set up everything this checkout needs on Debian 12 / Python >= 3.11, idempotently:
#   scripts/setup.sh demo   the demo: a virtual environment with pinned packages (no root needed)
#   scripts/setup.sh test   the tests: the above plus apt packages the integration tests talk to (mosquitto,
#                           dbus) and the D-Bus client/server packages (PyGObject builds from source: its headers)
# Re-running is fast: pip runs only when requirements/*.txt or a pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
purpose=${1:-demo}
PY=${PYTHON:-python3}
VENV=${EDGEOFFLOAD_VENV:-.venv}

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root to install: ${missing[*]}" >&2; exit 2; }
    sudo="sudo"
  fi
  echo "setup: apt-get install ${missing[*]}" >&2
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "setup: Python >= 3.11 required ($PY)" >&2; exit 2; }
if [ "$purpose" = test ]; then
  apt_install mosquitto mosquitto-clients dbus libgirepository1.0-dev libcairo2-dev pkg-config gcc
  daemon_pkg="daemon[dbus]"
else
  daemon_pkg="daemon"
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; "$PY" -m venv "$VENV"; }
fi
stamp="$VENV/.edgeoffload-setup"
want=$(cat requirements/*.txt daemon/pyproject.toml host_tools/pyproject.toml | sha256sum | cut -c1-16)
have=$(cat "$stamp" 2>/dev/null || true)
# a test set-up is a superset of the demo's: it satisfies both
if [ "$have" != "$want test" ] && { [ "$purpose" = test ] || [ "$have" != "$want demo" ]; }; then
  echo "setup: installing pinned packages into $VENV (TensorFlow is large: about a minute)" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c requirements/constraints.txt \
    -r requirements/dev.txt -e "$daemon_pkg" -e "host_tools[build,demo,joulescope]"
  echo "$want $purpose" > "$stamp"
fi
