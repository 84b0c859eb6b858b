"""The append-only audit log: every admin action, its actor, target and difference."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from cove.platform.core.logging import request_id_var


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """The fields that changed, as {field: [before, after]}."""
    before = before or {}
    after = after or {}
    changed: dict[str, Any] = {}
    for key in sorted(before.keys() | after.keys()):
        if key in {"updated_at", "created_at"}:
            continue
        old, new = before.get(key), after.get(key)
        if old != new:
            changed[key] = [old, new]
    return changed


async def record(
    conn: psycopg.AsyncConnection[Any],
    *,
    actor: str,
    action: str,
    tenant_id: UUID | None,
    target: str | None,
    changes: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (tenant_id, actor, action, target, diff, request_id)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (tenant_id, actor, action, target, Jsonb(changes or {}), request_id_var.get()),
    )


def record_sync(
    conn: psycopg.Connection[Any],
    *,
    actor: str,
    action: str,
    tenant_id: UUID | None,
    target: str | None,
    changes: dict[str, Any] | None = None,
) -> None:
    """`record` for synchronous code (Celery tasks)."""
    conn.execute(
        "INSERT INTO audit_log (tenant_id, actor, action, target, diff, request_id)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (tenant_id, actor, action, target, Jsonb(changes or {}), request_id_var.get()),
    )
