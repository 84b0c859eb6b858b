"""The gateway's reads: the route table (keys come from the tenancy kernel)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row


@dataclass(frozen=True, slots=True)
class RouteRow:
    tenant_id: UUID
    deployment: str
    model: str
    served_model_name: str
    endpoint_url: str
    status: str
    fim_tokens: dict[str, str] | None
    tenant_status: str


async def all_routes(conn: psycopg.AsyncConnection[Any]) -> list[RouteRow]:
    async with conn.cursor(row_factory=class_row(RouteRow)) as cur:
        await cur.execute(
            """
            SELECT d.tenant_id, d.name AS deployment, m.name AS model, d.served_model_name,
                   d.endpoint_url, d.status, coalesce(m.fim_tokens, base.fim_tokens) AS fim_tokens,
                   t.status AS tenant_status
            FROM model_deployments d
            JOIN models m ON m.id = d.model_id
            LEFT JOIN models base ON base.id = m.base_model_id
            JOIN tenants t ON t.id = d.tenant_id
            ORDER BY d.tenant_id, d.created_at
            """
        )
        return await cur.fetchall()


EVENT_COLUMNS = (
    "id",
    "tenant_id",
    "event_type",
    "occurred_at",
    "user_id",
    "completion_id",
    "model_version",
    "feature",
    "language",
    "ide",
    "data",
)


async def insert_events(conn: psycopg.AsyncConnection[Any], rows: list[tuple[Any, ...]]) -> int:
    """COPY a batch into a staging table, then insert what is new (idempotent by event id)."""
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS usage_events_staging"
        " (LIKE usage_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    async with conn.cursor() as cur:
        async with cur.copy(
            "COPY usage_events_staging (id, tenant_id, event_type, occurred_at, user_id,"
            " completion_id, model_version, feature, language, ide, data) FROM STDIN"
        ) as copy:
            for row in rows:
                await copy.write_row(row)
        await cur.execute(
            "INSERT INTO usage_events (id, tenant_id, event_type, occurred_at, user_id,"
            " completion_id, model_version, feature, language, ide, data)"
            " SELECT DISTINCT ON (id) id, tenant_id, event_type, occurred_at,"
            " user_id, completion_id, model_version, feature, language, ide, data"
            " FROM usage_events_staging s"
            " WHERE NOT EXISTS (SELECT 1 FROM usage_events u WHERE u.id = s.id"
            "   AND u.occurred_at > s.occurred_at - interval '2 days'"
            "   AND u.occurred_at < s.occurred_at + interval '2 days')"
            " ORDER BY id, occurred_at"
            " ON CONFLICT DO NOTHING"
        )
        return cur.rowcount


async def all_policies(
    conn: psycopg.AsyncConnection[Any],
) -> tuple[dict[str, Any], dict[UUID, dict[str, Any]]]:
    """The organisation default and every BU's override document."""
    cur = await conn.execute("SELECT tenant_id, document FROM policies")
    org: dict[str, Any] = {}
    per_bu: dict[UUID, dict[str, Any]] = {}
    for tenant_id, document in await cur.fetchall():
        if tenant_id is None:
            org = document
        else:
            per_bu[tenant_id] = document
    return org, per_bu


async def insert_audit(conn: psycopg.AsyncConnection[Any], rows: list[tuple[Any, ...]]) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO audit_log (tenant_id, actor, action, target, diff, request_id, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


async def all_tenants(conn: psycopg.AsyncConnection[Any]) -> list[tuple[UUID, str, str]]:
    """(id, slug, status) of every BU, for tokens that name their BU by slug."""
    cur = await conn.execute("SELECT id, slug, status FROM tenants")
    return [(row[0], row[1], row[2]) for row in await cur.fetchall()]
