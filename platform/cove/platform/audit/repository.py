"""SQL for the audit log (read-only: the application role may only insert and select)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from cove.platform.audit.schemas import AuditEntry


@dataclass(frozen=True, slots=True)
class AuditFilter:
    tenant_id: UUID | None = None
    action: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    limit: int = 100


async def search(conn: psycopg.AsyncConnection[Any], where: AuditFilter) -> list[AuditEntry]:
    clauses: list[sql.Composable] = []
    params: dict[str, Any] = {"limit": where.limit}
    if where.tenant_id is not None:
        clauses.append(sql.SQL("tenant_id = %(tenant_id)s"))
        params["tenant_id"] = where.tenant_id
    if where.action:
        # `policy.` matches every policy decision; an exact name matches itself.
        clauses.append(sql.SQL("(action = %(action)s OR action LIKE %(prefix)s)"))
        params["action"] = where.action
        params["prefix"] = (
            where.action.rstrip(".") + ".%" if where.action.endswith(".") else (where.action)
        )
    if where.actor:
        clauses.append(sql.SQL("actor = %(actor)s"))
        params["actor"] = where.actor
    if where.since:
        clauses.append(sql.SQL("created_at >= %(since)s"))
        params["since"] = where.since
    if where.until:
        clauses.append(sql.SQL("created_at < %(until)s"))
        params["until"] = where.until
    if where.before_id:
        clauses.append(sql.SQL("id < %(before_id)s"))
        params["before_id"] = where.before_id
    condition = sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("true")
    query = sql.SQL(
        "SELECT id, tenant_id, actor, action, target, diff, request_id, created_at"
        " FROM audit_log WHERE {} ORDER BY id DESC LIMIT %(limit)s"
    ).format(condition)
    async with conn.cursor(row_factory=class_row(AuditEntry)) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()
