# syntax=docker/dockerfile:1
# The Celery worker (it hosts the reconciler) and beat: the same image, two commands.
#   docker build -f docker/worker.Dockerfile -t cove-worker:0.1.0 .
#   worker: celery -A cove.platform.worker worker --loglevel INFO   (the default command)
#   beat:   celery -A cove.platform.worker beat --loglevel INFO
#
# Base images carry an explicit release in their tag. The release pipeline resolves each tag to
# its digest and builds with `python:<tag>@sha256:<digest>`; the digest is pinned at release.

FROM python:3.11.13-slim-bookworm AS builder
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
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install "$(ls /wheels/cove-*.whl)[worker]" \
 && /opt/venv/bin/python -m compileall -q /opt/venv

FROM python:3.11.13-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --system --gid 10001 cove \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin cove
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
# One image, two processes (worker, beat) with nothing in common to probe; under Kubernetes
# the pod spec, not the image, decides about health.
HEALTHCHECK NONE
CMD ["celery", "-A", "cove.platform.worker", "worker", "--loglevel", "INFO"]
