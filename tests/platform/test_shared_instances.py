"""Base instances shared across BUs: a platform admin runs one multi-LoRA instance, BUs granted
its base model put their own adapters on it, and the gateway routes each BU's requests there
under the BU's adapter name, never another BU's. The instance is a stand-in at the HTTP
boundary (`FakeVllm` plus a completions recorder) so the tests see which adapter each request
asked for; the reconciler, the API, Postgres and the gateway are real."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from cove.gateway.app import create_app
from cove.gateway.settings import GatewaySettings
from cove.platform.core.db import Database, SyncDatabase
from cove.platform.core.settings import CoveSettings
from tests.conftest import ServerThread
from tests.factories import bearer
from tests.platform.deployments_support import (
    FakeVllm,
    control,  # noqa: F401 - a fixture
    reconcile_external,
    register_base,
    sync_db,  # noqa: F401 - a fixture
)

SHARED = "/api/v1/shared-instances"


@pytest.fixture
def upstream() -> Iterator[tuple[FakeVllm, ServerThread, list[str]]]:
    """One vLLM stand-in: the LoRA and metrics calls of FakeVllm, and completions that record
    the model (base or adapter name) each request asked for."""
    fake = FakeVllm()
    asked: list[str] = []

    async def complete(request: Request) -> JSONResponse:
        body = await request.json()
        asked.append(body["model"])
        return JSONResponse(
            {
                "id": f"cmpl-{uuid.uuid4().hex}",
                "object": "text_completion",
                "model": body["model"],
                "choices": [{"index": 0, "text": "x", "finish_reason": "stop"}],
            }
        )

    app = fake.app()
    app.add_route("/v1/completions", complete, methods=["POST"])
    with ServerThread(app) as server:
        yield fake, server, asked


@pytest.fixture
async def catalog(control: httpx.AsyncClient, world: dict[str, Any]) -> dict[str, Any]:
    """cove-tiny granted to BUs a and b; coder-7b granted to a only; a rank-8 adapter of
    cove-tiny for each BU, a rank-64 one for a, and one of coder-7b for a."""
    await register_base(
        control, world, location="base/cove-tiny", context_length=1024, grant=("a", "b")
    )
    await register_base(
        control, world, name="coder-7b", location="base/coder-7b", context_length=8192
    )
    adapters = {}
    for slug, name, base, rank in (
        ("a", "a-sdk", "cove-tiny", 8),
        ("a", "a-big", "cove-tiny", 64),
        ("a", "a-coder", "coder-7b", 8),
        ("b", "b-sdk", "cove-tiny", 8),
    ):
        resp = await control.post(
            f"/api/v1/bus/{world[slug]['bu'].id}/adapters",
            json={"name": name, "base_model": base, "location": f"adapters/{name}", "rank": rank},
            headers=bearer(world[slug]["admin_key"]),
        )
        assert resp.status_code == 201, resp.text
        adapters[name] = resp.json()
    return adapters


async def _create_shared(
    control: httpx.AsyncClient, world: dict[str, Any], body: dict[str, Any]
) -> httpx.Response:
    return await control.post(SHARED, json=body, headers=bearer(world["admin_key"]))


def _bu(world: dict[str, Any], slug: str, rest: str = "") -> str:
    return f"/api/v1/bus/{world[slug]['bu'].id}/shared-instances{rest}"


async def _attach(
    control: httpx.AsyncClient, world: dict[str, Any], slug: str, instance: str, model: str
) -> httpx.Response:
    return await control.post(
        _bu(world, slug, f"/{instance}/adapters"),
        json={"model": model},
        headers=bearer(world[slug]["admin_key"]),
    )


def _complete(url: str, key: str, model: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/completions",
        json={"model": model, "prompt": "x", "max_tokens": 1},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


async def test_bus_share_one_instance_and_each_reaches_only_its_own_adapters(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
    upstream: tuple[FakeVllm, ServerThread, list[str]],
    sync_db: SyncDatabase,
    settings: CoveSettings,
) -> None:
    fake, server, asked = upstream
    created = await _create_shared(
        control,
        world,
        {"name": "tiny-shared", "model": "cove-tiny", "endpoint_url": server.url},
    )
    assert created.status_code == 201, created.text
    instance = created.json()
    assert (instance["tenant_id"], instance["mode"], instance["gpus"]) == (None, "shared", 0)

    for slug, adapter in (("a", "a-sdk"), ("b", "b-sdk")):
        resp = await _attach(control, world, slug, instance["id"], adapter)
        assert resp.status_code == 202, resp.text
        assert resp.json()["state"] == "pending"
    # Nothing reached the instance before the reconciler ran.
    assert fake.lora_calls() == []
    outcome = reconcile_external(sync_db, uuid.UUID(instance["id"]))
    assert outcome.status == "ready"
    loaded = sorted(body["lora_name"] for p, body in fake.lora_calls() if "load" in p)
    assert loaded == ["a-sdk", "b-sdk"]

    # Each BU sees the instance with its own adapter only; the platform admin sees both.
    for slug, mine in (("a", "a-sdk"), ("b", "b-sdk")):
        seen = await control.get(_bu(world, slug), headers=bearer(world[slug]["admin_key"]))
        assert seen.status_code == 200, seen.text
        [shared] = seen.json()
        assert shared["name"] == "tiny-shared"
        assert [(a["model"], a["state"]) for a in shared["adapters"]] == [(mine, "loaded")]
    platform = await control.get(f"{SHARED}/{instance['id']}", headers=bearer(world["admin_key"]))
    assert sorted(a["model"] for a in platform.json()["adapters"]) == ["a-sdk", "b-sdk"]

    # The gateway: each BU reaches its own adapter and the shared base, never the other's.
    gateway_settings = GatewaySettings(**{**settings.model_dump(), "cache_refresh_seconds": 60.0})
    with ServerThread(create_app(gateway_settings)) as gateway:
        own_a = _complete(gateway.url, world["a"]["dev_key"], "a-sdk")
        own_b = _complete(gateway.url, world["b"]["dev_key"], "b-sdk")
        base_a = _complete(gateway.url, world["a"]["dev_key"], "cove-tiny")
        a_asks_b = _complete(gateway.url, world["a"]["dev_key"], "b-sdk")
        b_asks_a = _complete(gateway.url, world["b"]["dev_key"], "a-sdk")
    assert own_a.status_code == 200, own_a.text
    assert own_a.headers["x-cove-model-version"] == "a-sdk"
    assert own_b.status_code == 200, own_b.text
    assert base_a.status_code == 200, base_a.text
    for refused in (a_asks_b, b_asks_a):
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["code"] == "model_not_found"
    assert asked == ["a-sdk", "b-sdk", "cove-tiny"]

    # The instance restarted and lost its adapters: the next reconcile restores both BUs'.
    fake.served.difference_update({"a-sdk", "b-sdk"})
    reconcile_external(sync_db, uuid.UUID(instance["id"]))
    assert {"a-sdk", "b-sdk"} <= fake.served

    # Its GPUs are the platform's: listed in the BU's capacity, counted in no quota.
    capacity = await control.get(
        f"/api/v1/bus/{world['a']['bu'].id}/capacity", headers=bearer(world["a"]["admin_key"])
    )
    assert capacity.json()["gpus_in_use"] == 0
    assert [s["name"] for s in capacity.json()["shared_instances"]] == ["tiny-shared"]


async def test_a_bu_cannot_touch_another_bus_adapter_on_the_shared_instance(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
    upstream: tuple[FakeVllm, ServerThread, list[str]],
    sync_db: SyncDatabase,
    db: Database,
) -> None:
    fake, server, _ = upstream
    created = await _create_shared(
        control, world, {"name": "tiny-shared", "model": "cove-tiny", "endpoint_url": server.url}
    )
    instance = created.json()["id"]
    assert (await _attach(control, world, "b", instance, "b-sdk")).status_code == 202
    reconcile_external(sync_db, uuid.UUID(instance))

    b_sdk = catalog["b-sdk"]["id"]
    a_headers = bearer(world["a"]["admin_key"])
    # A may not load B's adapter, unload it, or reach the instance through its own routes.
    load = await _attach(control, world, "a", instance, "b-sdk")
    assert (load.status_code, load.json()["error"]["code"]) == (404, "model_not_found")
    unload = await control.delete(
        _bu(world, "a", f"/{instance}/adapters/{b_sdk}"), headers=a_headers
    )
    assert (unload.status_code, unload.json()["error"]["code"]) == (404, "adapter_not_found")
    via_deployments = await control.post(
        f"/api/v1/bus/{world['a']['bu'].id}/deployments/{instance}/adapters",
        json={"model": "a-sdk"},
        headers=a_headers,
    )
    assert via_deployments.status_code == 404
    # A's admin naming B's BU in the path is refused like any other cross-tenant call.
    cross = await control.delete(
        _bu(world, "b", f"/{instance}/adapters/{b_sdk}"), headers=a_headers
    )
    assert cross.status_code == 404
    async with db.platform() as conn:
        cur = await conn.execute(
            "SELECT state FROM deployment_adapters WHERE deployment_id = %s AND model_id = %s",
            (instance, b_sdk),
        )
        assert await cur.fetchall() == [("loaded",)]
    assert [p for p, _ in fake.lora_calls() if "unload" in p] == []


async def test_shared_instances_are_the_platforms_and_bad_input_is_refused(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
    upstream: tuple[FakeVllm, ServerThread, list[str]],
    sync_db: SyncDatabase,
) -> None:
    fake, server, _ = upstream
    body = {"name": "tiny-shared", "model": "cove-tiny", "endpoint_url": server.url}
    by_bu_admin = await control.post(SHARED, json=body, headers=bearer(world["a"]["admin_key"]))
    assert (by_bu_admin.status_code, by_bu_admin.json()["error"]["code"]) == (
        403,
        "platform_admin_required",
    )
    listed = await control.get(SHARED, headers=bearer(world["a"]["admin_key"]))
    assert listed.status_code == 403
    cases = [
        ({**body, "model": "nope"}, 404, "model_not_found"),
        ({**body, "model": "a-sdk"}, 404, "model_not_found"),
        ({"name": "x", "model": "cove-tiny"}, 422, "invalid_deployment_spec"),
        ({**body, "mode": "dedicated"}, 422, "validation_failed"),
        ({**body, "name": "Bad Name"}, 422, "validation_failed"),
        ({**body, "runtime": "local"}, 422, "invalid_deployment_spec"),
    ]
    for payload, status, code in cases:
        resp = await _create_shared(control, world, payload)
        assert resp.status_code == status, (payload, resp.text)
        assert resp.json()["error"]["code"] == code, (payload, resp.text)
    created = await _create_shared(control, world, {**body, "vllm": {"max_lora_rank": 16}})
    assert created.status_code == 201, created.text
    instance = created.json()["id"]
    again = await _create_shared(control, world, body)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "shared_instance_exists")

    # Incompatible adapters are refused before the instance is touched.
    for slug, model, status, code in (
        ("a", "a-big", 422, "adapter_rank_too_high"),
        ("a", "a-coder", 409, "adapter_base_mismatch"),
        ("a", "cove-tiny", 422, "not_an_adapter"),
    ):
        resp = await _attach(control, world, slug, instance, model)
        assert resp.status_code == status, (model, resp.text)
        assert resp.json()["error"]["code"] == code, (model, resp.text)
    assert fake.lora_calls() == []

    # A BU not granted the base model does not see the instance at all.
    coder = await _create_shared(
        control,
        world,
        {"name": "coder-shared", "model": "coder-7b", "endpoint_url": server.url},
    )
    assert coder.status_code == 201, coder.text
    b_view = await control.get(_bu(world, "b"), headers=bearer(world["b"]["admin_key"]))
    assert [s["name"] for s in b_view.json()] == ["tiny-shared"]
    hidden = await _attach(control, world, "b", coder.json()["id"], "b-sdk")
    assert (hidden.status_code, hidden.json()["error"]["code"]) == (
        404,
        "shared_instance_not_found",
    )
    dev = await _attach(control, world, "a", instance, "a-sdk")
    assert dev.status_code == 202
    by_dev = await control.post(
        _bu(world, "a", f"/{instance}/adapters"),
        json={"model": "a-sdk"},
        headers=bearer(world["a"]["dev_key"]),
    )
    assert by_dev.status_code == 403


async def test_deletion_waits_for_the_bus_and_every_step_is_audited(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
    upstream: tuple[FakeVllm, ServerThread, list[str]],
    sync_db: SyncDatabase,
) -> None:
    fake, server, _ = upstream
    created = await _create_shared(
        control, world, {"name": "tiny-shared", "model": "cove-tiny", "endpoint_url": server.url}
    )
    instance = created.json()["id"]
    a_headers = bearer(world["a"]["admin_key"])
    assert (await _attach(control, world, "a", instance, "a-sdk")).status_code == 202
    reconcile_external(sync_db, uuid.UUID(instance))

    # BU a's release may send traffic to its adapter on the shared instance ...
    release = await control.put(
        f"/api/v1/bus/{world['a']['bu'].id}/release", json={"stable": "a-sdk"}, headers=a_headers
    )
    assert release.status_code == 200, release.text
    # ... and then the adapter cannot be taken away from under it.
    a_sdk = catalog["a-sdk"]["id"]
    stranded = await control.delete(
        _bu(world, "a", f"/{instance}/adapters/{a_sdk}"), headers=a_headers
    )
    assert (stranded.status_code, stranded.json()["error"]["code"]) == (409, "adapter_in_release")

    in_use = await control.delete(f"{SHARED}/{instance}", headers=bearer(world["admin_key"]))
    assert in_use.status_code == 409
    assert in_use.json()["error"]["code"] == "shared_instance_in_use"
    assert in_use.json()["error"]["details"]["adapters"] == [
        {"bu": world["a"]["bu"].slug, "adapter": "a-sdk"}
    ]

    cleared = await control.delete(f"/api/v1/bus/{world['a']['bu'].id}/release", headers=a_headers)
    assert cleared.status_code in (200, 204), cleared.text
    removed = await control.delete(
        _bu(world, "a", f"/{instance}/adapters/{a_sdk}"), headers=a_headers
    )
    assert removed.status_code == 202, removed.text
    reconcile_external(sync_db, uuid.UUID(instance))
    assert "a-sdk" not in fake.served
    deleted = await control.delete(f"{SHARED}/{instance}", headers=bearer(world["admin_key"]))
    assert deleted.status_code == 202, deleted.text
    assert deleted.json()["desired_state"] == "deleted"
    assert reconcile_external(sync_db, uuid.UUID(instance)).action == "deleted"
    gone = await control.get(f"{SHARED}/{instance}", headers=bearer(world["admin_key"]))
    assert gone.status_code == 404

    audit = await control.get(
        "/api/v1/audit", params={"limit": 100}, headers=bearer(world["admin_key"])
    )
    assert audit.status_code == 200, audit.text
    steps = [
        (entry["action"], entry["target"])
        for entry in reversed(audit.json()["entries"])
        if (entry.get("target") or "").startswith("shared-instance:")
    ]
    assert steps == [
        ("shared_instance.create", "shared-instance:tiny-shared"),
        ("deployment.adapter_load", "shared-instance:tiny-shared"),
        ("deployment.adapter_unload", "shared-instance:tiny-shared"),
        ("shared_instance.delete", "shared-instance:tiny-shared"),
    ]


async def test_the_platform_scales_a_shared_instance_and_the_adapters_on_it_must_still_fit(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
    upstream: tuple[FakeVllm, ServerThread, list[str]],
    sync_db: SyncDatabase,
) -> None:
    _, server, _ = upstream
    created = await _create_shared(
        control,
        world,
        {
            "name": "tiny-shared",
            "model": "cove-tiny",
            "endpoint_url": server.url,
            "vllm": {"max_lora_rank": 16},
        },
    )
    instance = created.json()
    assert (await _attach(control, world, "a", instance["id"], "a-sdk")).status_code == 202
    path = f"{SHARED}/{instance['id']}"
    admin = bearer(world["admin_key"])

    by_bu = await control.patch(
        path, json={"generation": 1, "replicas": 2}, headers=bearer(world["a"]["admin_key"])
    )
    assert by_bu.status_code == 403
    too_small = await control.patch(
        path, json={"generation": 1, "vllm": {"max_lora_rank": 1}}, headers=admin
    )
    assert (too_small.status_code, too_small.json()["error"]["code"]) == (
        409,
        "adapter_rank_too_high",
    )
    assert "a-sdk" in too_small.json()["error"]["message"]

    scaled = await control.patch(
        path,
        json={"generation": 1, "replicas": 2, "gpus_per_replica": 1, "vllm": {"max_lora_rank": 8}},
        headers=admin,
    )
    assert scaled.status_code == 200, scaled.text
    assert (scaled.json()["generation"], scaled.json()["gpus"]) == (2, 2)
    assert scaled.json()["max_lora_rank"] == 8
    stale = await control.patch(path, json={"generation": 1, "replicas": 3}, headers=admin)
    assert (stale.status_code, stale.json()["error"]["code"]) == (409, "generation_conflict")

    # Two more GPUs for the platform; none for the BUs whose adapters run there.
    for slug in ("a", "b"):
        capacity = await control.get(
            f"/api/v1/bus/{world[slug]['bu'].id}/capacity",
            headers=bearer(world[slug]["admin_key"]),
        )
        assert capacity.json()["gpus_in_use"] == 0
    audit = await control.get(
        "/api/v1/audit", params={"action": "shared_instance.update"}, headers=admin
    )
    [entry] = audit.json()["entries"]
    assert entry["target"] == "shared-instance:tiny-shared"
    assert entry["diff"]["generation"] == [1, 2]
