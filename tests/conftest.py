"""Fixtures on real services: Postgres, Redis, the tiny model served by a real vLLM.

Postgres and Redis: when COVE_TEST_ADMIN_URL / COVE_TEST_REDIS_URL are set the suite uses
those servers; otherwise it starts its own on free ports in a temporary directory, so the
suite never assumes it owns port 5432 or a machine-wide Redis. Each pytest process (each
xdist worker) gets its own freshly migrated database, dropped at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import uvicorn
from psycopg import sql

from cove.platform.core import migrate
from cove.platform.core.db import Database
from cove.platform.core.settings import CoveSettings
from cove.platform.local.postgres import LocalPostgres
from cove.platform.local.procs import free_port, http_ok, spawn, stop_process_group, wait_until
from cove.platform.local.stack import VLLM_VERSION, default_cache_dir, tiny_model_dir, vllm_argv

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


# ---- Postgres -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("COVE_TEST_ADMIN_URL")
    if given:
        yield given
        return
    # pytest's own temp root is private to the user; as root the cluster runs as `postgres`.
    base = Path(tempfile.mkdtemp(prefix="cove-test-pg-"))
    os.chmod(base, 0o755)
    cluster = LocalPostgres(base / "data")
    cluster.ensure_initialised()
    port = cluster.start()
    try:
        yield f"postgresql://{cluster.superuser}@127.0.0.1:{port}/postgres"
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def _with_database(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    name = f"cove_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_database(pg_admin_url, name)
    migrate.upgrade(url)
    try:
        yield url
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


TABLES = ", ".join(
    [
        "analytics_hourly",
        "analytics_daily",
        "analytics_daily_segments",
        "analytics_rollup_state",
        "policies",
        "audit_log",
        "usage_events",
        "model_deployments",
        "models",
        "api_keys",
        "memberships",
        "users",
        "tenants",
    ]
)


@pytest.fixture
def clean_db(database_url: str) -> Iterator[str]:
    """A database emptied after the test (the schema stays)."""
    yield database_url
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


@pytest.fixture
def settings(clean_db: str, redis_url: str) -> CoveSettings:
    return CoveSettings(
        database_url=clean_db,
        redis_url=redis_url,
        secret_key=TEST_SECRET,  # type: ignore[arg-type]
        env="test",  # type: ignore[arg-type]
    )


@pytest.fixture
async def db(settings: CoveSettings) -> AsyncIterator[Database]:
    database = Database(settings, min_size=0)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def owner_conn(clean_db: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection as the table owner (bypasses nothing: FORCE RLS applies to owners too)."""
    with psycopg.connect(clean_db, autocommit=True) as conn:
        yield conn


# ---- Redis --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("COVE_TEST_REDIS_URL")
    if given:
        yield given
        return
    port = free_port()
    data = tmp_path_factory.mktemp("redis")
    proc = spawn(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data),
        ],
        env=dict(os.environ),
        log_file=data / "redis.log",
    )
    import redis

    client = redis.Redis(port=port)

    def ping() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_until(ping, timeout=20, what="redis", alive=lambda: proc.poll() is None)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process_group(proc.pid)
        proc.wait(timeout=10)


# ---- The tiny model and vLLM ------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    from cove.finetune.tinymodel import build_tiny_model, is_current_tiny_model

    target = tiny_model_dir(default_cache_dir())
    if not is_current_tiny_model(target):
        build_tiny_model(target)
    return target


@pytest.fixture(scope="session")
def vllm_url(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real vLLM OpenAI-compatible server on the CPU, serving the tiny model as `cove-tiny`."""
    python = Path(
        os.environ.get(
            "COVE_VLLM_PYTHON",
            str(default_cache_dir() / f"venv-vllm-{VLLM_VERSION}" / "bin" / "python"),
        )
    )
    if not python.exists():
        pytest.fail(f"vLLM environment missing at {python}; run scripts/ensure-vllm.sh")
    port = free_port()
    log_file = tmp_path_factory.mktemp("vllm") / "vllm.log"
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
    }
    proc = spawn(vllm_argv(python, tiny_model, "cove-tiny", port), env=env, log_file=log_file)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: http_ok(f"{url}/health"),
            timeout=300,
            what="vLLM",
            alive=lambda: proc.poll() is None,
            log_file=log_file,
        )
        yield url
    finally:
        stop_process_group(proc.pid, grace=15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


# ---- In-process servers ---------------------------------------------------------------------


class ServerThread:
    """Runs an ASGI app under a real uvicorn server on a free port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            loop="asyncio",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


# ---- Platform API and seeded principals ------------------------------------------------------


@pytest.fixture
async def platform_app(settings: CoveSettings) -> AsyncIterator[Any]:
    from cove.platform.api.app import PlatformSettings, create_app

    app = create_app(PlatformSettings(**settings.model_dump()))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def api(platform_app: Any) -> AsyncIterator[Any]:
    import httpx

    transport = httpx.ASGITransport(app=platform_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://platform") as client:
        yield client


@pytest.fixture
async def world(db: Database, settings: CoveSettings) -> dict[str, Any]:
    """Two BUs (a, b), each with a BU admin and a developer key, plus a platform admin key."""
    from tests.factories import make_world

    return await make_world(db, settings.secret_key.get_secret_value().encode())
