"""Who may read which part of the audit log."""

from __future__ import annotations

import csv
import dataclasses
import io
from uuid import UUID

import orjson

from cove.platform.audit import repository
from cove.platform.audit.repository import AuditFilter
from cove.platform.audit.schemas import AuditEntry, AuditPage
from cove.platform.core.db import Database
from cove.platform.core.errors import Forbidden
from cove.tenants.principal import Principal, require_bu_admin

CSV_COLUMNS = ("id", "created_at", "tenant_id", "actor", "action", "target", "request_id", "diff")


def _can_read_bu(principal: Principal, tenant_id: UUID) -> None:
    require_bu_admin(principal, tenant_id, "read the audit log")


async def bu_page(
    db: Database, principal: Principal, tenant_id: UUID, where: AuditFilter
) -> AuditPage:
    _can_read_bu(principal, tenant_id)
    scoped = dataclasses.replace(where, tenant_id=tenant_id)
    async with db.tenant(tenant_id) as conn:
        entries = await repository.search(conn, scoped)
    return _page(entries, where.limit)


async def platform_page(db: Database, principal: Principal, where: AuditFilter) -> AuditPage:
    if not principal.is_platform_admin:
        raise Forbidden(
            "Only a platform admin may read the whole audit log", code="platform_admin_required"
        )
    async with db.platform() as conn:
        entries = await repository.search(conn, where)
    return _page(entries, where.limit)


def _page(entries: list[AuditEntry], limit: int) -> AuditPage:
    return AuditPage(
        entries=entries, next_before_id=entries[-1].id if len(entries) == limit else None
    )


def to_csv(entries: list[AuditEntry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        writer.writerow(
            [
                e.id,
                e.created_at.isoformat(),
                e.tenant_id or "",
                e.actor,
                e.action,
                e.target or "",
                e.request_id or "",
                orjson.dumps(e.diff).decode(),
            ]
        )
    return out.getvalue()
