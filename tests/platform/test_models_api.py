"""The model catalog API: base models and grants (platform admins), adapters (BU admins)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from cove.platform.core.db import Database
from tests.factories import bearer
from tests.platform.deployments_support import lora_adapter, register_base


@pytest.fixture(scope="session")
def adapter_r8(tiny_model: Path) -> Path:
    return lora_adapter(tiny_model, 8)


@pytest.fixture(scope="session")
def adapter_r16(tiny_model: Path) -> Path:
    return lora_adapter(tiny_model, 16)


async def _audit_actions(db: Database) -> list[str]:
    async with db.platform() as conn:
        rows = await (await conn.execute("SELECT action FROM audit_log ORDER BY id")).fetchall()
    return [r[0] for r in rows]


async def test_a_local_base_model_is_described_from_its_files(
    api: httpx.AsyncClient, world: dict[str, Any], tiny_model: Path, db: Database
) -> None:
    resp = await api.post(
        "/api/v1/models",
        json={"name": "cove-tiny", "location": str(tiny_model), "licence": "Apache-2.0"},
        headers=bearer(world["admin_key"]),
    )
    assert resp.status_code == 201, resp.text
    model = resp.json()
    assert model["kind"] == "base"
    assert model["architecture"] == "LlamaForCausalLM"
    assert model["context_length"] == 1024
    assert model["family"] == "llama"
    assert model["fim_tokens"] == {
        "prefix": "<fim_prefix>",
        "suffix": "<fim_suffix>",
        "middle": "<fim_middle>",
    }
    assert model["licence"] == "Apache-2.0"
    listed = await api.get("/api/v1/models", headers=bearer(world["admin_key"]))
    assert [m["name"] for m in listed.json()] == ["cove-tiny"]
    assert "model.create" in await _audit_actions(db)


@pytest.mark.parametrize(
    ("body", "status", "code", "reason"),
    [
        ({"location": "/nonexistent/cove-model"}, 422, "model_location_invalid", "does not exist"),
        ({"location": "http://models.internal/x"}, 422, "model_location_invalid", "only s3://"),
        ({"location": "base/../etc"}, 422, "model_location_invalid", "clean relative path"),
        ({"location": "s3://models/coder-7b"}, 422, "context_length_required", "context_length"),
        ({"location": "s3://models/coder-7b", "context_length": 8}, 422, None, "context_length"),
    ],
)
async def test_bad_base_models_are_refused_with_the_reason(
    api: httpx.AsyncClient,
    world: dict[str, Any],
    db: Database,
    body: dict[str, Any],
    status: int,
    code: str | None,
    reason: str,
) -> None:
    resp = await api.post(
        "/api/v1/models", json={"name": "coder-7b", **body}, headers=bearer(world["admin_key"])
    )
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    if code is not None:
        assert error["code"] == code
    assert reason in resp.text
    assert await _audit_actions(db) == []


async def test_only_platform_admins_register_base_models_and_names_are_unique(
    api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    body = {"name": "coder-7b", "location": "s3://models/coder-7b", "context_length": 8192}
    as_bu_admin = await api.post(
        "/api/v1/models", json=body, headers=bearer(world["a"]["admin_key"])
    )
    assert as_bu_admin.status_code == 403
    assert as_bu_admin.json()["error"]["code"] == "platform_admin_required"
    as_dev = await api.post("/api/v1/models", json=body, headers=bearer(world["a"]["dev_key"]))
    assert as_dev.status_code == 403
    first = await api.post("/api/v1/models", json=body, headers=bearer(world["admin_key"]))
    assert first.status_code == 201
    again = await api.post("/api/v1/models", json=body, headers=bearer(world["admin_key"]))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "model_exists"


async def test_grants_decide_which_bus_see_a_base_model(
    api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    model = await register_base(
        api, world, name="coder-7b", location="base/coder-7b", context_length=8192, grant=("a",)
    )
    admin = bearer(world["admin_key"])

    def names(resp: httpx.Response) -> list[str]:
        assert resp.status_code == 200, resp.text
        return [m["name"] for m in resp.json()]

    a_models = await api.get(
        f"/api/v1/bus/{world['a']['bu'].id}/models", headers=bearer(world["a"]["admin_key"])
    )
    b_models = await api.get(
        f"/api/v1/bus/{world['b']['bu'].id}/models", headers=bearer(world["b"]["admin_key"])
    )
    assert names(a_models) == ["coder-7b"]
    assert names(b_models) == []
    grants = await api.get(f"/api/v1/models/{model['id']}/grants", headers=admin)
    assert [g["bu_slug"] for g in grants.json()] == ["bu-a"]
    # Granting twice changes nothing.
    again = await api.put(
        f"/api/v1/models/{model['id']}/grants/{world['a']['bu'].id}", headers=admin
    )
    assert again.status_code == 200
    revoked = await api.delete(
        f"/api/v1/models/{model['id']}/grants/{world['a']['bu'].id}", headers=admin
    )
    assert revoked.status_code == 204
    a_after = await api.get(
        f"/api/v1/bus/{world['a']['bu'].id}/models", headers=bearer(world["a"]["admin_key"])
    )
    assert names(a_after) == []
    missing = await api.put(f"/api/v1/models/{model['id']}/grants/{uuid.uuid4()}", headers=admin)
    assert missing.status_code == 404
    by_bu_admin = await api.put(
        f"/api/v1/models/{model['id']}/grants/{world['a']['bu'].id}",
        headers=bearer(world["a"]["admin_key"]),
    )
    assert by_bu_admin.status_code == 403


async def test_an_adapter_takes_its_rank_from_adapter_config(
    api: httpx.AsyncClient, world: dict[str, Any], tiny_model: Path, adapter_r8: Path, db: Database
) -> None:
    await register_base(api, world, location=str(tiny_model), max_lora_rank=16)
    bu = world["a"]["bu"].id
    resp = await api.post(
        f"/api/v1/bus/{bu}/adapters",
        json={
            "name": "bu-a-sdk-v1",
            "base_model": "cove-tiny",
            "location": str(adapter_r8),
            "lineage": {"job": "ft-1", "dataset": "payments-sdk@abc123"},
            "scores": {"exact_match": 0.41},
        },
        headers=bearer(world["a"]["admin_key"]),
    )
    assert resp.status_code == 201, resp.text
    adapter = resp.json()
    assert adapter["kind"] == "adapter"
    assert adapter["lora_rank"] == 8
    assert adapter["base_model"] == "cove-tiny"
    assert adapter["bu_id"] == str(bu)
    assert adapter["lineage"]["dataset"] == "payments-sdk@abc123"
    assert adapter["lineage"]["target_modules"] == ["q_proj", "v_proj"]
    assert adapter["scores"] == {"exact_match": 0.41}
    # Adapters inherit the base model's FIM tokens, which the gateway uses.
    assert adapter["fim_tokens"]["prefix"] == "<fim_prefix>"
    got = await api.get(
        f"/api/v1/bus/{bu}/adapters/{adapter['id']}", headers=bearer(world["a"]["admin_key"])
    )
    assert got.json()["name"] == "bu-a-sdk-v1"
    listed = await api.get(f"/api/v1/bus/{bu}/models", headers=bearer(world["a"]["admin_key"]))
    assert [m["name"] for m in listed.json()] == ["cove-tiny", "bu-a-sdk-v1"]
    assert "adapter.create" in await _audit_actions(db)


async def test_bad_adapters_are_refused_before_anything_is_stored(
    api: httpx.AsyncClient,
    world: dict[str, Any],
    tiny_model: Path,
    adapter_r8: Path,
    adapter_r16: Path,
    tmp_path: Path,
    db: Database,
) -> None:
    await register_base(api, world, location=str(tiny_model), max_lora_rank=8)
    await register_base(
        api, world, name="unshared", location="base/unshared", context_length=512, grant=()
    )
    bu = world["a"]["bu"].id
    not_peft = tmp_path / "not-peft"
    not_peft.mkdir()
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({"base_model": "nope", "location": str(adapter_r8)}, 404, "model_not_found", "nope"),
        (
            {"base_model": "unshared", "location": "adapters/x", "rank": 8},
            403,
            "model_not_granted",
            "not granted",
        ),
        ({"location": "/does/not/exist"}, 422, "model_location_invalid", "does not exist"),
        ({"location": str(not_peft)}, 422, "model_location_invalid", "adapter_config.json"),
        ({"location": str(adapter_r16)}, 422, "adapter_rank_too_high", "rank 16 is over the limit"),
        ({"location": str(adapter_r8), "rank": 4}, 422, "adapter_rank_mismatch", "r = 8"),
        ({"location": "adapters/bu-a/v1"}, 422, "adapter_rank_required", "rank"),
        ({"location": "s3://models/adapters/v1", "rank": 8}, 422, "model_location_invalid", "S3"),
        ({"location": "adapters/bu-a/v1", "rank": 600}, 422, "validation_failed", "rank"),
        (
            {"location": str(adapter_r8), "lineage": {"steps": 2**70}},
            422,
            "invalid_value",
            "64 bits",
        ),
    ]
    for body, status, code, reason in cases:
        full = {"name": "bu-a-sdk-v1", "base_model": "cove-tiny", **body}
        resp = await api.post(
            f"/api/v1/bus/{bu}/adapters", json=full, headers=bearer(world["a"]["admin_key"])
        )
        assert resp.status_code == status, (body, resp.text)
        assert resp.json()["error"]["code"] == code, (body, resp.text)
        assert reason in resp.text, (body, resp.text)
    listed = await api.get(f"/api/v1/bus/{bu}/models", headers=bearer(world["a"]["admin_key"]))
    assert [m["kind"] for m in listed.json()] == ["base"]
    assert "adapter.create" not in await _audit_actions(db)
    as_dev = await api.post(
        f"/api/v1/bus/{bu}/adapters",
        json={"name": "x", "base_model": "cove-tiny", "location": str(adapter_r8)},
        headers=bearer(world["a"]["dev_key"]),
    )
    assert as_dev.status_code == 403


async def test_an_adapter_is_invisible_to_other_bus(
    api: httpx.AsyncClient, world: dict[str, Any], tiny_model: Path, adapter_r8: Path
) -> None:
    await register_base(api, world, location=str(tiny_model), grant=("a", "b"))
    a, b = world["a"]["bu"].id, world["b"]["bu"].id
    created = await api.post(
        f"/api/v1/bus/{a}/adapters",
        json={"name": "bu-a-sdk-v1", "base_model": "cove-tiny", "location": str(adapter_r8)},
        headers=bearer(world["a"]["admin_key"]),
    )
    adapter_id = created.json()["id"]
    b_list = await api.get(f"/api/v1/bus/{b}/models", headers=bearer(world["b"]["admin_key"]))
    assert [m["name"] for m in b_list.json()] == ["cove-tiny"]
    b_get = await api.get(
        f"/api/v1/bus/{b}/adapters/{adapter_id}", headers=bearer(world["b"]["admin_key"])
    )
    assert b_get.status_code == 404
    b_delete = await api.delete(
        f"/api/v1/bus/{b}/adapters/{adapter_id}", headers=bearer(world["b"]["admin_key"])
    )
    assert b_delete.status_code == 404
    # An adapter of BU b cannot name BU a's adapter as its base either.
    on_adapter = await api.post(
        f"/api/v1/bus/{b}/adapters",
        json={"name": "b-x", "base_model": "bu-a-sdk-v1", "location": "adapters/x", "rank": 8},
        headers=bearer(world["b"]["admin_key"]),
    )
    assert on_adapter.status_code == 404
    gone = await api.delete(
        f"/api/v1/bus/{a}/adapters/{adapter_id}", headers=bearer(world["a"]["admin_key"])
    )
    assert gone.status_code == 204


async def test_a_base_model_in_use_cannot_be_deleted(
    api: httpx.AsyncClient, world: dict[str, Any], tiny_model: Path, adapter_r8: Path
) -> None:
    model = await register_base(api, world, location=str(tiny_model))
    await api.post(
        f"/api/v1/bus/{world['a']['bu'].id}/adapters",
        json={"name": "bu-a-sdk-v1", "base_model": "cove-tiny", "location": str(adapter_r8)},
        headers=bearer(world["a"]["admin_key"]),
    )
    admin = bearer(world["admin_key"])
    refused = await api.delete(f"/api/v1/models/{model['id']}", headers=admin)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "model_in_use"
    revoke = await api.delete(
        f"/api/v1/models/{model['id']}/grants/{world['a']['bu'].id}", headers=admin
    )
    assert revoke.status_code == 409
    assert revoke.json()["error"]["code"] == "grant_in_use"
