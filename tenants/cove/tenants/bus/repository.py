"""SQL for business units (the `tenants` table)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from cove.tenants.bus.schemas import BusinessUnit

_COLUMNS = sql.SQL(
    "id, slug, name, status, gpu_quota, max_model_instances, tokens_per_day, "
    "prompt_logging, retention_days, created_at, updated_at, deletion_requested_at, "
    "deletion_requested_by, purge_after, last_exported_at"
)


async def insert(conn: psycopg.AsyncConnection[Any], values: dict[str, Any]) -> BusinessUnit:
    names = list(values)
    query = sql.SQL("INSERT INTO tenants ({cols}) VALUES ({vals}) RETURNING {ret}").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, names)),
        vals=sql.SQL(", ").join(sql.Placeholder(n) for n in names),
        ret=_COLUMNS,
    )
    async with conn.cursor(row_factory=class_row(BusinessUnit)) as cur:
        await cur.execute(query, values)
        row = await cur.fetchone()
    assert row is not None
    return row


async def get(conn: psycopg.AsyncConnection[Any], bu_id: UUID) -> BusinessUnit | None:
    async with conn.cursor(row_factory=class_row(BusinessUnit)) as cur:
        await cur.execute(
            sql.SQL("SELECT {} FROM tenants WHERE id = %s").format(_COLUMNS), (bu_id,)
        )
        return await cur.fetchone()


async def lock(conn: psycopg.AsyncConnection[Any], bu_id: UUID) -> BusinessUnit | None:
    """The BU, locked until the transaction ends (deletion, restore and purge take turns)."""
    async with conn.cursor(row_factory=class_row(BusinessUnit)) as cur:
        await cur.execute(
            sql.SQL("SELECT {} FROM tenants WHERE id = %s FOR UPDATE").format(_COLUMNS), (bu_id,)
        )
        return await cur.fetchone()


async def status_before_deletion(conn: psycopg.AsyncConnection[Any], bu_id: UUID) -> str | None:
    cur = await conn.execute("SELECT status_before_deletion FROM tenants WHERE id = %s", (bu_id,))
    row = await cur.fetchone()
    return None if row is None else row[0]


async def get_by_slug(conn: psycopg.AsyncConnection[Any], slug: str) -> BusinessUnit | None:
    async with conn.cursor(row_factory=class_row(BusinessUnit)) as cur:
        await cur.execute(
            sql.SQL("SELECT {} FROM tenants WHERE slug = %s").format(_COLUMNS), (slug,)
        )
        return await cur.fetchone()


async def list_all(conn: psycopg.AsyncConnection[Any]) -> list[BusinessUnit]:
    async with conn.cursor(row_factory=class_row(BusinessUnit)) as cur:
        await cur.execute(sql.SQL("SELECT {} FROM tenants ORDER BY slug").format(_COLUMNS))
        return await cur.fetchall()


async def update(
    conn: psycopg.AsyncConnection[Any], bu_id: UUID, values: dict[str, Any]
) -> BusinessUnit | None:
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in values
    )
    query = sql.SQL(
        "UPDATE tenants SET {assign}, updated_at = now() WHERE id = {id} RETURNING {ret}"
    ).format(assign=assignments, id=sql.Placeholder("__id"), ret=_COLUMNS)
    async with conn.cursor(row_factory=class_row(BusinessUnit)) as cur:
        await cur.execute(query, {**values, "__id": bu_id})
        return await cur.fetchone()
