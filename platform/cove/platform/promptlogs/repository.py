"""SQL for prompt logs (the gateway writes them; see cove.gateway.repository)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from cove.platform.promptlogs.schemas import PromptLog

_COLUMNS = sql.SQL(
    "id, logged_at, mode, user_id, username, request_id, completion_id, feature,"
    " model_version, path, language, prompt_chars, suffix_chars, completion_chars,"
    " prompt_tokens, completion_tokens, rules, cancelled, prompt, suffix, completion"
)


@dataclass(frozen=True, slots=True)
class PromptLogFilter:
    user: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # Keyset paging: entries strictly older than (before_time, before_id).
    before_time: datetime | None = None
    before_id: UUID | None = None
    limit: int = 50


async def search(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, where: PromptLogFilter
) -> list[PromptLog]:
    clauses: list[sql.Composable] = [sql.SQL("tenant_id = %(tenant_id)s")]
    params: dict[str, Any] = {"tenant_id": tenant_id, "limit": where.limit}
    if where.user:
        clauses.append(sql.SQL("(user_id = %(user)s OR username = %(user)s)"))
        params["user"] = where.user
    if where.since:
        clauses.append(sql.SQL("logged_at >= %(since)s"))
        params["since"] = where.since
    if where.until:
        clauses.append(sql.SQL("logged_at < %(until)s"))
        params["until"] = where.until
    if where.before_time is not None and where.before_id is not None:
        clauses.append(sql.SQL("(logged_at, id) < (%(before_time)s, %(before_id)s)"))
        params["before_time"] = where.before_time
        params["before_id"] = where.before_id
    query = sql.SQL(
        "SELECT {} FROM prompt_logs WHERE {} ORDER BY logged_at DESC, id DESC LIMIT %(limit)s"
    ).format(_COLUMNS, sql.SQL(" AND ").join(clauses))
    async with conn.cursor(row_factory=class_row(PromptLog)) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


def all_policies(conn: psycopg.Connection[Any]) -> tuple[dict[str, Any], dict[UUID, Any]]:
    """The organisation's policy document and each BU's (BUs without one are absent)."""
    org: dict[str, Any] = {}
    per_bu: dict[UUID, Any] = {}
    for tenant_id, document in conn.execute("SELECT tenant_id, document FROM policies"):
        if tenant_id is None:
            org = document
        else:
            per_bu[tenant_id] = document
    return org, per_bu


def tenant_ids(conn: psycopg.Connection[Any]) -> list[UUID]:
    return [row[0] for row in conn.execute("SELECT id FROM tenants ORDER BY id")]


def purge_tenant(conn: psycopg.Connection[Any], tenant_id: UUID, before: datetime) -> int:
    """Delete the BU's prompt logs older than `before`; returns how many."""
    cur = conn.execute(
        "DELETE FROM prompt_logs WHERE tenant_id = %s AND logged_at < %s", (tenant_id, before)
    )
    return cur.rowcount
