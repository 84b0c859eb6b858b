"""The purge of a deleted business unit, run by a real Celery worker: afterwards nothing of
the BU is left in any tenant-owned table (found in the catalog, so new tables are checked
without a change here) nor in its data directory, another BU is untouched, and the audit log
keeps the evidence."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from cove.gateway import repository as gateway_repository
from cove.gateway.promptlog import PromptLogEntry
from cove.gateway.served import Offer
from cove.platform.analytics import tasks as analytics_tasks
from cove.platform.core.db import Database, SyncDatabase
from cove.platform.core.settings import CoveSettings
from cove.platform.finetuning import repository as finetune_repository
from tests.factories import bearer
from tests.platform.deployments_support import (
    celery_worker,
    control,  # noqa: F401 - a fixture
    lora_adapter,
    register_base,
    sync_db,  # noqa: F401 - a fixture
)
from tests.tenants.test_bu_lifecycle import event, unpack, write_events

TENANT_TABLES = """
    SELECT c.relname FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE a.attname = 'tenant_id' AND NOT a.attisdropped AND n.nspname = 'public'
      AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""
ALL_TABLES = """
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""


def traces(conn: psycopg.Connection[Any], bu_id: uuid.UUID, slug: str) -> dict[str, int]:
    """Rows anywhere (the audit log aside) that hold the BU's id or slug in any column."""
    found = {}
    tables = [r[0] for r in conn.execute(ALL_TABLES).fetchall()]
    tenant_tables = {r[0] for r in conn.execute(TENANT_TABLES).fetchall()}
    assert {"usage_events", "api_keys", "finetune_jobs", "policies"} <= tenant_tables
    for table in tables:
        if table == "audit_log":
            continue
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {} t WHERE t::text LIKE %s OR t::text ~ %s").format(
                sql.Identifier(table)
            ),
            # The slug as a word of its own ("bu-a", not the role "bu-admin").
            (f"%{bu_id}%", f"(^|[^a-z0-9-]){re.escape(slug)}([^a-z0-9-]|$)"),
        ).fetchone()
        assert row is not None
        if row[0]:
            found[table] = row[0]
        if table in tenant_tables:
            owned = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = %s").format(
                    sql.Identifier(table)
                ),
                (bu_id,),
            ).fetchone()
            assert owned is not None
            if owned[0]:
                found[f"{table}.tenant_id"] = owned[0]
    return found


