"""A BU's release: set stable and canary, promote, roll back, clear; only routable models;
history, audit and the routes the gateway reads after each step."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cove.gateway import repository as gateway_repository
from cove.platform.core.db import Database, SyncDatabase
from tests.conftest import ServerThread
from tests.factories import bearer
from tests.platform.deployments_support import (
    FakeVllm,
    control,  # noqa: F401 - a fixture
    lora_adapter,
    reconcile_external,
    register_base,
    sync_db,  # noqa: F401 - a fixture
)


@pytest.fixture
def instance() -> Iterator[ServerThread]:
    with ServerThread(FakeVllm().app()) as server:
        yield server


@pytest.fixture
async def served(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    tiny_model: Path,
    instance: ServerThread,
    sync_db: SyncDatabase,
) -> dict[str, Any]:
    """BU a: cove-tiny on a shared deployment with adapter v1 loaded and v2 registered only."""
    await register_base(control, world, location=str(tiny_model))
    bu = world["a"]["bu"].id
    headers = bearer(world["a"]["admin_key"])
    for name in ("a-sdk-v1", "a-sdk-v2"):
        resp = await control.post(
            f"/api/v1/bus/{bu}/adapters",
            json={
                "name": name,
                "base_model": "cove-tiny",
                "location": str(lora_adapter(tiny_model, 8)),
            },
            headers=headers,
        )
        assert resp.status_code == 201, resp.text
    deployment = (
        await control.post(
            f"/api/v1/bus/{bu}/deployments",
            json={
                "name": "shared",
                "model": "cove-tiny",
                "mode": "shared",
                "endpoint_url": instance.url,
            },
            headers=headers,
        )
    ).json()
    await control.post(
        f"/api/v1/bus/{bu}/deployments/{deployment['id']}/adapters",
        json={"model": "a-sdk-v1"},
        headers=headers,
    )
    assert reconcile_external(sync_db, uuid.UUID(deployment["id"])).status == "ready"
    return {"deployment": deployment, "path": f"/api/v1/bus/{bu}/release", "headers": headers}


async def _gateway_release(db: Database, tenant: Any) -> Any:
    async with db.platform() as conn:
        releases = await gateway_repository.all_releases(conn)
    return next((r for r in releases if r.tenant_id == tenant), None)


async def test_set_promote_rollback_clear_with_history_and_audit(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    served: dict[str, Any],
    db: Database,
) -> None:
    path, headers = served["path"], served["headers"]
    tenant = world["a"]["bu"].id
    empty = await control.get(path, headers=headers)
    assert empty.status_code == 200
    assert (empty.json()["stable"], empty.json()["version"], empty.json()["history"]) == (
        None,
        0,
        [],
    )

    put = await control.put(
        path,
        json={
            "stable": "cove-tiny",
            "canary": "a-sdk-v1",
            "canary_percent": 30,
            "canary_groups": ["/cove/bu-a/early", "/cove/bu-a/early"],
            "version": 0,
        },
        headers=headers,
    )
    assert put.status_code == 200, put.text
    release = put.json()
    assert (release["stable"], release["canary"], release["canary_percent"]) == (
        "cove-tiny",
        "a-sdk-v1",
        30,
    )
    assert release["canary_groups"] == ["/cove/bu-a/early"]
    assert release["version"] == 1
    assert release["updated_by"] == "a-admin"
    gateway = await _gateway_release(db, tenant)
    assert (gateway.stable, gateway.canary, gateway.canary_percent) == ("cove-tiny", "a-sdk-v1", 30)

    promoted = await control.post(f"{path}/promote", headers=headers)
    assert promoted.status_code == 200, promoted.text
    body = promoted.json()
    assert (body["stable"], body["canary"], body["previous_stable"]) == (
        "a-sdk-v1",
        None,
        "cove-tiny",
    )
    assert (body["canary_percent"], body["canary_groups"]) == (0, [])
    gateway = await _gateway_release(db, tenant)
    assert (gateway.stable, gateway.canary) == ("a-sdk-v1", None)

    rolled = await control.post(f"{path}/rollback", json={"version": 2}, headers=headers)
    assert rolled.status_code == 200, rolled.text
    body = rolled.json()
    assert (body["stable"], body["previous_stable"], body["version"]) == (
        "cove-tiny",
        "a-sdk-v1",
        3,
    )
    assert [(h["action"], h["version"], h["stable"]) for h in body["history"]] == [
        ("rollback", 3, "cove-tiny"),
        ("promote", 2, "a-sdk-v1"),
        ("set", 1, "cove-tiny"),
    ]
    assert body["history"][2]["canary"] == "a-sdk-v1"
    assert {h["actor"] for h in body["history"]} == {"a-admin"}

    cleared = await control.delete(path, headers=headers)
    assert cleared.status_code == 200
    assert cleared.json()["stable"] is None
    assert cleared.json()["history"][0]["action"] == "clear"
    assert await _gateway_release(db, tenant) is None
    again = await control.put(path, json={"stable": "cove-tiny"}, headers=headers)
    assert again.json()["version"] == 5  # versions keep counting across a clear

    async with db.platform() as conn:
        actions = await (
            await conn.execute(
                "SELECT action, diff FROM audit_log WHERE action LIKE 'release.%%' ORDER BY id"
            )
        ).fetchall()
    assert [a for a, _ in actions] == [
        "release.set",
        "release.promote",
        "release.rollback",
        "release.clear",
        "release.set",
    ]
    assert actions[1][1]["stable"] == ["cove-tiny", "a-sdk-v1"]


async def test_only_routable_models_can_be_released(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    served: dict[str, Any],
    tiny_model: Path,
) -> None:
    path, headers = served["path"], served["headers"]
    admin = bearer(world["admin_key"])
    tiny = (await control.get("/api/v1/models", headers=admin)).json()[0]
    granted = await control.put(
        f"/api/v1/models/{tiny['id']}/grants/{world['b']['bu'].id}", headers=admin
    )
    assert granted.status_code == 200
    made = await control.post(
        f"/api/v1/bus/{world['b']['bu'].id}/adapters",
        json={
            "name": "b-sdk-v1",
            "base_model": "cove-tiny",
            "location": str(lora_adapter(tiny_model, 8)),
        },
        headers=bearer(world["b"]["admin_key"]),
    )
    assert made.status_code == 201
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({"stable": "nope"}, 404, "model_not_found", "nope"),
        ({"stable": "b-sdk-v1"}, 404, "model_not_found", "b-sdk-v1"),
        ({"stable": "a-sdk-v2"}, 409, "model_not_routable", "load the adapter"),
        ({"stable": "cove-tiny", "canary": "a-sdk-v2"}, 409, "model_not_routable", "canary"),
        ({"stable": "cove-tiny", "canary": "cove-tiny"}, 422, "canary_is_stable", "differ"),
        ({"stable": "cove-tiny", "canary_percent": 10}, 422, "canary_required", "canary"),
        ({"stable": "cove-tiny", "canary": "a-sdk-v1", "canary_percent": 101}, 422, "", ""),
    ]
    for body, status, code, reason in cases:
        resp = await control.put(path, json=body, headers=headers)
        assert resp.status_code == status, (body, resp.text)
        if code:
            assert resp.json()["error"]["code"] == code, (body, resp.text)
            assert reason in resp.text
    assert (await control.get(path, headers=headers)).json()["version"] == 0
    no_release = await control.post(f"{path}/promote", headers=headers)
    assert no_release.status_code == 409
    assert no_release.json()["error"]["code"] == "no_release"
    await control.put(path, json={"stable": "cove-tiny"}, headers=headers)
    no_canary = await control.post(f"{path}/promote", headers=headers)
    assert no_canary.json()["error"]["code"] == "no_canary"
    no_previous = await control.post(f"{path}/rollback", headers=headers)
    assert no_previous.json()["error"]["code"] == "no_previous"
    as_dev = await control.put(
        path, json={"stable": "cove-tiny"}, headers=bearer(world["a"]["dev_key"])
    )
    assert as_dev.status_code == 403


async def test_what_a_release_uses_cannot_be_unloaded_or_deleted(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    served: dict[str, Any],
) -> None:
    path, headers = served["path"], served["headers"]
    deployment = served["deployment"]
    await control.put(path, json={"stable": "cove-tiny", "canary": "a-sdk-v1"}, headers=headers)
    bu = world["a"]["bu"].id
    adapter_id = next(
        m["id"]
        for m in (await control.get(f"/api/v1/bus/{bu}/models", headers=headers)).json()
        if m["name"] == "a-sdk-v1"
    )
    unload = await control.delete(
        f"/api/v1/bus/{bu}/deployments/{deployment['id']}/adapters/{adapter_id}", headers=headers
    )
    assert unload.status_code == 409
    assert unload.json()["error"]["code"] == "adapter_in_release"
    delete = await control.delete(
        f"/api/v1/bus/{bu}/deployments/{deployment['id']}", headers=headers
    )
    assert delete.status_code == 409
    assert delete.json()["error"]["code"] == "deployment_in_release"
    assert "stable model 'cove-tiny'" in delete.json()["error"]["message"]
    adapter_delete = await control.delete(
        f"/api/v1/bus/{bu}/adapters/{adapter_id}", headers=headers
    )
    assert adapter_delete.status_code == 409


async def test_concurrent_release_edits_with_a_version_let_one_win(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    served: dict[str, Any],
) -> None:
    path, headers = served["path"], served["headers"]
    await control.put(path, json={"stable": "cove-tiny"}, headers=headers)
    answers = await asyncio.gather(
        control.put(
            path,
            json={"stable": "cove-tiny", "canary": "a-sdk-v1", "canary_percent": 10, "version": 1},
            headers=headers,
        ),
        control.put(path, json={"stable": "a-sdk-v1", "version": 1}, headers=headers),
    )
    assert sorted(a.status_code for a in answers) == [200, 409]
    loser = next(a for a in answers if a.status_code == 409)
    assert loser.json()["error"]["code"] == "release_version_conflict"
    assert (await control.get(path, headers=headers)).json()["version"] == 2
