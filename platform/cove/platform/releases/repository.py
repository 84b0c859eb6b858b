"""SQL for releases and their history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row

from cove.platform.releases.schemas import ReleaseEvent

ROUTES_CHANNEL = "cove_routes"


@dataclass(frozen=True, slots=True)
class ReleaseRow:
    stable_model_id: UUID
    stable: str
    canary_model_id: UUID | None
    canary: str | None
    canary_percent: int
    canary_groups: list[str]
    previous_stable_model_id: UUID | None
    previous_stable: str | None
    version: int
    updated_by: str | None
    updated_at: datetime


async def get(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, *, for_update: bool = False
) -> ReleaseRow | None:
    query = (
        "SELECT r.stable_model_id, s.name AS stable, r.canary_model_id, c.name AS canary,"
        " r.canary_percent, r.canary_groups, r.previous_stable_model_id,"
        " p.name AS previous_stable, r.version, r.updated_by, r.updated_at"
        " FROM model_releases r JOIN models s ON s.id = r.stable_model_id"
        " LEFT JOIN models c ON c.id = r.canary_model_id"
        " LEFT JOIN models p ON p.id = r.previous_stable_model_id"
        " WHERE r.tenant_id = %s"
    )
    if for_update:
        query += " FOR UPDATE OF r"
    async with conn.cursor(row_factory=class_row(ReleaseRow)) as cur:
        await cur.execute(query, (tenant_id,))
        return await cur.fetchone()


async def save(
    conn: psycopg.AsyncConnection[Any],
    tenant_id: UUID,
    *,
    stable: UUID,
    canary: UUID | None,
    canary_percent: int,
    canary_groups: list[str],
    previous_stable: UUID | None,
    actor: str,
) -> int:
    """Write the release; returns its new version."""
    cur = await conn.execute(
        "INSERT INTO model_releases (tenant_id, stable_model_id, canary_model_id, canary_percent,"
        " canary_groups, previous_stable_model_id, updated_by, version)"
        " VALUES (%(t)s, %(stable)s, %(canary)s, %(percent)s, %(groups)s, %(previous)s,"
        " %(actor)s, (SELECT coalesce(max(version), 0) + 1 FROM model_release_history"
        "   WHERE tenant_id = %(t)s))"
        " ON CONFLICT (tenant_id) DO UPDATE SET stable_model_id = EXCLUDED.stable_model_id,"
        " canary_model_id = EXCLUDED.canary_model_id, canary_percent = EXCLUDED.canary_percent,"
        " canary_groups = EXCLUDED.canary_groups,"
        " previous_stable_model_id = EXCLUDED.previous_stable_model_id,"
        " updated_by = EXCLUDED.updated_by, updated_at = now(),"
        " version = model_releases.version + 1"
        " RETURNING version",
        {
            "t": tenant_id,
            "stable": stable,
            "canary": canary,
            "percent": canary_percent,
            "groups": canary_groups,
            "previous": previous_stable,
            "actor": actor,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def delete(conn: psycopg.AsyncConnection[Any], tenant_id: UUID) -> bool:
    cur = await conn.execute("DELETE FROM model_releases WHERE tenant_id = %s", (tenant_id,))
    return cur.rowcount > 0


async def add_history(
    conn: psycopg.AsyncConnection[Any],
    tenant_id: UUID,
    *,
    version: int,
    action: str,
    stable: str | None,
    canary: str | None,
    canary_percent: int,
    canary_groups: list[str],
    previous_stable: str | None,
    actor: str,
) -> None:
    await conn.execute(
        "INSERT INTO model_release_history (tenant_id, version, action, stable, canary,"
        " canary_percent, canary_groups, previous_stable, actor)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            tenant_id,
            version,
            action,
            stable,
            canary,
            canary_percent,
            canary_groups,
            previous_stable,
            actor,
        ),
    )


async def history(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, limit: int = 50
) -> list[ReleaseEvent]:
    async with conn.cursor(row_factory=class_row(ReleaseEvent)) as cur:
        await cur.execute(
            "SELECT version, action, stable, canary, canary_percent, canary_groups,"
            " previous_stable, actor, created_at FROM model_release_history"
            " WHERE tenant_id = %s ORDER BY id DESC LIMIT %s",
            (tenant_id, limit),
        )
        return await cur.fetchall()


async def notify_routes(conn: psycopg.AsyncConnection[Any], tenant_id: UUID) -> None:
    await conn.execute("SELECT pg_notify(%s, %s)", (ROUTES_CHANNEL, str(tenant_id)))
