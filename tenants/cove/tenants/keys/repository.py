"""SQL for API keys, users and memberships."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from cove.tenants.keys.schemas import ApiKey

_KEY_COLUMNS = sql.SQL(
    "id, key_id, name, tenant_id, user_id, scopes, created_at, expires_at, revoked_at, last_used_at"
)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """Everything needed to verify a key and build its principal."""

    id: UUID
    key_id: str
    tenant_id: UUID | None
    user_id: UUID | None
    salt: bytes
    hash: bytes
    scopes: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    subject: str | None
    username: str | None
    is_platform_admin: bool
    role: str | None
    tenant_status: str | None


_RECORD_QUERY = sql.SQL("""
    SELECT k.id, k.key_id, k.tenant_id, k.user_id, k.salt, k.hash, k.scopes, k.expires_at,
           k.revoked_at, u.subject, u.username, coalesce(u.is_platform_admin, false)
           AS is_platform_admin, m.role, t.status AS tenant_status
    FROM api_keys k
    LEFT JOIN users u ON u.id = k.user_id
    LEFT JOIN memberships m ON m.user_id = k.user_id AND m.tenant_id = k.tenant_id
    LEFT JOIN tenants t ON t.id = k.tenant_id
""")


async def insert(conn: psycopg.AsyncConnection[Any], values: dict[str, Any]) -> ApiKey:
    async with conn.cursor(row_factory=class_row(ApiKey)) as cur:
        await cur.execute(
            sql.SQL(
                "INSERT INTO api_keys (tenant_id, user_id, name, key_id, salt, hash, scopes,"
                " expires_at) VALUES (%(tenant_id)s, %(user_id)s, %(name)s, %(key_id)s,"
                " %(salt)s, %(hash)s, %(scopes)s, %(expires_at)s) RETURNING {}"
            ).format(_KEY_COLUMNS),
            values,
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def list_for_tenant(conn: psycopg.AsyncConnection[Any], tenant_id: UUID) -> list[ApiKey]:
    async with conn.cursor(row_factory=class_row(ApiKey)) as cur:
        await cur.execute(
            sql.SQL("SELECT {} FROM api_keys WHERE tenant_id = %s ORDER BY created_at").format(
                _KEY_COLUMNS
            ),
            (tenant_id,),
        )
        return await cur.fetchall()


async def get(conn: psycopg.AsyncConnection[Any], tenant_id: UUID, key_uuid: UUID) -> ApiKey | None:
    async with conn.cursor(row_factory=class_row(ApiKey)) as cur:
        await cur.execute(
            sql.SQL("SELECT {} FROM api_keys WHERE tenant_id = %s AND id = %s").format(
                _KEY_COLUMNS
            ),
            (tenant_id, key_uuid),
        )
        return await cur.fetchone()


async def revoke(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, key_uuid: UUID
) -> ApiKey | None:
    async with conn.cursor(row_factory=class_row(ApiKey)) as cur:
        await cur.execute(
            sql.SQL(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
                " WHERE tenant_id = %s AND id = %s RETURNING {}"
            ).format(_KEY_COLUMNS),
            (tenant_id, key_uuid),
        )
        return await cur.fetchone()


async def record_by_key_id(conn: psycopg.AsyncConnection[Any], key_id: str) -> KeyRecord | None:
    async with conn.cursor(row_factory=class_row(KeyRecord)) as cur:
        await cur.execute(_RECORD_QUERY + sql.SQL(" WHERE k.key_id = %s"), (key_id,))
        return await cur.fetchone()


async def all_records(conn: psycopg.AsyncConnection[Any]) -> list[KeyRecord]:
    async with conn.cursor(row_factory=class_row(KeyRecord)) as cur:
        await cur.execute(_RECORD_QUERY + sql.SQL(" WHERE k.revoked_at IS NULL"))
        return await cur.fetchall()


async def touch(conn: psycopg.AsyncConnection[Any], key_ids: list[str]) -> None:
    await conn.execute(
        "UPDATE api_keys SET last_used_at = now() WHERE key_id = ANY(%s)", (key_ids,)
    )


async def ensure_user(
    conn: psycopg.AsyncConnection[Any],
    *,
    subject: str,
    username: str,
    email: str | None = None,
    is_platform_admin: bool = False,
) -> UUID:
    cur = await conn.execute(
        "INSERT INTO users (subject, username, email, is_platform_admin)"
        " VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (subject) DO UPDATE SET username = EXCLUDED.username,"
        " email = coalesce(EXCLUDED.email, users.email),"
        " is_platform_admin = EXCLUDED.is_platform_admin"
        " RETURNING id",
        (subject, username, email, is_platform_admin),
    )
    row = await cur.fetchone()
    assert row is not None
    user_id: UUID = row[0]
    return user_id


async def set_membership(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, user_id: UUID, role: str
) -> None:
    await conn.execute(
        "INSERT INTO memberships (tenant_id, user_id, role) VALUES (%s, %s, %s)"
        " ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = EXCLUDED.role",
        (tenant_id, user_id, role),
    )


async def is_member(conn: psycopg.AsyncConnection[Any], tenant_id: UUID, user_id: UUID) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM memberships WHERE tenant_id = %s AND user_id = %s", (tenant_id, user_id)
    )
    return await cur.fetchone() is not None
