"""The fine-tuning runner and the sweep, against the real database: jobs that cannot start end
in `failed` with their reason and register nothing; a runner process that dies, a job that
stops reporting and a lost start task are all noticed. The successful path (training, the
gate, registration, serving) is tests/finetune/test_finetune_job_e2e.py."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from cove.platform.core.db import Database, SyncDatabase
from cove.platform.core.settings import CoveSettings
from cove.platform.finetuning import repository, runner, tasks
from cove.platform.finetuning.settings import FinetuneSettings
from tests.factories import bearer
from tests.finetune.synthetic import write_sdk
from tests.platform.deployments_support import (
    control,  # noqa: F401 - a fixture
    register_base,
    sync_db,  # noqa: F401 - a fixture
)

pytestmark = pytest.mark.usefixtures("world")


@pytest.fixture
async def tiny(control: httpx.AsyncClient, world: dict[str, Any], tiny_model: Path) -> None:
    await register_base(control, world, location=str(tiny_model), grant=("a",))


@pytest.fixture
def finetune_settings(settings: CoveSettings, tmp_path: Path) -> FinetuneSettings:
    return FinetuneSettings(
        **{**settings.model_dump(), "finetune_dir": tmp_path / "finetune"},
    )


async def _queue(
    api: httpx.AsyncClient, world: dict[str, Any], repositories: list[dict[str, Any]]
) -> dict[str, Any]:
    resp = await api.post(
        f"/api/v1/bus/{world['a']['bu'].id}/finetune-jobs",
        json={"name": "sdk-v1", "repositories": repositories, "base_model": "cove-tiny"},
        headers=bearer(world["a"]["admin_key"]),
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def _seen(api: httpx.AsyncClient, world: dict[str, Any], job_id: str) -> dict[str, Any]:
    resp = await api.get(
        f"/api/v1/bus/{world['a']['bu'].id}/finetune-jobs/{job_id}",
        headers=bearer(world["a"]["admin_key"]),
    )
    assert resp.status_code == 200
    return dict(resp.json())


async def _log(api: httpx.AsyncClient, world: dict[str, Any], job_id: str) -> list[str]:
    resp = await api.get(
        f"/api/v1/bus/{world['a']['bu'].id}/finetune-jobs/{job_id}/logs",
        headers=bearer(world["a"]["admin_key"]),
    )
    return [line["message"] for line in resp.json()["lines"]]


async def _catalog(api: httpx.AsyncClient, world: dict[str, Any]) -> list[str]:
    """What BU A may deploy: its granted bases and its own adapters."""
    resp = await api.get(
        f"/api/v1/bus/{world['a']['bu'].id}/models", headers=bearer(world["a"]["admin_key"])
    )
    return sorted(model["name"] for model in resp.json())


@pytest.mark.usefixtures("tiny")
async def test_an_unreachable_repository_fails_the_job_and_registers_nothing(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    sync_db: SyncDatabase,
    finetune_settings: FinetuneSettings,
    tmp_path: Path,
) -> None:
    sdk = write_sdk(tmp_path / "sdk")
    job = await _queue(
        control,
        world,
        [
            {"location": str(sdk), "role": "sdk"},
            {"location": str(tmp_path / "gone"), "role": "consumer"},
        ],
    )
    status = await asyncio.to_thread(runner.execute, finetune_settings, sync_db, UUID(job["id"]), 1)
    assert status == "failed"
    seen = await _seen(control, world, job["id"])
    assert seen["status"] == "failed"
    assert seen["reason"]["code"] == "repository_unreachable"
    assert str(tmp_path / "gone") in seen["reason"]["message"]
    assert seen["started_at"] is not None
    assert seen["finished_at"] is not None
    assert seen["adapter_model_id"] is None
    assert await _catalog(control, world) == ["cove-tiny"]
    log = await _log(control, world, job["id"])
    assert any(line.startswith("attempt 1 started on") for line in log)
    assert log[-1].startswith("failed (repository_unreachable)")
    # The same attempt never runs twice.
    again = await asyncio.to_thread(runner.execute, finetune_settings, sync_db, UUID(job["id"]), 1)
    assert again == "skipped"


@pytest.mark.usefixtures("tiny")
async def test_a_repository_without_source_files_is_empty(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    sync_db: SyncDatabase,
    finetune_settings: FinetuneSettings,
    tmp_path: Path,
) -> None:
    sdk = write_sdk(tmp_path / "sdk")
    empty = tmp_path / "docs-only"
    empty.mkdir()
    (empty / "README.md").write_text("# nothing to learn from\n")
    job = await _queue(
        control,
        world,
        [{"location": str(sdk), "role": "sdk"}, {"location": str(empty), "role": "consumer"}],
    )
    await asyncio.to_thread(runner.execute, finetune_settings, sync_db, UUID(job["id"]), 1)
    seen = await _seen(control, world, job["id"])
    assert (seen["status"], seen["reason"]["code"]) == ("failed", "empty_repository")


@pytest.mark.usefixtures("tiny")
async def test_git_credentials_must_reach_the_runner(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    sync_db: SyncDatabase,
    finetune_settings: FinetuneSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COVE_GIT_CREDENTIALS_ACME_GIT", raising=False)
    job = await _queue(
        control,
        world,
        [
            {
                "location": "https://git.acme.internal/sdk.git",
                "role": "sdk",
                "credentials_secret": "acme-git",
            },
            {"location": "/srv/apps", "role": "consumer"},
        ],
    )
    await asyncio.to_thread(runner.execute, finetune_settings, sync_db, UUID(job["id"]), 1)
    seen = await _seen(control, world, job["id"])
    assert (seen["status"], seen["reason"]["code"]) == ("failed", "credentials_missing")
    assert "COVE_GIT_CREDENTIALS_ACME_GIT" in seen["reason"]["message"]
    # With the secret in place, the clone URL carries it (quoted); the job's spec does not.
    monkeypatch.setenv("COVE_GIT_CREDENTIALS_ACME_GIT", "ci-bot:t0k/en@1")
    with sync_db.platform() as conn:
        row = repository.get_sync(conn, UUID(job["id"]))
    assert row is not None
    config = runner.build_config(finetune_settings, row)
    assert config.repos[0].location == "https://ci-bot:t0k%2Fen%401@git.acme.internal/sdk.git"
    assert "t0k" not in str(seen["spec"])


@pytest.mark.usefixtures("tiny")
async def test_the_worker_starts_a_runner_process_that_reports_its_end(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    settings: CoveSettings,
    sync_db: SyncDatabase,
    finetune_settings: FinetuneSettings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # The runner is a separate process: it reads the same settings from its environment.
    monkeypatch.setenv("COVE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("COVE_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("COVE_SECRET_KEY", settings.secret_key.get_secret_value())
    job = await _queue(
        control,
        world,
        [
            {"location": str(tmp_path / "no-sdk"), "role": "sdk"},
            {"location": str(tmp_path / "no-apps"), "role": "consumer"},
        ],
    )
    job_id = UUID(job["id"])
    assert tasks.launch(sync_db, finetune_settings, job_id, 1) == "started"
    # A second start of the same attempt (a redelivered task) does nothing.
    assert tasks.launch(sync_db, finetune_settings, job_id, 1) == "skipped"
    deadline = time.monotonic() + 120
    seen = await _seen(control, world, job["id"])
    while seen["status"] not in ("failed", "succeeded") and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        seen = await _seen(control, world, job["id"])
    assert seen["status"] == "failed", seen
    assert seen["reason"]["code"] == "repository_unreachable"
    with sync_db.platform() as conn:
        row = repository.get_sync(conn, job_id)
    assert row is not None
    assert row.worker_ref is not None
    assert row.worker_ref.startswith(f"local:{socket.gethostname()}:")
    log_file = finetune_settings.finetune_dir.resolve() / str(row.tenant_id) / job["id"]
    assert (log_file / "runner-1.log").is_file()


async def _mark(db: Database, job_id: str, sql: str, *params: Any) -> None:
    async with db.platform() as conn:
        await conn.execute(f"UPDATE finetune_jobs SET {sql} WHERE id = %s", (*params, job_id))


@pytest.mark.usefixtures("tiny")
async def test_the_sweep_ends_a_job_whose_runner_died(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    db: Database,
    sync_db: SyncDatabase,
    finetune_settings: FinetuneSettings,
) -> None:
    job = await _queue(
        control,
        world,
        [{"location": "/srv/sdk", "role": "sdk"}, {"location": "/srv/apps", "role": "consumer"}],
    )
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    await _mark(
        db,
        job["id"],
        "status = 'training', worker_ref = %s, heartbeat_at = now()",
        f"local:{socket.gethostname()}:{dead.pid}",
    )
    counts = await asyncio.to_thread(
        tasks.sweep, sync_db, finetune_settings, lambda *_: pytest.fail("nothing to start")
    )
    assert counts == {"crashed": 1}
    seen = await _seen(control, world, job["id"])
    assert (seen["status"], seen["reason"]["code"]) == ("failed", "crashed")
    assert "retry to resume" in seen["reason"]["message"]
    # A retry starts attempt 2 from the checkpoints the first one left.
    retry = await control.post(
        f"/api/v1/bus/{world['a']['bu'].id}/finetune-jobs/{job['id']}/retry",
        headers=bearer(world["a"]["admin_key"]),
    )
    assert retry.status_code == 202
    assert retry.json()["attempt"] == 2


@pytest.mark.usefixtures("tiny")
async def test_the_sweep_fails_a_silent_job_and_restarts_a_lost_start(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    db: Database,
    sync_db: SyncDatabase,
    finetune_settings: FinetuneSettings,
) -> None:
    silent = await _queue(
        control,
        world,
        [{"location": "/srv/sdk", "role": "sdk"}, {"location": "/srv/apps", "role": "consumer"}],
    )
    # Running on another machine (so its pid cannot be checked here), last heard of long ago.
    await _mark(
        db,
        silent["id"],
        "status = 'training', worker_ref = 'local:another-host:42',"
        " heartbeat_at = now() - interval '2 hours'",
    )
    resp = await control.post(
        f"/api/v1/bus/{world['a']['bu'].id}/finetune-jobs",
        json={
            "name": "never-started",
            "repositories": [
                {"location": "/srv/sdk", "role": "sdk"},
                {"location": "/srv/apps", "role": "consumer"},
            ],
            "base_model": "cove-tiny",
        },
        headers=bearer(world["a"]["admin_key"]),
    )
    waiting = resp.json()
    started: list[tuple[UUID, int]] = []

    def send_start(job_id: UUID, attempt: int) -> None:
        started.append((job_id, attempt))

    # Within the grace period, the start task may still be on its way: nothing is resent.
    now = datetime.now(UTC)
    counts = await asyncio.to_thread(tasks.sweep, sync_db, finetune_settings, send_start, now=now)
    assert counts == {"lost": 1}
    assert started == []
    later = now + timedelta(seconds=finetune_settings.finetune_start_grace_seconds + 1)
    counts = await asyncio.to_thread(tasks.sweep, sync_db, finetune_settings, send_start, now=later)
    assert counts == {"restarted": 1}
    assert started == [(UUID(waiting["id"]), 1)]
    seen = await _seen(control, world, silent["id"])
    assert (seen["status"], seen["reason"]["code"]) == ("failed", "lost")