async def populate(
    api: httpx.AsyncClient,
    db: Database,
    sync_db: SyncDatabase,
    world: dict[str, Any],
    slug: str,
    data_dir: Path,
    tiny_model: Path,
) -> Path:
    """Give BU `slug` something in every domain; returns its data directory."""
    bu = world[slug]["bu"]
    key = bearer(world[slug]["admin_key"])
    policy = await api.put(
        f"/api/v1/bus/{bu.id}/policy",
        json={"document": {"limits": {"max_tokens": 64}}},
        headers=key,
    )
    assert policy.status_code == 200, policy.text
    # A fine-tuning job's directory: dataset and the adapter it produced.
    job_dir = data_dir / str(bu.id) / "job-1"
    (job_dir / "dataset").mkdir(parents=True)
    (job_dir / "dataset" / "train.jsonl").write_text('{"prefix": "sdk.call("}\n')
    shutil.copytree(lora_adapter(tiny_model, 8), job_dir / "adapter")
    adapter = await api.post(
        f"/api/v1/bus/{bu.id}/adapters",
        json={
            "name": f"{slug}-sdk-v1",
            "base_model": "cove-tiny",
            "location": str(job_dir / "adapter"),
        },
        headers=key,
    )
    assert adapter.status_code == 201, adapter.text
    deployment = await api.post(
        f"/api/v1/bus/{bu.id}/deployments",
        json={"name": "default", "model": "cove-tiny", "endpoint_url": "http://127.0.0.1:9/"},
        headers=key,
    )
    assert deployment.status_code == 201, deployment.text
    release = await api.put(
        f"/api/v1/bus/{bu.id}/release", json={"stable": f"{slug}-sdk-v1"}, headers=key
    )
    assert release.status_code in (200, 409), release.text
    async with db.tenant(bu.id) as conn:
        await finetune_repository.insert(
            conn,
            {
                "tenant_id": bu.id,
                "name": "sdk-job",
                "spec": {"base_model": "cove-tiny"},
                "base_model_id": await _model_id(db, "cove-tiny"),
                "runtime": "local",
                "gpus": 0,
                "adapter_name": f"{slug}-sdk-v2",
                "created_by": f"{slug}-admin",
            },
        )
    await write_events(
        db,
        [event(bu.id, "completion.served", f"{slug}-c{i}", lines=2) for i in range(5)]
        + [event(bu.id, "completion.accepted", f"{slug}-c0", lines=2)],
    )
    # A prompt logged in full, through the gateway's writer.
    logged = PromptLogEntry(
        tenant_id=bu.id,
        mode="full",
        user_id=f"{slug}-dev",
        username=f"{slug}-dev",
        feature="completion",
        path="src/pay.py",
        language="python",
        prompt_chars=9,
        suffix_chars=0,
    )
    logged.keep_text("sdk.pay(", None)
    offer = Offer(completion_id=f"{slug}-c0")
    offer.add_choice({"index": 0, "text": "amount)"})
    async with db.platform() as conn:
        await gateway_repository.insert_prompt_logs(conn, [logged.row(offer)])
    start = datetime.now(UTC) - timedelta(hours=3)
    analytics_tasks.rollup(sync_db, start.isoformat(), datetime.now(UTC).isoformat())
    return data_dir / str(bu.id)


async def _model_id(db: Database, name: str) -> uuid.UUID:
    async with db.platform() as conn:
        row = await (
            await conn.execute("SELECT id FROM models WHERE name = %s", (name,))
        ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def counts(conn: psycopg.Connection[Any], bu_id: uuid.UUID) -> dict[str, int]:
    result = {}
    for (table,) in conn.execute(TENANT_TABLES).fetchall():
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = %s").format(sql.Identifier(table)),
            (bu_id,),
        ).fetchone()
        assert row is not None
        result[table] = row[0]
    return result


