"""A real Celery worker with beat records model-instance health in Postgres."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cove.platform.core.db import Database
from cove.platform.local.procs import free_port, spawn, stop_process_group
from tests.gateway.conftest import add_deployment

pytestmark = pytest.mark.vllm


async def _statuses(db: Database) -> dict[str, tuple[str, str | None]]:
    async with db.platform() as conn:
        rows = await (
            await conn.execute("SELECT name, status, status_detail FROM model_deployments")
        ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


async def test_beat_schedules_the_health_check_and_the_worker_records_status(
    db: Database, world: dict[str, Any], vllm_url: str, settings: Any, tmp_path: Path
) -> None:
    bu = world["a"]["bu"].id
    await add_deployment(db, bu, vllm_url, name="healthy")
    await add_deployment(db, bu, f"http://127.0.0.1:{free_port()}", name="dead")
    await add_deployment(db, bu, vllm_url, name="wrong-model", served="not-served", model="other")
    env = {
        **os.environ,
        "COVE_DATABASE_URL": settings.database_url,
        "COVE_REDIS_URL": settings.redis_url.rsplit("/", 1)[0] + "/3",
        "COVE_SECRET_KEY": settings.secret_key.get_secret_value(),
        "COVE_HEALTH_CHECK_SECONDS": "1",
    }
    log = tmp_path / "worker.log"
    proc = spawn(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cove.platform.worker",
            "worker",
            "--beat",
            "--loglevel",
            "INFO",
            "--concurrency",
            "1",
            "--schedule",
            str(tmp_path / "beat-schedule"),
        ],
        env=env,
        log_file=log,
    )
    try:
        deadline = time.monotonic() + 60
        statuses: dict[str, tuple[str, str | None]] = {}
        while time.monotonic() < deadline:
            statuses = await _statuses(db)
            if all(s[0] != "pending" for s in statuses.values()):
                break
            assert proc.poll() is None, log.read_text()
            time.sleep(0.5)
        assert statuses["healthy"] == ("ready", None), log.read_text()[-3000:]
        assert statuses["dead"][0] == "unavailable"
        assert "Connect" in (statuses["dead"][1] or "")
        assert statuses["wrong-model"][0] == "degraded"
        assert "not-served" in (statuses["wrong-model"][1] or "")
    finally:
        stop_process_group(proc.pid)
        proc.wait(timeout=15)
    assert "deployment.health_check" in log.read_text()
