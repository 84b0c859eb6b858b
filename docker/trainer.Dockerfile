# syntax=docker/dockerfile:1
# The fine-tuning trainer (LoRA on a BU's base model). The control plane renders training Jobs
# that run this image with their own command; the chart only carries its reference.
#   docker build -f docker/trainer.Dockerfile -t cove-trainer:0.1.0 .
#   CPU-only build (small; CI or CPU clusters):
#   docker build -f docker/trainer.Dockerfile \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t cove-trainer:0.1.0-cpu .
#
# Base images carry an explicit release in their tag. The release pipeline resolves each tag to
# its digest and builds with `python:<tag>@sha256:<digest>`; the digest is pinned at release.

FROM python:3.11.13-slim-bookworm AS builder
# PyPI's torch wheels are the CUDA builds (GPU nodes); point this at the CPU index for a CPU image.
ARG TORCH_INDEX_URL=https://pypi.org/simple
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY platform/ platform/
COPY tenants/ tenants/
COPY gateway/ gateway/
COPY finetune/ finetune/
# torch first and pinned, from the chosen index; never torchvision (it breaks `import
# transformers` beside a CPU torch).
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION" \
 && /opt/venv/bin/pip install "$(ls /wheels/cove-*.whl)[train]" \
 && /opt/venv/bin/pip uninstall -y torchvision torchaudio \
 && /opt/venv/bin/python -c "import torch, transformers" \
 && /opt/venv/bin/python -m compileall -q /opt/venv

FROM python:3.11.13-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HF_HOME=/tmp/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
RUN groupadd --system --gid 10001 cove \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin cove
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
# A training Job is a batch process: it exits when done, there is nothing to health-check.
HEALTHCHECK NONE
CMD ["python", "-c", "import cove.finetune, torch; print('cove trainer: torch', torch.__version__)"]
