#!/usr/bin/env bash
# Installs what Cove needs on a Debian/Ubuntu machine, once: system packages (PostgreSQL,
# Redis) when missing, the project's virtual environment (.venv) and the vLLM environment.
# Safe to run again: each step checks first and does nothing when its work is done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${COVE_PYTHON:-python3}"
VENV=".venv"
STAMP="$VENV/.cove-installed"

say() { printf 'cove: %s\n' "$*" >&2; }

need_pkg=()
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || [[ -n "${COVE_DATABASE_URL:-}" ]] || need_pkg+=(postgresql)
command -v redis-server >/dev/null 2>&1 || [[ -n "${COVE_REDIS_URL:-}" ]] || need_pkg+=(redis-server)
if ((${#need_pkg[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    say "installing ${need_pkg[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkg[@]}" >&2
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    say "installing ${need_pkg[*]} with sudo apt-get"
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkg[@]}" >&2
  else
    say "missing system packages: ${need_pkg[*]}"
    say "run: sudo apt-get install -y ${need_pkg[*]}   (or set COVE_DATABASE_URL / COVE_REDIS_URL)"
    exit 2
  fi
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [[ ! -f "$STAMP" || pyproject.toml -nt "$STAMP" ]]; then
  say "installing Cove and its development tools into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2
  # torch first, pinned, so nothing can pull a multi-GB CUDA build in its place.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==2.13.0" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -e ".[dev]" >&2
  touch "$STAMP"
fi

scripts/ensure-vllm.sh >/dev/null

# The admin console (React); skipped with a message when Node 20.19+ is not available.
web/scripts/ensure-built.sh
