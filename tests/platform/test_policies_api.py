"""Policies through the platform API: who may change what, validation, versions, dry runs."""

from __future__ import annotations

import secrets
import string
from typing import Any

from cove.platform.core.db import Database
from tests.factories import bearer


def github_token() -> str:
    alphabet = string.ascii_letters + string.digits
    return "ghp_" + "".join(secrets.choice(alphabet) for _ in range(36))


async def test_the_default_policy_is_readable_by_admins_and_changed_only_by_platform_admins(
    api: Any, world: dict[str, Any]
) -> None:
    read = await api.get("/api/v1/policy", headers=bearer(world["a"]["admin_key"]))
    assert read.status_code == 200
    assert read.json()["effective"]["limits"]["max_tokens"] == 2048
    denied = await api.put(
        "/api/v1/policy", json={"document": {}}, headers=bearer(world["a"]["admin_key"])
    )
    assert denied.status_code == 403
    changed = await api.put(
        "/api/v1/policy",
        json={"document": {"limits": {"max_tokens": 256}}},
        headers=bearer(world["admin_key"]),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["effective"]["limits"]["max_tokens"] == 256


async def test_a_bu_can_tighten_but_not_loosen_the_default(api: Any, world: dict[str, Any]) -> None:
    await api.put(
        "/api/v1/policy",
        json={"document": {"limits": {"max_tokens": 256}, "content": {"exclude_paths": ["*.pem"]}}},
        headers=bearer(world["admin_key"]),
    )
    bu = world["a"]["bu"].id
    resp = await api.put(
        f"/api/v1/bus/{bu}/policy",
        json={
            "document": {
                "limits": {"max_tokens": 100000, "user_requests_per_minute": 5},
                "content": {"exclude_paths": [".env*"], "actions": {"github_token": "block"}},
            }
        },
        headers=bearer(world["a"]["admin_key"]),
    )
    assert resp.status_code == 200, resp.text
    effective = resp.json()["effective"]
    assert effective["limits"]["max_tokens"] == 256
    assert effective["limits"]["user_requests_per_minute"] == 5
    assert set(effective["content"]["exclude_paths"]) == {"*.pem", ".env*"}
    assert resp.json()["version"] == 1
    # BU b is untouched by a's policy.
    other = await api.get(
        f"/api/v1/bus/{world['b']['bu'].id}/policy", headers=bearer(world["b"]["admin_key"])
    )
    assert other.json()["effective"]["limits"]["user_requests_per_minute"] == 600


async def test_invalid_documents_and_stale_versions_are_refused_and_change_nothing(
    api: Any, world: dict[str, Any], db: Database
) -> None:
    bu = world["a"]["bu"].id
    headers = bearer(world["a"]["admin_key"])
    for document, where in (
        ({"limits": {"max_tokens": -1}}, "limits.max_tokens"),
        ({"content": {"actions": {"made_up_type": "block"}}}, "content.actions"),
        ({"content": {"exclude_paths": ["!keep.pem"]}}, "content.exclude_paths"),
        ({"surprise": True}, "surprise"),
    ):
        resp = await api.put(
            f"/api/v1/bus/{bu}/policy", json={"document": document}, headers=headers
        )
        assert resp.status_code == 422, (document, resp.text)
        assert resp.json()["error"]["code"] == "invalid_policy"
        assert where in resp.json()["error"]["message"]
    first = await api.put(
        f"/api/v1/bus/{bu}/policy",
        json={"document": {"limits": {"max_tokens": 10}}},
        headers=headers,
    )
    assert first.json()["version"] == 1
    stale = await api.put(
        f"/api/v1/bus/{bu}/policy",
        json={"document": {"limits": {"max_tokens": 20}}, "expected_version": 0},
        headers=headers,
    )
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "version_conflict"
    async with db.platform() as conn:
        row = await (
            await conn.execute("SELECT document FROM policies WHERE tenant_id = %s", (bu,))
        ).fetchone()
    assert row == ({"limits": {"max_tokens": 10}},)


async def test_developers_cannot_change_policy(api: Any, world: dict[str, Any]) -> None:
    resp = await api.put(
        f"/api/v1/bus/{world['a']['bu'].id}/policy",
        json={"document": {}},
        headers=bearer(world["a"]["dev_key"]),
    )
    assert resp.status_code == 403


async def test_dry_run_shows_what_the_gateway_would_forward(
    api: Any, world: dict[str, Any]
) -> None:
    bu = world["a"]["bu"].id
    headers = bearer(world["a"]["admin_key"])
    token = github_token()
    text = f'GITHUB_TOKEN = "{token}"\nprint("hi")\n'
    before = await api.post(
        f"/api/v1/bus/{bu}/policy/dry-run", json={"text": text}, headers=headers
    )
    assert before.status_code == 200, before.text
    assert before.json()["blocked"] is False
    assert token not in before.json()["text"]
    assert "<redacted:github_token>" in before.json()["text"]
    await api.put(
        f"/api/v1/bus/{bu}/policy",
        json={"document": {"content": {"actions": {"github_token": "block"}}}},
        headers=headers,
    )
    after = await api.post(f"/api/v1/bus/{bu}/policy/dry-run", json={"text": text}, headers=headers)
    assert after.json()["blocked"] is True
    excluded = await api.post(
        f"/api/v1/bus/{bu}/policy/dry-run",
        json={"text": "x", "path": "deploy/secrets/key.pem"},
        headers=headers,
    )
    assert excluded.status_code == 200


async def test_policy_changes_are_audited(api: Any, world: dict[str, Any], db: Database) -> None:
    bu = world["a"]["bu"].id
    await api.put(
        f"/api/v1/bus/{bu}/policy",
        json={"document": {"limits": {"max_tokens": 99}}},
        headers=bearer(world["a"]["admin_key"]),
    )
    async with db.tenant(bu) as conn:
        rows = await (
            await conn.execute(
                "SELECT actor, action, diff FROM audit_log WHERE action = %s", ("policy.update",)
            )
        ).fetchall()
    assert rows[0][0] == "a-admin"
    assert rows[0][2]["limits"][1] == {"max_tokens": 99}


async def test_a_bu_cannot_weaken_a_secret_rule_of_the_organisation(
    api: Any, world: dict[str, Any]
) -> None:
    await api.put(
        "/api/v1/policy",
        json={"document": {"content": {"actions": {"github_token": "block"}}}},
        headers=bearer(world["admin_key"]),
    )
    bu = world["a"]["bu"].id
    resp = await api.put(
        f"/api/v1/bus/{bu}/policy",
        json={
            "document": {
                "content": {
                    "default_action": "audit",
                    "actions": {"github_token": "audit", "aws_access_key_id": "block"},
                }
            }
        },
        headers=bearer(world["a"]["admin_key"]),
    )
    content = resp.json()["effective"]["content"]
    assert content["actions"]["github_token"] == "block"
    assert content["actions"]["aws_access_key_id"] == "block"
    # The organisation's default (redact) is the floor for every other type.
    assert content["default_action"] == "redact"
