"""Row-level security is the wall between business units; these tests lean on it directly."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from cove.platform.core.db import Database


async def test_a_query_without_a_tenant_setting_returns_nothing(
    db: Database, world: dict[str, Any]
) -> None:
    async with db.unscoped() as conn:
        tenants = await (await conn.execute("SELECT count(*) FROM tenants")).fetchone()
        keys = await (await conn.execute("SELECT count(*) FROM api_keys")).fetchone()
        members = await (await conn.execute("SELECT count(*) FROM memberships")).fetchone()
    assert tenants == (0,)
    assert keys == (0,)
    assert members == (0,)


async def test_a_tenant_scope_sees_only_its_own_rows(db: Database, world: dict[str, Any]) -> None:
    a, b = world["a"]["bu"], world["b"]["bu"]
    async with db.tenant(a.id) as conn:
        slugs = await (await conn.execute("SELECT slug FROM tenants")).fetchall()
        key_tenants = await (
            await conn.execute("SELECT DISTINCT tenant_id FROM api_keys")
        ).fetchall()
        foreign = await (
            await conn.execute("SELECT count(*) FROM memberships WHERE tenant_id = %s", (b.id,))
        ).fetchone()
    assert slugs == [("bu-a",)]
    assert key_tenants == [(a.id,)]
    assert foreign == (0,)


async def test_writes_into_another_tenant_are_invisible_and_change_nothing(
    db: Database, world: dict[str, Any]
) -> None:
    a, b = world["a"]["bu"], world["b"]["bu"]
    async with db.tenant(a.id) as conn:
        cur = await conn.execute(
            "UPDATE api_keys SET name = 'hijacked' WHERE tenant_id = %s", (b.id,)
        )
        assert cur.rowcount == 0
        cur = await conn.execute("DELETE FROM memberships WHERE tenant_id = %s", (b.id,))
        assert cur.rowcount == 0
    async with db.platform() as conn:
        names = await (
            await conn.execute("SELECT name FROM api_keys WHERE tenant_id = %s", (b.id,))
        ).fetchall()
    assert ("hijacked",) not in names


async def test_the_application_role_owns_no_table_and_cannot_rewrite_the_audit_log(
    db: Database, world: dict[str, Any]
) -> None:
    async with db.platform() as conn:
        user = await (await conn.execute("SELECT current_user")).fetchone()
        owned = await (
            await conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                " AND tableowner = current_user"
            )
        ).fetchone()
    assert user == ("cove_app",)
    assert owned == (0,)
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with db.platform() as conn:
                await conn.execute(statement)
