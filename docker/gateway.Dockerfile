# syntax=docker/dockerfile:1
# The gateway: the data plane IDE plugins talk to. Build from the repository root:
#   docker build -f docker/gateway.Dockerfile -t cove-gateway:0.1.0 .
#
# Base images carry an explicit Python and Debian release in their tag. The release pipeline
# resolves each tag to its digest and builds with `python:<tag>@sha256:<digest>`, so a release is
# reproducible even if the tag is re-pushed upstream; the digest is pinned at release, not here.

FROM python:3.11.13-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Compilers only here, for any dependency that ships no wheel for this platform.
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
 && /opt/venv/bin/pip install "$(ls /wheels/cove-*.whl)[gateway]" \
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
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
CMD ["uvicorn", "--factory", "cove.gateway.app:main_app", "--host", "0.0.0.0", "--port", "8080", "--timeout-keep-alive", "75"]
