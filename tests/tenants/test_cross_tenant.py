"""Every tenant-owned endpoint, called by BU A's admin with BU B's ids: 404, nothing changes.

The route list comes from the OpenAPI document, so a new tenant-owned endpoint without a case
here fails `test_every_tenant_owned_route_is_covered`.
"""

from __future__ import annotations

import uuid
from typing import Any

from cove.platform.core.db import Database
from tests.factories import bearer

# (method, path template, JSON body) for every route under /api/v1/bus/{bu_id}.
CASES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/bus/{bu_id}", None),
    ("PATCH", "/api/v1/bus/{bu_id}", {"name": "taken over"}),
    ("GET", "/api/v1/bus/{bu_id}/export", None),
    ("POST", "/api/v1/bus/{bu_id}/deletion", {"grace_days": 0}),
    ("POST", "/api/v1/bus/{bu_id}/restore", None),
    ("GET", "/api/v1/bus/{bu_id}/api-keys", None),
    ("POST", "/api/v1/bus/{bu_id}/api-keys", {"name": "intruder"}),
    ("DELETE", "/api/v1/bus/{bu_id}/api-keys/{key_id}", None),
    ("GET", "/api/v1/bus/{bu_id}/members", None),
    ("GET", "/api/v1/bus/{bu_id}/deployments", None),
    (
        "POST",
        "/api/v1/bus/{bu_id}/deployments",
        {"name": "evil", "model": "cove-tiny", "endpoint_url": "http://127.0.0.1:1"},
    ),
    ("GET", "/api/v1/bus/{bu_id}/deployments/{deployment_id}", None),
    ("GET", "/api/v1/bus/{bu_id}/policy", None),
    ("PUT", "/api/v1/bus/{bu_id}/policy", {"document": {"limits": {"max_tokens": 1}}}),
    ("POST", "/api/v1/bus/{bu_id}/policy/dry-run", {"text": "hello"}),
    ("GET", "/api/v1/bus/{bu_id}/audit", None),
    ("GET", "/api/v1/bus/{bu_id}/audit.csv", None),
    ("GET", "/api/v1/bus/{bu_id}/prompt-logs", None),
    ("PATCH", "/api/v1/bus/{bu_id}/deployments/{deployment_id}", {"generation": 1, "replicas": 2}),
    ("DELETE", "/api/v1/bus/{bu_id}/deployments/{deployment_id}", None),
    ("POST", "/api/v1/bus/{bu_id}/deployments/{deployment_id}/adapters", {"model": "cove-tiny"}),
    ("DELETE", "/api/v1/bus/{bu_id}/deployments/{deployment_id}/adapters/{model_id}", None),
    ("GET", "/api/v1/bus/{bu_id}/capacity", None),
    ("GET", "/api/v1/bus/{bu_id}/shared-instances", None),
    (
        "POST",
        "/api/v1/bus/{bu_id}/shared-instances/{instance_id}/adapters",
        {"model": "cove-tiny"},
    ),
    ("DELETE", "/api/v1/bus/{bu_id}/shared-instances/{instance_id}/adapters/{model_id}", None),
    ("GET", "/api/v1/bus/{bu_id}/models", None),
    (
        "POST",
        "/api/v1/bus/{bu_id}/adapters",
        {"name": "evil-adapter", "base_model": "cove-tiny", "location": "adapters/x", "rank": 8},
    ),
    ("GET", "/api/v1/bus/{bu_id}/adapters/{model_id}", None),
    ("DELETE", "/api/v1/bus/{bu_id}/adapters/{model_id}", None),
    ("GET", "/api/v1/bus/{bu_id}/release", None),
    ("PUT", "/api/v1/bus/{bu_id}/release", {"stable": "cove-tiny"}),
    ("DELETE", "/api/v1/bus/{bu_id}/release", None),
    ("POST", "/api/v1/bus/{bu_id}/release/promote", None),
    ("POST", "/api/v1/bus/{bu_id}/release/rollback", None),
    ("GET", "/api/v1/bus/{bu_id}/metrics", None),
    ("GET", "/api/v1/bus/{bu_id}/metrics/compare", None),
    ("GET", "/api/v1/bus/{bu_id}/metrics.csv", None),
    ("GET", "/api/v1/bus/{bu_id}/metrics/copilot", None),
    ("GET", "/api/v1/bus/{bu_id}/finetune-jobs", None),
    (
        "POST",
        "/api/v1/bus/{bu_id}/finetune-jobs",
        {
            "name": "evil",
            "repositories": [
                {"location": "/srv/sdk", "role": "sdk"},
                {"location": "/srv/apps", "role": "consumer"},
            ],
            "base_model": "cove-tiny",
        },
    ),
    ("GET", "/api/v1/bus/{bu_id}/finetune-jobs/{job_id}", None),
    ("GET", "/api/v1/bus/{bu_id}/finetune-jobs/{job_id}/logs", None),
    ("POST", "/api/v1/bus/{bu_id}/finetune-jobs/{job_id}/cancel", None),
    ("POST", "/api/v1/bus/{bu_id}/finetune-jobs/{job_id}/retry", None),
]


async def _snapshot(db: Database, tenant_id: uuid.UUID) -> tuple[Any, ...]:
    async with db.platform() as conn:
        keys = await (
            await conn.execute(
                "SELECT id, name, revoked_at FROM api_keys WHERE tenant_id=%s ORDER BY id",
                (tenant_id,),
            )
        ).fetchall()
        bu = await (
            await conn.execute("SELECT name, status FROM tenants WHERE id=%s", (tenant_id,))
        ).fetchone()
        deployments = await (
            await conn.execute("SELECT id FROM model_deployments WHERE tenant_id=%s", (tenant_id,))
        ).fetchall()
        policies = await (
            await conn.execute(
                "SELECT document, version FROM policies WHERE tenant_id=%s", (tenant_id,)
            )
        ).fetchall()
        jobs = await (
            await conn.execute("SELECT id FROM finetune_jobs WHERE tenant_id=%s", (tenant_id,))
        ).fetchall()
    return keys, bu, deployments, policies, jobs


async def test_every_tenant_owned_route_is_covered(api: Any) -> None:
    spec = (await api.get("/openapi.json")).json()
    tenant_routes = {
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        if path.startswith("/api/v1/bus/{bu_id}")
        for method in ops
    }
    covered = {(m, p) for m, p, _ in CASES}
    assert tenant_routes == covered


async def test_bu_a_cannot_read_or_change_bu_b(
    api: Any, world: dict[str, Any], db: Database
) -> None:
    b = world["b"]
    before = await _snapshot(db, b["bu"].id)
    ids = {
        "bu_id": b["bu"].id,
        "key_id": b["dev_key_id"],
        "deployment_id": uuid.uuid4(),
        "model_id": uuid.uuid4(),
        "job_id": uuid.uuid4(),
        "instance_id": uuid.uuid4(),
    }
    for method, template, body in CASES:
        for key in (world["a"]["admin_key"], world["a"]["dev_key"]):
            resp = await api.request(method, template.format(**ids), json=body, headers=bearer(key))
            assert resp.status_code in (403, 404), (method, template, resp.status_code, resp.text)
            if key == world["a"]["admin_key"]:
                assert resp.status_code == 404, (method, template, resp.text)
    assert await _snapshot(db, b["bu"].id) == before
