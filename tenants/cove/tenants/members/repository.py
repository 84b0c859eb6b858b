"""SQL for the members Cove records itself (the `memberships` table and platform admins)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from pydantic import BaseModel


class MembershipRow(BaseModel):
    username: str
    email: str | None
    role: str


async def list_for_tenant(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID
) -> list[MembershipRow]:
    async with conn.cursor(row_factory=class_row(MembershipRow)) as cur:
        await cur.execute(
            "SELECT u.username, u.email, m.role FROM memberships m"
            " JOIN users u ON u.id = m.user_id WHERE m.tenant_id = %s ORDER BY u.username",
            (tenant_id,),
        )
        return await cur.fetchall()


async def platform_admins(conn: psycopg.AsyncConnection[Any]) -> list[MembershipRow]:
    async with conn.cursor(row_factory=class_row(MembershipRow)) as cur:
        await cur.execute(
            "SELECT username, email, 'platform-admin' AS role FROM users"
            " WHERE is_platform_admin ORDER BY username"
        )
        return await cur.fetchall()
