"""The platform API's business-unit and API-key endpoints, including cross-tenant attempts."""

from __future__ import annotations

from typing import Any

from cove.platform.core.db import Database
from tests.factories import bearer


async def test_platform_admin_creates_and_lists_business_units(
    api: Any, world: dict[str, Any]
) -> None:
    resp = await api.post(
        "/api/v1/bus",
        json={"slug": "payments", "name": "Payments", "gpu_quota": 4},
        headers=bearer(world["admin_key"]),
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["slug"] == "payments"
    assert body["status"] == "active"
    assert body["gpu_quota"] == 4
    listed = await api.get("/api/v1/bus", headers=bearer(world["admin_key"]))
    assert [bu["slug"] for bu in listed.json()] == ["bu-a", "bu-b", "payments"]


async def test_duplicate_slug_is_a_conflict_and_changes_nothing(
    api: Any, world: dict[str, Any], db: Database
) -> None:
    resp = await api.post(
        "/api/v1/bus", json={"slug": "bu-a", "name": "Again"}, headers=bearer(world["admin_key"])
    )
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "slug_taken"
    async with db.platform() as conn:
        names = await (await conn.execute("SELECT name FROM tenants WHERE slug='bu-a'")).fetchall()
    assert names == [("BU a",)]


async def test_the_slug_of_the_platforms_shared_instances_is_reserved(
    api: Any, world: dict[str, Any], db: Database
) -> None:
    # Shared base instances carry `cove.dev/bu: platform` on Kubernetes; a BU with that slug
    # would be indistinguishable from them.
    resp = await api.post(
        "/api/v1/bus",
        json={"slug": "platform", "name": "Platform"},
        headers=bearer(world["admin_key"]),
    )
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "slug_reserved"
    assert error["param"] == "slug"
    assert "shared across business units" in error["message"]
    async with db.platform() as conn:
        found = await (await conn.execute("SELECT 1 FROM tenants WHERE slug='platform'")).fetchall()
    assert found == []


async def test_bad_input_gets_a_machine_readable_4xx(api: Any, world: dict[str, Any]) -> None:
    headers = bearer(world["admin_key"])
    bad_slug = await api.post(
        "/api/v1/bus", json={"slug": "Bad Slug!", "name": "x"}, headers=headers
    )
    assert bad_slug.status_code == 422
    assert bad_slug.json()["error"]["code"] == "validation_failed"
    assert bad_slug.json()["error"]["details"]["errors"][0]["loc"][-1] == "slug"
    negative = await api.post(
        "/api/v1/bus", json={"slug": "ok-slug", "name": "x", "gpu_quota": -1}, headers=headers
    )
    assert negative.status_code == 422
    malformed = await api.post(
        "/api/v1/bus", content=b"{not json", headers={**headers, "content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "malformed_json"
    not_uuid = await api.get("/api/v1/bus/not-a-uuid", headers=headers)
    assert not_uuid.status_code == 422
    unknown_route = await api.get("/api/v1/nope", headers=headers)
    assert unknown_route.status_code == 404
    assert unknown_route.json()["error"]["code"] == "route_not_found"


async def test_authentication_failures(api: Any, world: dict[str, Any], db: Database) -> None:
    missing = await api.get("/api/v1/bus")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_credentials"
    wrong = await api.get("/api/v1/bus", headers=bearer(world["a"]["admin_key"] + "x"))
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    garbage = await api.get("/api/v1/bus", headers=bearer("sk-not-a-cove-key"))
    assert garbage.status_code == 401
    dev = await api.get("/api/v1/bus", headers=bearer(world["a"]["dev_key"]))
    assert dev.status_code == 403
    assert dev.json()["error"]["code"] == "insufficient_scope"


async def test_bu_admin_cannot_create_business_units(api: Any, world: dict[str, Any]) -> None:
    resp = await api.post(
        "/api/v1/bus", json={"slug": "sneaky", "name": "x"}, headers=bearer(world["a"]["admin_key"])
    )
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "platform_admin_required"


async def test_api_key_lifecycle_shows_the_key_once(api: Any, world: dict[str, Any]) -> None:
    bu = world["a"]["bu"]
    headers = bearer(world["a"]["admin_key"])
    created = await api.post(
        f"/api/v1/bus/{bu.id}/api-keys",
        json={"name": "ci bot", "scopes": ["completions"], "expires_in_days": 30},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["key"].startswith("cove_")
    assert key["expires_at"] is not None
    listed = await api.get(f"/api/v1/bus/{bu.id}/api-keys", headers=headers)
    assert listed.status_code == 200
    entries = {k["id"]: k for k in listed.json()}
    assert key["id"] in entries
    assert "key" not in entries[key["id"]]
    revoked = await api.delete(f"/api/v1/bus/{bu.id}/api-keys/{key['id']}", headers=headers)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    # The revoked key no longer authenticates anywhere.
    denied = await api.get("/api/v1/version", headers=bearer(key["key"]))
    assert denied.status_code == 200  # public endpoint
    denied = await api.get(f"/api/v1/bus/{bu.id}", headers=bearer(key["key"]))
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "key_revoked"


async def test_audit_log_records_admin_actions_without_secrets(
    api: Any, world: dict[str, Any], db: Database
) -> None:
    bu = world["a"]["bu"]
    created = await api.post(
        f"/api/v1/bus/{bu.id}/api-keys",
        json={"name": "audited"},
        headers=bearer(world["a"]["admin_key"]),
    )
    plaintext = created.json()["key"]
    async with db.tenant(bu.id) as conn:
        rows = await (
            await conn.execute("SELECT actor, action, target, diff::text FROM audit_log")
        ).fetchall()
    assert any(r[0] == "a-admin" and r[1] == "apikey.create" for r in rows)
    assert all(plaintext not in r[3] for r in rows)


async def test_health_version_and_openapi_are_public(api: Any) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    assert (await api.get("/readyz")).status_code == 200
    assert (await api.get("/api/v1/version")).json()["api"] == "v1"
    spec = (await api.get("/openapi.json")).json()
    assert "/api/v1/bus" in spec["paths"]
    assert "/api/v1/bus/{bu_id}/api-keys" in spec["paths"]
