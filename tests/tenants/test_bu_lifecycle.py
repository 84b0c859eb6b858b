"""Staged deletion of a business unit through the platform API: export, deletion request,
restore, and every refusal on the way. The purge itself is in test_bu_purge.py."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cove.gateway import repository as gateway_repository
from cove.gateway.events import UsageEvent
from cove.platform.core.db import Database, SyncDatabase
from cove.platform.lifecycle import service
from tests.factories import bearer
from tests.platform.deployments_support import (
    broker_url,
    control,  # noqa: F401 - a fixture
    queued_tasks,
    sync_db,  # noqa: F401 - a fixture
)


def event(tenant: uuid.UUID, kind: str, completion: str, **data: Any) -> UsageEvent:
    return UsageEvent(
        id=uuid.uuid4(),
        tenant_id=tenant,
        event_type=kind,
        occurred_at=datetime.now(UTC) - timedelta(hours=1),
        user_id="dev",
        completion_id=completion,
        model_version="base",
        feature="completion",
        language="python",
        ide="vscode/1.95",
        data=data,
    )


async def write_events(db: Database, events: list[UsageEvent]) -> None:
    """Through the gateway's own batch writer."""
    async with db.platform() as conn:
        await gateway_repository.insert_events(conn, [e.row() for e in events])


