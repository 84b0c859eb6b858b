"""HTTP endpoints for the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import Response

from cove.platform.audit import service
from cove.platform.audit.repository import AuditFilter
from cove.platform.audit.schemas import AuditPage
from cove.tenants.http import AdminReader, Db

router = APIRouter(tags=["audit"])

MAX_EXPORT = 100_000


def _filter(
    action: Annotated[str | None, Query(max_length=100)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditFilter:
    return AuditFilter(
        action=action, actor=actor, since=since, until=until, before_id=before_id, limit=limit
    )


@router.get("/api/v1/audit")
async def platform_audit(
    principal: AdminReader,
    db: Db,
    action: Annotated[str | None, Query(max_length=100)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """The whole audit log, newest first (platform admins)."""
    where = _filter(action, actor, since, until, before_id, limit)
    return await service.platform_page(db, principal, where)


@router.get("/api/v1/bus/{bu_id}/audit")
async def bu_audit(
    bu_id: UUID,
    principal: AdminReader,
    db: Db,
    action: Annotated[str | None, Query(max_length=100)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """A BU's audit log, newest first (BU admins). `action=policy.` matches every policy
    decision of the gateway."""
    where = _filter(action, actor, since, until, before_id, limit)
    return await service.bu_page(db, principal, bu_id, where)


@router.get("/api/v1/bus/{bu_id}/audit.csv", response_class=Response)
async def bu_audit_csv(
    bu_id: UUID,
    principal: AdminReader,
    db: Db,
    action: Annotated[str | None, Query(max_length=100)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Response:
    """The BU's audit log as CSV (at most 100,000 rows, newest first)."""
    where = _filter(action, None, since, until, None, MAX_EXPORT)
    page = await service.bu_page(db, principal, bu_id, where)
    return Response(
        service.to_csv(page.entries),
        media_type="text/csv",
        headers={"content-disposition": f'attachment; filename="audit-{bu_id}.csv"'},
    )
