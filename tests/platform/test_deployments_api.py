"""The deployments API: specs, GPU quota admission, optimistic concurrency, fallbacks,
adapters checked before an instance is touched, deletion, tasks enqueued after commit, health
and capacity. Instances here are a stand-in at the HTTP boundary (`FakeVllm`) so the tests can
see every request that reached one; the real vLLM runs in test_deployments_local_e2e.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from cove.gateway import repository as gateway_repository
from cove.platform.core.db import Database, SyncDatabase
from cove.platform.core.settings import CoveSettings
from cove.platform.deployments.tasks import check_all
from tests.conftest import ServerThread
from tests.factories import bearer
from tests.platform.deployments_support import (
    FakeVllm,
    broker_url,
    control,  # noqa: F401 - a fixture
    lora_adapter,
    queued_tasks,
    reconcile_external,
    register_base,
    sync_db,  # noqa: F401 - a fixture
)

pytestmark = pytest.mark.usefixtures("world")


@pytest.fixture
def instance() -> Iterator[tuple[FakeVllm, ServerThread]]:
    fake = FakeVllm()
    with ServerThread(fake.app()) as server:
        yield fake, server


@pytest.fixture
async def catalog(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    tiny_model: Path,
) -> dict[str, Any]:
    """cove-tiny (local directory) and coder-7b (on the model volume), granted to both BUs,
    and adapters of cove-tiny for BU a (rank 8 and 16) and BU b (rank 8)."""
    tiny = await register_base(control, world, location=str(tiny_model), grant=("a", "b"))
    coder = await register_base(
        control,
        world,
        name="coder-7b",
        location="base/coder-7b",
        context_length=8192,
        grant=("a", "b"),
    )
    adapters = {}
    for slug, name, rank in (("a", "a-sdk-v1", 8), ("a", "a-sdk-r16", 16), ("b", "b-sdk-v1", 8)):
        resp = await control.post(
            f"/api/v1/bus/{world[slug]['bu'].id}/adapters",
            json={
                "name": name,
                "base_model": "cove-tiny",
                "location": str(lora_adapter(tiny_model, rank)),
            },
            headers=bearer(world[slug]["admin_key"]),
        )
        assert resp.status_code == 201, resp.text
        adapters[name] = resp.json()
    other = await control.post(
        f"/api/v1/bus/{world['a']['bu'].id}/adapters",
        json={"name": "a-coder-v1", "base_model": "coder-7b", "location": "adapters/c", "rank": 8},
        headers=bearer(world["a"]["admin_key"]),
    )
    adapters["a-coder-v1"] = other.json()
    return {"tiny": tiny, "coder": coder, "adapters": adapters}


def _url(world: dict[str, Any], slug: str = "a", rest: str = "") -> str:
    return f"/api/v1/bus/{world[slug]['bu'].id}/deployments{rest}"


async def _create(
    api: httpx.AsyncClient, world: dict[str, Any], body: dict[str, Any], slug: str = "a"
) -> httpx.Response:
    return await api.post(_url(world, slug), json=body, headers=bearer(world[slug]["admin_key"]))


async def _set_quota(api: httpx.AsyncClient, world: dict[str, Any], **limits: int) -> None:
    resp = await api.patch(
        f"/api/v1/bus/{world['a']['bu'].id}", json=limits, headers=bearer(world["admin_key"])
    )
    assert resp.status_code == 200, resp.text


async def _count(db: Database, sql: str, *params: Any) -> int:
    async with db.platform() as conn:
        row = await (await conn.execute(sql, params)).fetchone()
    assert row is not None
    return int(row[0])


async def test_an_external_instance_registers_as_before(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
    settings: CoveSettings,
) -> None:
    resp = await _create(
        control,
        world,
        {"name": "default", "model": "cove-tiny", "endpoint_url": "http://127.0.0.1:9/"},
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["runtime"] == "external"
    assert body["endpoint_url"] == "http://127.0.0.1:9"
    assert body["status"] == "pending"
    assert body["generation"] == 1
    assert body["observed_generation"] == 0
    assert body["spec"]["replicas"] == 1
    assert body["gpus"] == 0
    assert body["adapters"] == []
    # The reconcile task reached the broker, after the commit, with the id only.
    assert queued_tasks(broker_url(settings)) == [("deployment.reconcile", [body["id"]])]


async def test_a_refused_change_enqueues_nothing_and_writes_nothing(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
    settings: CoveSettings,
    db: Database,
) -> None:
    await _set_quota(control, world, gpu_quota=1)
    resp = await _create(
        control,
        world,
        {"name": "coder", "model": "coder-7b", "runtime": "kubernetes", "replicas": 2},
    )
    assert resp.status_code == 409
    assert queued_tasks(broker_url(settings)) == []
    assert await _count(db, "SELECT count(*) FROM model_deployments") == 0
    assert (
        await _count(db, "SELECT count(*) FROM audit_log WHERE action = 'deployment.create'") == 0
    )


async def test_gpu_quota_is_admitted_with_the_arithmetic(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
) -> None:
    await _set_quota(control, world, gpu_quota=4, max_model_instances=2)
    first = await _create(
        control,
        world,
        {"name": "coder", "model": "coder-7b", "runtime": "kubernetes", "replicas": 2},
    )
    assert first.status_code == 201, first.text
    assert first.json()["gpus"] == 2
    assert first.json()["endpoint_url"] == "http://coder.cove-bu-bu-a.svc:8000"
    over = await _create(
        control,
        world,
        {
            "name": "big",
            "model": "coder-7b",
            "runtime": "kubernetes",
            "replicas": 2,
            "gpus_per_replica": 2,
            "vllm": {"tensor_parallel_size": 2},
        },
    )
    assert over.status_code == 409, over.text
    error = over.json()["error"]
    assert error["code"] == "gpu_quota_exceeded"
    assert error["details"] == {"requested": 4, "in_use": 2, "quota": 4}
    assert "2 replicas x 2 GPUs = 4 GPUs" in error["message"]
    assert "2 + 4 = 6 > 4" in error["message"]
    fits = await _create(
        control,
        world,
        {"name": "small", "model": "coder-7b", "runtime": "kubernetes", "replicas": 2},
    )
    assert fits.status_code == 201, fits.text
    third = await _create(
        control,
        world,
        {"name": "cpu", "model": "coder-7b", "runtime": "kubernetes", "gpus_per_replica": 0},
    )
    assert third.status_code == 409
    assert third.json()["error"]["code"] == "instance_quota_exceeded"
    capacity = await control.get(
        f"/api/v1/bus/{world['a']['bu'].id}/capacity", headers=bearer(world["a"]["admin_key"])
    )
    assert capacity.status_code == 200
    report = capacity.json()
    assert (report["gpu_quota"], report["gpus_in_use"], report["gpus_available"]) == (4, 4, 0)
    assert report["managed_instances"] == 2
    assert sorted(d["name"] for d in report["deployments"]) == ["coder", "small"]
    # Growing an instance is admitted the same way.
    coder = first.json()
    grow = await control.patch(
        _url(world, rest=f"/{coder['id']}"),
        json={"generation": 1, "replicas": 3},
        headers=bearer(world["a"]["admin_key"]),
    )
    assert grow.status_code == 409
    assert grow.json()["error"]["details"] == {"requested": 3, "in_use": 2, "quota": 4}


@pytest.mark.parametrize(
    ("body", "status", "code", "reason"),
    [
        ({"model": "nope", "endpoint_url": "http://x:1"}, 404, "model_not_found", "nope"),
        ({"model": "a-sdk-v1", "endpoint_url": "http://x:1"}, 422, "not_a_base_model", "adapter"),
        ({"model": "cove-tiny"}, 422, "invalid_deployment_spec", "endpoint_url: required"),
        (
            {"model": "cove-tiny", "runtime": "local", "endpoint_url": "http://x:1"},
            422,
            "invalid_deployment_spec",
            "Cove assigns the address",
        ),
        (
            {"model": "cove-tiny", "runtime": "local", "replicas": 2},
            422,
            "invalid_deployment_spec",
            "exactly one process",
        ),
        (
            {"model": "coder-7b", "runtime": "local"},
            422,
            "invalid_deployment_spec",
            "needs a directory on this machine",
        ),
        (
            {"model": "cove-tiny", "runtime": "kubernetes", "gpus_per_replica": 0},
            422,
            "invalid_deployment_spec",
            "is a directory on one machine",
        ),
        (
            {
                "model": "coder-7b",
                "runtime": "kubernetes",
                "gpus_per_replica": 4,
                "vllm": {"tensor_parallel_size": 2},
            },
            422,
            "invalid_deployment_spec",
            "must equal gpus_per_replica",
        ),
        (
            {"model": "coder-7b", "runtime": "kubernetes", "vllm": {"max_model_len": 9000}},
            422,
            "invalid_deployment_spec",
            "exceeds the context length",
        ),
        (
            {"model": "cove-tiny", "endpoint_url": "http://x:1", "vllm": {"max_lora_rank": 8}},
            422,
            "invalid_deployment_spec",
            "applies only to mode shared",
        ),
        (
            {"model": "cove-tiny", "endpoint_url": "http://x:1", "fallback_deployment": "x"},
            422,
            "fallback_not_found",
            "no deployment named 'x'",
        ),
        (
            {"model": "cove-tiny", "endpoint_url": "http://x:1", "fallback_deployment": "dep"},
            422,
            "invalid_fallback",
            "itself",
        ),
        (
            {"model": "cove-tiny", "runtime": "kubernetes", "vllm": {"extra_args": {"x": 1}}},
            422,
            "validation_failed",
            "not an allowed vLLM flag",
        ),
    ],
)
async def test_bad_deployments_are_refused_with_the_reason(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
    db: Database,
    body: dict[str, Any],
    status: int,
    code: str,
    reason: str,
) -> None:
    resp = await _create(control, world, {"name": "dep", **body})
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    assert reason in resp.text
    assert await _count(db, "SELECT count(*) FROM model_deployments") == 0


async def test_a_base_model_not_granted_cannot_be_deployed(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
) -> None:
    await control.delete(
        f"/api/v1/models/{catalog['coder']['id']}/grants/{world['b']['bu'].id}",
        headers=bearer(world["admin_key"]),
    )
    resp = await _create(
        control, world, {"name": "c", "model": "coder-7b", "runtime": "kubernetes"}, slug="b"
    )
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "model_not_granted"


async def test_the_fallback_must_be_a_deployment_of_the_same_bu(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
) -> None:
    spare_b = await _create(
        control, world, {"name": "spare", "model": "cove-tiny", "endpoint_url": "http://b:1"}, "b"
    )
    assert spare_b.status_code == 201
    borrowed = await _create(
        control,
        world,
        {
            "name": "main",
            "model": "cove-tiny",
            "endpoint_url": "http://a:1",
            "fallback_deployment": "spare",
        },
    )
    assert borrowed.status_code == 422
    assert borrowed.json()["error"]["code"] == "fallback_not_found"
    spare_a = await _create(
        control, world, {"name": "spare", "model": "cove-tiny", "endpoint_url": "http://a:2"}
    )
    own = await _create(
        control,
        world,
        {
            "name": "main",
            "model": "cove-tiny",
            "endpoint_url": "http://a:1",
            "fallback_deployment": "spare",
        },
    )
    assert own.status_code == 201, own.text
    assert own.json()["fallback_deployment"] == "spare"
    # Deleting the fallback unlinks it.
    deleted = await control.delete(
        _url(world, rest=f"/{spare_a.json()['id']}"), headers=bearer(world["a"]["admin_key"])
    )
    assert deleted.status_code == 202
    main = await control.get(
        _url(world, rest=f"/{own.json()['id']}"), headers=bearer(world["a"]["admin_key"])
    )
    assert main.json()["fallback_deployment"] is None


async def test_updates_use_the_generation_and_the_loser_of_a_race_gets_409(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
    db: Database,
) -> None:
    await _set_quota(control, world, gpu_quota=8)
    created = await _create(
        control, world, {"name": "coder", "model": "coder-7b", "runtime": "kubernetes"}
    )
    path = _url(world, rest=f"/{created.json()['id']}")
    headers = bearer(world["a"]["admin_key"])
    ok = await control.patch(
        path,
        json={"generation": 1, "replicas": 2, "vllm": {"max_model_len": 4096}},
        headers=headers,
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["generation"] == 2
    assert ok.json()["spec"]["vllm"]["max_model_len"] == 4096
    assert ok.json()["gpus"] == 2
    stale = await control.patch(path, json={"generation": 1, "replicas": 3}, headers=headers)
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "generation_conflict"
    assert stale.json()["error"]["details"] == {"expected": 1, "current": 2}

    racing = await asyncio.gather(
        control.patch(path, json={"generation": 2, "replicas": 3}, headers=headers),
        control.patch(path, json={"generation": 2, "replicas": 1}, headers=headers),
    )
    assert sorted(r.status_code for r in racing) == [200, 409]
    final = await control.get(path, headers=headers)
    winner = next(r for r in racing if r.status_code == 200).json()
    assert final.json()["spec"]["replicas"] == winner["spec"]["replicas"]
    assert final.json()["generation"] == 3
    assert (
        await _count(db, "SELECT count(*) FROM audit_log WHERE action = 'deployment.update'") == 2
    )
    bad = await control.patch(path, json={"generation": 3, "replicas": None}, headers=headers)
    assert bad.status_code == 422


async def test_adapters_are_checked_before_the_instance_is_touched(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
    instance: tuple[FakeVllm, ServerThread],
    sync_db: SyncDatabase,
) -> None:
    fake, server = instance
    headers = bearer(world["a"]["admin_key"])
    shared = await _create(
        control,
        world,
        {
            "name": "shared",
            "model": "cove-tiny",
            "mode": "shared",
            "endpoint_url": server.url,
            "vllm": {"max_lora_rank": 8},
        },
    )
    dedicated = await _create(
        control, world, {"name": "dedicated", "model": "cove-tiny", "endpoint_url": server.url}
    )
    on_shared = _url(world, rest=f"/{shared.json()['id']}/adapters")
    cases = [
        (on_shared, "a-sdk-r16", 422, "adapter_rank_too_high", "rank 16, over the limit"),
        (on_shared, "a-coder-v1", 409, "adapter_base_mismatch", "adapter of 'coder-7b'"),
        (on_shared, "b-sdk-v1", 404, "model_not_found", "b-sdk-v1"),
        (on_shared, "cove-tiny", 422, "not_an_adapter", "base model"),
        (on_shared, "nope", 404, "model_not_found", "nope"),
        (
            _url(world, rest=f"/{dedicated.json()['id']}/adapters"),
            "a-sdk-v1",
            409,
            "deployment_not_multi_lora",
            "dedicated",
        ),
    ]
    for path, model, status, code, reason in cases:
        resp = await control.post(path, json={"model": model}, headers=headers)
        assert resp.status_code == status, (model, resp.text)
        assert resp.json()["error"]["code"] == code, (model, resp.text)
        assert reason in resp.text, (model, resp.text)
    # BU b cannot put its adapter on BU a's instance: the instance does not exist for it.
    cross = await control.post(
        f"/api/v1/bus/{world['b']['bu'].id}/deployments/{shared.json()['id']}/adapters",
        json={"model": "b-sdk-v1"},
        headers=bearer(world["b"]["admin_key"]),
    )
    assert cross.status_code == 404
    assert fake.lora_calls() == []

    accepted = await control.post(on_shared, json={"model": "a-sdk-v1"}, headers=headers)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["state"] == "pending"
    again = await control.post(on_shared, json={"model": "a-sdk-v1"}, headers=headers)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "adapter_already_on_deployment"
    assert fake.lora_calls() == []


async def test_the_reconciler_loads_and_unloads_adapters_and_announces_routes(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
    instance: tuple[FakeVllm, ServerThread],
    sync_db: SyncDatabase,
    settings: CoveSettings,
    db: Database,
    tiny_model: Path,
) -> None:
    fake, server = instance
    headers = bearer(world["a"]["admin_key"])
    shared = (
        await _create(
            control,
            world,
            {"name": "shared", "model": "cove-tiny", "mode": "shared", "endpoint_url": server.url},
        )
    ).json()
    await control.post(
        _url(world, rest=f"/{shared['id']}/adapters"), json={"model": "a-sdk-v1"}, headers=headers
    )
    with psycopg.connect(settings.database_url, autocommit=True) as listener:
        listener.execute("LISTEN cove_routes")
        outcome = reconcile_external(sync_db, uuid.UUID(shared["id"]))
        notes = [n.payload for n in listener.notifies(timeout=1.0, stop_after=1)]
    assert outcome.status == "ready", outcome
    assert notes == [str(world["a"]["bu"].id)]
    assert fake.lora_calls() == [
        (
            "/v1/load_lora_adapter",
            {"lora_name": "a-sdk-v1", "lora_path": str(lora_adapter(tiny_model, 8))},
        )
    ]
    got = (await control.get(_url(world, rest=f"/{shared['id']}"), headers=headers)).json()
    assert got["status"] == "ready"
    assert got["observed_generation"] == 1
    assert [(a["model"], a["state"]) for a in got["adapters"]] == [("a-sdk-v1", "loaded")]
    assert got["capacity"]["requests_running"] == 2
    async with db.platform() as conn:
        routes = await gateway_repository.all_routes(conn)
    assert sorted((r.model, r.served_model_name) for r in routes) == [
        ("a-sdk-v1", "a-sdk-v1"),
        ("cove-tiny", "cove-tiny"),
    ]
    # Idempotent: a second run sends nothing new.
    reconcile_external(sync_db, uuid.UUID(shared["id"]))
    assert len(fake.lora_calls()) == 1

    detach = await control.delete(
        _url(world, rest=f"/{shared['id']}/adapters/{catalog['adapters']['a-sdk-v1']['id']}"),
        headers=headers,
    )
    assert detach.status_code == 202
    assert detach.json()["state"] == "unloading"
    async with db.platform() as conn:
        routes = await gateway_repository.all_routes(conn)
    assert [r.model for r in routes] == ["cove-tiny"]
    reconcile_external(sync_db, uuid.UUID(shared["id"]))
    assert fake.lora_calls()[-1] == ("/v1/unload_lora_adapter", {"lora_name": "a-sdk-v1"})
    got = (await control.get(_url(world, rest=f"/{shared['id']}"), headers=headers)).json()
    assert got["adapters"] == []


async def test_an_adapter_the_instance_refuses_is_marked_failed_with_the_reason(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
    instance: tuple[FakeVllm, ServerThread],
    sync_db: SyncDatabase,
) -> None:
    fake, server = instance
    fake.served.add("a-sdk-v1")  # someone loaded it already: that counts as loaded
    headers = bearer(world["a"]["admin_key"])
    shared = (
        await _create(
            control,
            world,
            {"name": "shared", "model": "cove-tiny", "mode": "shared", "endpoint_url": server.url},
        )
    ).json()
    await control.post(
        _url(world, rest=f"/{shared['id']}/adapters"), json={"model": "a-sdk-v1"}, headers=headers
    )
    fake.healthy = False
    down = reconcile_external(sync_db, uuid.UUID(shared["id"]))
    assert down.status == "unavailable"
    got = (await control.get(_url(world, rest=f"/{shared['id']}"), headers=headers)).json()
    assert got["adapters"][0]["state"] == "pending"
    fake.healthy = True
    reconcile_external(sync_db, uuid.UUID(shared["id"]))
    got = (await control.get(_url(world, rest=f"/{shared['id']}"), headers=headers)).json()
    assert got["adapters"][0]["state"] == "loaded"


async def test_deletion_stops_routing_at_once_and_the_reconciler_removes_the_row(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
    sync_db: SyncDatabase,
    settings: CoveSettings,
    db: Database,
) -> None:
    created = (
        await _create(
            control, world, {"name": "old", "model": "cove-tiny", "endpoint_url": "http://x:1"}
        )
    ).json()
    headers = bearer(world["a"]["admin_key"])
    path = _url(world, rest=f"/{created['id']}")
    deleted = await control.delete(path, headers=headers)
    assert deleted.status_code == 202
    assert deleted.json()["desired_state"] == "deleted"
    async with db.platform() as conn:
        assert await gateway_repository.all_routes(conn) == []
    same_name = await _create(
        control, world, {"name": "old", "model": "cove-tiny", "endpoint_url": "http://x:1"}
    )
    assert same_name.status_code == 409
    assert "being deleted" in same_name.text
    changed = await control.patch(path, json={"generation": 2, "replicas": 1}, headers=headers)
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "deployment_deleting"
    assert queued_tasks(broker_url(settings))[-1] == ("deployment.reconcile", [created["id"]])
    outcome = reconcile_external(sync_db, uuid.UUID(created["id"]))
    assert outcome.action == "deleted"
    assert (await control.get(path, headers=headers)).status_code == 404
    assert (await control.delete(path, headers=headers)).status_code == 404
    actions = await _count(
        db,
        "SELECT count(*) FROM audit_log WHERE action = 'deployment.delete' AND target = %s",
        "deployment:old",
    )
    assert actions == 1


async def test_the_health_check_records_status_and_load_from_metrics(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    catalog: dict[str, Any],
    instance: tuple[FakeVllm, ServerThread],
    sync_db: SyncDatabase,
) -> None:
    _, server = instance
    created = (
        await _create(
            control, world, {"name": "main", "model": "cove-tiny", "endpoint_url": server.url}
        )
    ).json()
    with httpx.Client(timeout=5) as client:
        assert check_all(sync_db, client) == {"ready": 1}
        await asyncio.sleep(0.2)
        check_all(sync_db, client)
    got = (
        await control.get(
            _url(world, rest=f"/{created['id']}"), headers=bearer(world["a"]["admin_key"])
        )
    ).json()
    assert got["status"] == "ready"
    load = got["capacity"]
    assert load["requests_running"] == 2
    assert load["requests_waiting"] == 1
    assert load["kv_cache_usage"] == 0.25
    assert load["generation_tokens_total"] == 80
    assert load["tokens_per_second"] > 0
