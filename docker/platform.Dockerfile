# syntax=docker/dockerfile:1
# The platform API, which also serves the console (the built SPA) and runs the migrations
# (`cove db migrate`, the Helm hook Job). Build from the repository root:
#   docker build -f docker/platform.Dockerfile -t cove-platform:0.1.0 .
#
# Base images carry an explicit release in their tag. The release pipeline resolves each tag to
# its digest and builds with `<image>:<tag>@sha256:<digest>`; the digest is pinned at release.

FROM node:20.19.0-bookworm-slim AS console
WORKDIR /web
COPY web/ ./
# Until the console exists, the API serves its placeholder page (an empty dist/).
RUN if [ -f package.json ]; then npm ci --no-audit --no-fund && npm run build; else mkdir -p dist; fi

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
 && /opt/venv/bin/pip install "$(ls /wheels/cove-*.whl)[api]" \
 && /opt/venv/bin/python -m compileall -q /opt/venv

FROM python:3.11.13-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    COVE_CONSOLE_DIR=/opt/cove/console
RUN groupadd --system --gid 10001 cove \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin cove
COPY --from=builder /opt/venv /opt/venv
COPY --from=console /web/dist /opt/cove/console
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["uvicorn", "--factory", "cove.platform.api.app:main_app", "--host", "0.0.0.0", "--port", "8000", "--timeout-keep-alive", "75"]
