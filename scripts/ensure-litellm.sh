#!/usr/bin/env bash
# Creates (once) the virtual environment that runs LiteLLM's proxy for `cove bench gateway`.
# LiteLLM is only a peer to measure against: it lives in the user cache, outside the checkout
# and outside the project venv, so its many pins never meet ours.
# Newer releases need a certifi the package registry here does not have, hence the pin.
set -euo pipefail

LITELLM_VERSION="${COVE_LITELLM_VERSION:-1.100.5}"
CACHE_DIR="${COVE_CACHE_DIR:-$HOME/.cache/cove}"
VENV="${COVE_LITELLM_VENV:-$CACHE_DIR/venv-litellm-$LITELLM_VERSION}"
PYTHON="${COVE_PYTHON:-python3}"
MARKER="$VENV/.cove-ready"

if [[ -f "$MARKER" ]] && "$VENV/bin/python" -c 'import litellm.proxy.proxy_server' >/dev/null 2>&1; then
  echo "$VENV"
  exit 0
fi

echo "cove: building the LiteLLM $LITELLM_VERSION environment in $VENV (one time)" >&2
mkdir -p "$CACHE_DIR"
rm -rf "$VENV.partial"
"$PYTHON" -m venv "$VENV.partial"
"$VENV.partial/bin/pip" install --quiet --disable-pip-version-check \
  "litellm[proxy]==$LITELLM_VERSION" >&2
"$VENV.partial/bin/python" -c 'import litellm.proxy.proxy_server' >&2
rm -rf "$VENV"
mv "$VENV.partial" "$VENV"
# venv scripts carry absolute shebangs: rewrite them for the final location.
for script in "$VENV"/bin/*; do
  if [[ -f "$script" && ! -L "$script" ]]; then sed -i "1s|$VENV.partial|$VENV|" "$script"; fi
done
sed -i "s|$VENV.partial|$VENV|g" "$VENV/bin/activate" "$VENV/pyvenv.cfg" 2>/dev/null || true
touch "$MARKER"
echo "$VENV"
