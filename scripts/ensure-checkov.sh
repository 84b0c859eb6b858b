#!/usr/bin/env bash
# Creates (once) the virtual environment that runs checkov, the security scanner the deploy
# tests run over the Helm chart, the Terraform module and the Dockerfiles.
# checkov pins many libraries (an older `packaging`, boto3, networkx, …): it is kept out of
# .venv so that its pins never move the versions Cove itself runs and is tested with.
# Prints the path of the checkov executable. Safe to run again: a finished environment is reused,
# a half-built one (no marker) is thrown away and built again.
set -euo pipefail

CHECKOV_VERSION="${COVE_CHECKOV_VERSION:-3.3.30}"
CACHE_DIR="${COVE_CACHE_DIR:-$HOME/.cache/cove}"
VENV="${COVE_CHECKOV_VENV:-$CACHE_DIR/venv-checkov-$CHECKOV_VERSION}"
PYTHON="${COVE_PYTHON:-python3}"
MARKER="$VENV/.cove-ready"

if [[ -f "$MARKER" && -x "$VENV/bin/checkov" ]]; then
  echo "$VENV/bin/checkov"
  exit 0
fi

echo "cove: building the checkov environment in $VENV (one time, under a minute)" >&2
mkdir -p "$(dirname "$VENV")"
# Built in place (venv scripts carry absolute shebangs); the marker is written last, so an
# interrupted build is never mistaken for a finished one.
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" 2>&1 \
  | grep -v '^WARNING: Location ' >&2 || true
"$VENV/bin/checkov" --version >/dev/null
touch "$MARKER"
echo "$VENV/bin/checkov"