async def test_after_the_purge_nothing_of_the_bu_remains(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    db: Database,
    sync_db: SyncDatabase,
    settings: CoveSettings,
    owner_conn: psycopg.Connection[Any],
    tiny_model: Path,
    tmp_path: Path,
) -> None:
    a, b = world["a"], world["b"]
    admin = bearer(world["admin_key"])
    data_dir = tmp_path / "finetune"
    await register_base(control, world, location=str(tiny_model), grant=("a", "b"))
    a_dir = await populate(control, db, sync_db, world, "a", data_dir, tiny_model)
    b_dir = await populate(control, db, sync_db, world, "b", data_dir, tiny_model)
    before_a = counts(owner_conn, a["bu"].id)
    before_b = counts(owner_conn, b["bu"].id)
    for table in (
        "usage_events",
        "analytics_daily",
        "prompt_logs",
        "model_deployments",
        "models",
        "policies",
        "finetune_jobs",
    ):
        assert before_a[table] > 0, table
    assert traces(owner_conn, a["bu"].id, "bu-a")

    exported = await control.get(f"/api/v1/bus/{a['bu'].id}/export", headers=admin)
    assert exported.status_code == 200
    files = unpack(exported.content)
    assert files["metrics/usage_events.jsonl"].count(b"\n") == before_a["usage_events"]
    assert b"default" in files["config/model_deployments.jsonl"]
    assert b"sdk-job" in files["config/finetune_jobs.jsonl"]
    requested = await control.post(
        f"/api/v1/bus/{a['bu'].id}/deletion", json={"grace_days": 0}, headers=admin
    )
    assert requested.status_code == 202, requested.text

    env = {"COVE_FINETUNE_DIR": str(data_dir), "COVE_BU_PURGE_RETRY_SECONDS": "1"}
    with celery_worker(settings, tmp_path, env):
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            gone = owner_conn.execute(
                "SELECT count(*) FROM tenants WHERE id = %s", (a["bu"].id,)
            ).fetchone()
            if gone == (0,):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the BU was not purged within 90 s")

    assert traces(owner_conn, a["bu"].id, "bu-a") == {}
    assert not a_dir.exists()
    # The other BU keeps all it had, files included.
    assert counts(owner_conn, b["bu"].id) == before_b
    assert (b_dir / "job-1" / "adapter" / "adapter_config.json").is_file()
    # Users who belonged only to the purged BU are gone; the platform admin stays.
    users = {r[0] for r in owner_conn.execute("SELECT username FROM users").fetchall()}
    assert users == {"admin", "b-admin", "b-dev"}
    # The evidence: the audit entries of the BU survive with its id and slug.
    entries = owner_conn.execute(
        "SELECT action, actor, target, diff FROM audit_log WHERE tenant_id = %s ORDER BY id",
        (a["bu"].id,),
    ).fetchall()
    actions = [e[0] for e in entries]
    assert actions[-3:] == ["bu.export", "bu.delete_request", "bu.purge"]
    purge = entries[-1]
    assert purge[1] == "system:bu-purge"
    assert purge[2] == "bu:bu-a"
    assert purge[3]["requested_by"] == "admin"
    assert purge[3]["rows"]["usage_events"] == before_a["usage_events"]
    assert purge[3]["rows"]["prompt_logs"] == 1
    assert purge[3]["rows"]["tenants"] == 1
    assert purge[3]["files_removed"] >= 3
    # A platform admin reads that evidence through the audit API.
    evidence = await control.get(
        f"/api/v1/bus/{a['bu'].id}/audit", params={"action": "bu."}, headers=admin
    )
    assert evidence.status_code == 200, evidence.text
    assert [e["action"] for e in evidence.json()["entries"]][:3] == [
        "bu.purge",
        "bu.delete_request",
        "bu.export",
    ]
    # The BU is gone for the API too.
    gone = await control.get(f"/api/v1/bus/{a['bu'].id}", headers=admin)
    assert gone.status_code == 404
    listed = await control.get("/api/v1/bus", headers=admin)
    assert [bu["slug"] for bu in listed.json()] == ["bu-b"]


async def test_the_beat_sweep_purges_a_bu_whose_grace_period_is_over(
    world: dict[str, Any],
    settings: CoveSettings,
    owner_conn: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    """No purge task was sent (the broker was down when the deletion was asked for): the
    worker's beat finds the BU past its grace period and purges it."""
    from cove.platform.api.app import PlatformSettings, create_app
    from cove.platform.local.procs import free_port

    a = world["a"]
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(PlatformSettings(**{**settings.model_dump(), "redis_url": dead}))
    admin = bearer(world["admin_key"])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://platform") as client:
            exported = await client.get(f"/api/v1/bus/{a['bu'].id}/export", headers=admin)
            assert exported.status_code == 200
            asked = await client.post(
                f"/api/v1/bus/{a['bu'].id}/deletion", json={"grace_days": 0}, headers=admin
            )
            assert asked.status_code == 202
    data_dir = tmp_path / "finetune"
    (data_dir / str(a["bu"].id) / "job-1").mkdir(parents=True)
    (data_dir / str(a["bu"].id) / "job-1" / "train.jsonl").write_text("{}\n")
    env = {"COVE_FINETUNE_DIR": str(data_dir), "COVE_BU_PURGE_CHECK_SECONDS": "1"}
    with celery_worker(settings, tmp_path, env):
        deadline = time.monotonic() + 60
        while owner_conn.execute(
            "SELECT count(*) FROM tenants WHERE id = %s", (a["bu"].id,)
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "the sweep did not purge the BU within 60 s"
            time.sleep(0.5)
    assert traces(owner_conn, a["bu"].id, "bu-a") == {}
    assert not (data_dir / str(a["bu"].id)).exists()
    assert counts(owner_conn, world["b"]["bu"].id)["api_keys"] == 2
