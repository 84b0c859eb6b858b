"""Test data built through the product's own repositories (never raw fixtures of rows)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from cove.platform.core.db import Database
from cove.tenants.bus import repository as bu_repository
from cove.tenants.keys import repository as key_repository
from cove.tenants.keys.secrets import issue_key


async def add_key(
    conn: Any,
    pepper: bytes,
    *,
    tenant_id: UUID | None,
    user_id: UUID | None,
    scopes: list[str],
    name: str = "test key",
) -> tuple[str, UUID]:
    issued = issue_key(pepper)
    key = await key_repository.insert(
        conn,
        {
            "tenant_id": tenant_id,
            "user_id": user_id,
            "name": name,
            "key_id": issued.key_id,
            "salt": issued.salt,
            "hash": issued.digest,
            "scopes": scopes,
            "expires_at": None,
        },
    )
    return issued.plaintext, key.id


async def make_world(db: Database, pepper: bytes) -> dict[str, Any]:
    world: dict[str, Any] = {}
    async with db.platform() as conn:
        admin = await key_repository.ensure_user(
            conn, subject="t:admin", username="admin", is_platform_admin=True
        )
        world["admin_key"], _ = await add_key(
            conn, pepper, tenant_id=None, user_id=admin, scopes=["admin:read", "admin:write"]
        )
        for slug in ("a", "b"):
            bu = await bu_repository.insert(conn, {"slug": f"bu-{slug}", "name": f"BU {slug}"})
            bu_admin = await key_repository.ensure_user(
                conn, subject=f"t:{slug}-admin", username=f"{slug}-admin"
            )
            dev = await key_repository.ensure_user(
                conn, subject=f"t:{slug}-dev", username=f"{slug}-dev"
            )
            await key_repository.set_membership(conn, bu.id, bu_admin, "bu-admin")
            await key_repository.set_membership(conn, bu.id, dev, "developer")
            admin_key, admin_key_id = await add_key(
                conn,
                pepper,
                tenant_id=bu.id,
                user_id=bu_admin,
                scopes=["admin:read", "admin:write", "completions", "events"],
            )
            dev_key, dev_key_id = await add_key(
                conn, pepper, tenant_id=bu.id, user_id=dev, scopes=["completions", "events"]
            )
            world[slug] = {
                "bu": bu,
                "admin_key": admin_key,
                "admin_key_id": admin_key_id,
                "dev_key": dev_key,
                "dev_key_id": dev_key_id,
                "dev_user": dev,
            }
    return world


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
