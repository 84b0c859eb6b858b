"""The gateway's SQL: the route table and policies it caches (keys come from the tenancy
kernel), and the batches it writes: usage events, audit entries, prompt logs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row


@dataclass(frozen=True, slots=True)
class RouteRow:
    tenant_id: UUID
    deployment_id: UUID
    deployment: str
    model: str
    base_model: str
    served_model_name: str
    endpoint_url: str
    status: str
    fim_tokens: dict[str, str] | None
    tenant_status: str
    fallback_deployment_id: UUID | None
    # A base instance the platform shares across BUs (the BU's own instances come first).
    shared: bool = False


@dataclass(frozen=True, slots=True)
class ReleaseRow:
    tenant_id: UUID
    stable: str
    canary: str | None
    canary_percent: int
    canary_groups: list[str]


async def all_routes(conn: psycopg.AsyncConnection[Any]) -> list[RouteRow]:
    """Every model a BU can reach: each of its deployments' base model, the base model of
    each shared instance of a base model granted to it, and each of its adapters loaded on
    either (served under the adapter's own name). An adapter on a shared instance is a route
    of the BU that owns it, never of the other BUs on that instance."""
    async with conn.cursor(row_factory=class_row(RouteRow)) as cur:
        await cur.execute(
            """
            SELECT d.tenant_id, d.id AS deployment_id, d.name AS deployment, m.name AS model,
                   m.name AS base_model, d.served_model_name, d.endpoint_url, d.status,
                   m.fim_tokens, t.status AS tenant_status, d.fallback_deployment_id,
                   false AS shared
            FROM model_deployments d
            JOIN models m ON m.id = d.model_id
            JOIN tenants t ON t.id = d.tenant_id
            WHERE d.desired_state = 'running'
            UNION ALL
            SELECT g.tenant_id, d.id, d.name, m.name, m.name, d.served_model_name,
                   d.endpoint_url, d.status, m.fim_tokens, t.status, NULL, true
            FROM model_deployments d
            JOIN model_grants g ON g.model_id = d.model_id
            JOIN models m ON m.id = d.model_id
            JOIN tenants t ON t.id = g.tenant_id
            WHERE d.tenant_id IS NULL AND d.desired_state = 'running'
            UNION ALL
            SELECT da.tenant_id, d.id, d.name, a.name, m.name, a.name, d.endpoint_url, d.status,
                   m.fim_tokens, t.status, d.fallback_deployment_id, d.tenant_id IS NULL
            FROM deployment_adapters da
            JOIN model_deployments d ON d.id = da.deployment_id
            JOIN models a ON a.id = da.model_id
            JOIN models m ON m.id = d.model_id
            JOIN tenants t ON t.id = da.tenant_id
            WHERE da.state = 'loaded' AND d.desired_state = 'running'
            ORDER BY 1, 12, 3, 4
            """
        )
        return await cur.fetchall()


async def all_releases(conn: psycopg.AsyncConnection[Any]) -> list[ReleaseRow]:
    async with conn.cursor(row_factory=class_row(ReleaseRow)) as cur:
        await cur.execute(
            """
            SELECT r.tenant_id, s.name AS stable, c.name AS canary, r.canary_percent,
                   r.canary_groups
            FROM model_releases r
            JOIN models s ON s.id = r.stable_model_id
            LEFT JOIN models c ON c.id = r.canary_model_id
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


# An event id seen again within this time of its first timestamp is a duplicate.
DUPLICATE_WINDOW = timedelta(days=2)


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
        # What is already stored under the batch's ids, looked up in the id index of the daily
        # partitions the batch can reach (one probe per id), so a batch costs the same at
        # 10 million stored events as at 10 thousand. Joined against the whole table instead,
        # the planner hashes every stored id or scans partitions once per staged event.
        stamps = [row[3] for row in rows]
        await cur.execute(
            "WITH known AS MATERIALIZED ("
            "  SELECT id, occurred_at FROM usage_events"
            "  WHERE id = ANY(%(ids)s) AND occurred_at > %(lo)s AND occurred_at < %(hi)s)"
            " INSERT INTO usage_events (id, tenant_id, event_type, occurred_at, user_id,"
            " completion_id, model_version, feature, language, ide, data)"
            " SELECT DISTINCT ON (id) id, tenant_id, event_type, occurred_at,"
            " user_id, completion_id, model_version, feature, language, ide, data"
            " FROM usage_events_staging s"
            " WHERE NOT EXISTS (SELECT 1 FROM known u WHERE u.id = s.id"
            "   AND u.occurred_at > s.occurred_at - interval '2 days'"
            "   AND u.occurred_at < s.occurred_at + interval '2 days')"
            " ORDER BY id, occurred_at"
            " ON CONFLICT DO NOTHING",
            {
                "ids": [row[0] for row in rows],
                "lo": min(stamps) - DUPLICATE_WINDOW if stamps else None,
                "hi": max(stamps) + DUPLICATE_WINDOW if stamps else None,
            },
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


PROMPT_LOG_COLUMNS = (
    "id",
    "tenant_id",
    "logged_at",
    "mode",
    "user_id",
    "username",
    "request_id",
    "completion_id",
    "feature",
    "model_version",
    "path",
    "language",
    "prompt_chars",
    "suffix_chars",
    "completion_chars",
    "prompt_tokens",
    "completion_tokens",
    "rules",
    "cancelled",
    "prompt",
    "suffix",
    "completion",
)


async def insert_prompt_logs(
    conn: psycopg.AsyncConnection[Any], rows: list[tuple[Any, ...]]
) -> None:
    # COPY refuses tables with row-level security; executemany pipelines the inserts.
    placeholders = ", ".join(["%s"] * len(PROMPT_LOG_COLUMNS))
    async with conn.cursor() as cur:
        await cur.executemany(
            f"INSERT INTO prompt_logs ({', '.join(PROMPT_LOG_COLUMNS)})"  # noqa: S608
            f" VALUES ({placeholders})",
            rows,
        )
