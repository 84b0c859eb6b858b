"""SQL for policies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb


@dataclass(frozen=True, slots=True)
class PolicyRow:
    tenant_id: UUID | None
    document: dict[str, Any]
    version: int
    updated_by: str | None
    updated_at: datetime | None


async def get(conn: psycopg.AsyncConnection[Any], tenant_id: UUID | None) -> PolicyRow | None:
    async with conn.cursor(row_factory=class_row(PolicyRow)) as cur:
        if tenant_id is None:
            await cur.execute(
                "SELECT tenant_id, document, version, updated_by, updated_at FROM policies"
                " WHERE tenant_id IS NULL"
            )
        else:
            await cur.execute(
                "SELECT tenant_id, document, version, updated_by, updated_at FROM policies"
                " WHERE tenant_id = %s",
                (tenant_id,),
            )
        return await cur.fetchone()


async def upsert(
    conn: psycopg.AsyncConnection[Any],
    tenant_id: UUID | None,
    document: dict[str, Any],
    updated_by: str,
) -> PolicyRow:
    existing = await get(conn, tenant_id)
    async with conn.cursor(row_factory=class_row(PolicyRow)) as cur:
        if existing is None:
            await cur.execute(
                "INSERT INTO policies (tenant_id, document, updated_by) VALUES (%s, %s, %s)"
                " RETURNING tenant_id, document, version, updated_by, updated_at",
                (tenant_id, Jsonb(document), updated_by),
            )
        else:
            await cur.execute(
                "UPDATE policies SET document = %s, version = version + 1, updated_by = %s,"
                " updated_at = now() WHERE tenant_id IS NOT DISTINCT FROM %s"
                " RETURNING tenant_id, document, version, updated_by, updated_at",
                (Jsonb(document), updated_by, tenant_id),
            )
        row = await cur.fetchone()
    assert row is not None
    return row


async def lock(conn: psycopg.AsyncConnection[Any], tenant_id: UUID | None) -> None:
    """Serialise concurrent edits of one scope's policy until the transaction ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('cove.policy:' || coalesce(%s::text, 'org')))",
        (tenant_id,),
    )