def unpack(body: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        return {
            member.name.split("/", 1)[1]: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
            if member.isfile()
        }


def jsonl(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.splitlines()]


async def export(api: httpx.AsyncClient, bu_id: Any, key: str) -> httpx.Response:
    return await api.get(f"/api/v1/bus/{bu_id}/export", headers=bearer(key))


async def delete(
    api: httpx.AsyncClient, bu_id: Any, key: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    return await api.post(f"/api/v1/bus/{bu_id}/deletion", json=body, headers=bearer(key))


async def audit_actions(db: Database, bu_id: Any) -> list[str]:
    async with db.platform() as conn:
        cur = await conn.execute(
            "SELECT action FROM audit_log WHERE tenant_id = %s ORDER BY id", (bu_id,)
        )
        return [row[0] for row in await cur.fetchall()]


async def test_the_export_holds_configuration_and_metrics_but_no_secrets(
    api: httpx.AsyncClient, world: dict[str, Any], db: Database
) -> None:
    a, b = world["a"], world["b"]
    policy = await api.put(
        f"/api/v1/bus/{a['bu'].id}/policy",
        json={"document": {"limits": {"max_tokens": 64}}},
        headers=bearer(a["admin_key"]),
    )
    assert policy.status_code == 200, policy.text
    await write_events(
        db,
        [
            event(a["bu"].id, "completion.served", "c1", lines=3),
            event(b["bu"].id, "completion.served", "other-bu"),
        ],
    )

    resp = await export(api, a["bu"].id, a["admin_key"])  # a BU admin exports their own BU
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/gzip"
    disposition = resp.headers["content-disposition"]
    assert "attachment" in disposition
    assert "cove-bu-bu-a-" in disposition
    files = unpack(resp.content)
    manifest = json.loads(files["manifest.json"])
    assert manifest["business_unit"]["slug"] == "bu-a"
    assert manifest["exported_by"] == "a-admin"
    assert json.loads(files["business_unit.json"])["id"] == str(a["bu"].id)
    # Configuration: the policy, the keys (metadata only), the members.
    assert jsonl(files["config/policies.jsonl"])[0]["document"] == {"limits": {"max_tokens": 64}}
    keys = jsonl(files["config/api_keys.jsonl"])
    assert {k["id"] for k in keys} == {str(a["admin_key_id"]), str(a["dev_key_id"])}
    assert all("hash" not in k and "salt" not in k for k in keys)
    assert a["admin_key"].split("_")[-1] not in files["config/api_keys.jsonl"].decode()
    members = {m["username"]: m["role"] for m in jsonl(files["config/members.jsonl"])}
    assert members == {"a-admin": "bu-admin", "a-dev": "developer"}
    # Metrics: this BU's events only.
    events = jsonl(files["metrics/usage_events.jsonl"])
    assert [e["completion_id"] for e in events] == ["c1"]
    assert manifest["rows"]["usage_events"] == 1
    assert "other-bu" not in b"".join(files.values()).decode(errors="replace")
    # Recorded: deletion needs a recent export.
    bu = (await api.get(f"/api/v1/bus/{a['bu'].id}", headers=bearer(world["admin_key"]))).json()
    assert bu["last_exported_at"] is not None
    actions = await audit_actions(db, a["bu"].id)
    assert actions[-1] == "bu.export"
    assert actions.count("bu.export") == 1


async def test_deletion_refuses_the_bu_at_once_and_a_restore_brings_it_back(
    api: httpx.AsyncClient, world: dict[str, Any], db: Database
) -> None:
    a = world["a"]
    admin = world["admin_key"]
    suspend = await api.patch(
        f"/api/v1/bus/{a['bu'].id}", json={"status": "suspended"}, headers=bearer(admin)
    )
    assert suspend.status_code == 200
    assert (await export(api, a["bu"].id, admin)).status_code == 200

    resp = await delete(api, a["bu"].id, admin, {"reason": "BU closed"})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "deleting"
    assert body["deletion_requested_by"] == "admin"
    purge_after = datetime.fromisoformat(body["purge_after"])
    assert timedelta(days=6, hours=23) < purge_after - datetime.now(UTC) <= timedelta(days=7)
    # Its keys are refused like a suspended BU's (the gateway checks keys the same way).
    refused = await api.get(f"/api/v1/bus/{a['bu'].id}", headers=bearer(a["admin_key"]))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "bu_deleting"
    # A change other than a restore is refused while it is being deleted.
    patch = await api.patch(
        f"/api/v1/bus/{a['bu'].id}", json={"status": "active"}, headers=bearer(admin)
    )
    assert patch.status_code == 409
    assert patch.json()["error"]["code"] == "bu_deleting"

    restored = await api.post(f"/api/v1/bus/{a['bu'].id}/restore", headers=bearer(admin))
    assert restored.status_code == 200, restored.text
    assert restored.json()["status"] == "suspended"  # what it was before
    assert restored.json()["purge_after"] is None
    actions = await audit_actions(db, a["bu"].id)
    assert actions[-3:] == ["bu.export", "bu.delete_request", "bu.restore"]
    async with db.platform() as conn:
        cur = await conn.execute(
            "SELECT diff FROM audit_log WHERE tenant_id = %s AND action = 'bu.delete_request'",
            (a["bu"].id,),
        )
        row = await cur.fetchone()
    assert row is not None
    assert row[0]["reason"] == "BU closed"
    assert row[0]["grace_days"] == 7
    assert row[0]["status"] == ["suspended", "deleting"]


async def test_bad_lifecycle_requests_get_clear_4xx_and_change_nothing(
    api: httpx.AsyncClient, world: dict[str, Any], db: Database
) -> None:
    a, b = world["a"], world["b"]
    admin = world["admin_key"]
    unknown = uuid.uuid4()
    for resp in (
        await export(api, unknown, admin),
        await delete(api, unknown, admin),
        await api.post(f"/api/v1/bus/{unknown}/restore", headers=bearer(admin)),
    ):
        assert resp.status_code == 404, resp.text
        assert resp.json()["error"]["code"] == "bu_not_found"

    # No export yet.
    no_export = await delete(api, a["bu"].id, admin)
    assert no_export.status_code == 409
    assert no_export.json()["error"]["code"] == "export_required"
    # A BU admin may export their BU but not delete it; another BU's admin sees nothing.
    assert (await export(api, a["bu"].id, a["admin_key"])).status_code == 200
    own = await delete(api, a["bu"].id, a["admin_key"])
    assert own.status_code == 403
    assert own.json()["error"]["code"] == "platform_admin_required"
    for resp in (
        await export(api, b["bu"].id, a["admin_key"]),
        await delete(api, b["bu"].id, a["admin_key"]),
        await api.post(f"/api/v1/bus/{b['bu'].id}/restore", headers=bearer(a["admin_key"])),
    ):
        assert resp.status_code == 404
        assert resp.json()["error"]["code"] == "bu_not_found"
    # A developer key lacks the admin scope.
    dev = await export(api, a["bu"].id, a["dev_key"])
    assert dev.status_code == 403
    # Malformed bodies.
    for body in ({"grace_days": -1}, {"grace_days": 366}, {"grace_days": "soon"}, {"x": 1}):
        bad = await delete(api, a["bu"].id, admin, body)
        assert bad.status_code == 422, body
        assert bad.json()["error"]["code"] == "validation_failed"
    # Restoring a BU that is not being deleted.
    not_deleting = await api.post(f"/api/v1/bus/{a['bu'].id}/restore", headers=bearer(admin))
    assert not_deleting.status_code == 409
    assert not_deleting.json()["error"]["code"] == "bu_not_deleting"
    assert (await api.get(f"/api/v1/bus/{a['bu'].id}", headers=bearer(admin))).json()[
        "status"
    ] == "active"

    first = await delete(api, a["bu"].id, admin, {"grace_days": 3})
    assert first.status_code == 202
    twice = await delete(api, a["bu"].id, admin, {"grace_days": 0})
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "bu_already_deleting"
    assert datetime.fromisoformat(
        twice.json()["error"]["details"]["purge_after"]
    ) == datetime.fromisoformat(first.json()["purge_after"])
    assert await audit_actions(db, a["bu"].id) == ["bu.export", "bu.delete_request"]
    assert (await audit_actions(db, b["bu"].id)) == []


async def test_an_immediate_deletion_sends_the_purge_and_cannot_be_restored(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    settings: Any,
    sync_db: SyncDatabase,
    tmp_path: Path,
) -> None:
    a, b = world["a"], world["b"]
    admin = world["admin_key"]
    assert (await export(control, a["bu"].id, admin)).status_code == 200
    assert (await export(control, b["bu"].id, admin)).status_code == 200
    later = await delete(control, b["bu"].id, admin, {"grace_days": 2})
    assert later.status_code == 202
    assert queued_tasks(broker_url(settings)) == []  # nothing to do for two days
    now = await delete(control, a["bu"].id, admin, {"grace_days": 0})
    assert now.status_code == 202
    assert queued_tasks(broker_url(settings)) == [(service.PURGE, [str(a["bu"].id)])]
    late = await control.post(f"/api/v1/bus/{a['bu'].id}/restore", headers=bearer(admin))
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "grace_period_over"
    # The purge step does nothing to a BU whose grace period runs on, or to an active one.
    outcome = service.purge(sync_db, tmp_path, b["bu"].id, lambda _: None)
    assert outcome.action == "not_due"
    restored = await control.post(f"/api/v1/bus/{b['bu'].id}/restore", headers=bearer(admin))
    assert restored.status_code == 200
    assert service.purge(sync_db, tmp_path, b["bu"].id, lambda _: None).action == "not_deleting"
    assert service.purge(sync_db, tmp_path, uuid.uuid4(), lambda _: None).action == "missing"


pytestmark = pytest.mark.usefixtures("world")


async def test_an_immediate_deletion_stands_when_the_broker_is_down(
    world: dict[str, Any], settings: Any
) -> None:
    from cove.platform.api.app import PlatformSettings, create_app
    from cove.platform.local.procs import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(PlatformSettings(**{**settings.model_dump(), "redis_url": dead}))
    admin = world["admin_key"]
    bu = world["a"]["bu"].id
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://platform") as client:
            assert (await export(client, bu, admin)).status_code == 200
            resp = await delete(client, bu, admin, {"grace_days": 0})
            assert resp.status_code == 202, resp.text
            assert resp.json()["status"] == "deleting"


async def test_the_export_reads_one_read_only_snapshot(db: Database, world: dict[str, Any]) -> None:
    bu = world["a"]["bu"].id
    async with db.tenant(bu, snapshot=True) as conn:
        cur = await conn.execute("SHOW transaction_isolation")
        assert await cur.fetchone() == ("repeatable read",)
        first = await (await conn.execute("SELECT count(*) FROM usage_events")).fetchone()
        # Written meanwhile by another transaction: not seen by this one.
        await write_events(db, [event(bu, "completion.served", "late")])
        again = await (await conn.execute("SELECT count(*) FROM usage_events")).fetchone()
        assert first == again == (0,)
    async with db.tenant(bu) as conn:
        seen = await (await conn.execute("SELECT count(*) FROM usage_events")).fetchone()
    assert seen == (1,)
