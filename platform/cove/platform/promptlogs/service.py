"""Who may read a BU's prompt logs, paging, and each BU's retention."""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

from cove.gateway.policies import PolicyInvalid, effective_policy
from cove.platform.core.db import Database, SyncDatabase
from cove.platform.core.errors import BadRequest
from cove.platform.promptlogs import repository
from cove.platform.promptlogs.repository import PromptLogFilter
from cove.platform.promptlogs.schemas import PromptLog, PromptLogPage
from cove.tenants import audit
from cove.tenants.principal import Principal, require_bu_admin

log = logging.getLogger(__name__)


def _can_read(principal: Principal, tenant_id: UUID) -> None:
    require_bu_admin(principal, tenant_id, "read prompt logs")


def encode_cursor(entry: PromptLog) -> str:
    raw = f"{entry.logged_at.isoformat()}|{entry.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, entry_id = raw.partition("|")
        return datetime.fromisoformat(stamp), UUID(entry_id)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(
            "'cursor' is not a cursor this API returned", code="invalid_cursor", param="cursor"
        ) from exc


async def page(
    db: Database,
    principal: Principal,
    tenant_id: UUID,
    where: PromptLogFilter,
    cursor: str | None = None,
) -> PromptLogPage:
    """A page of the BU's prompt logs, newest first. Every read is itself audited: prompt
    logs may hold code."""
    _can_read(principal, tenant_id)
    if cursor is not None:
        before_time, before_id = decode_cursor(cursor)
        where = PromptLogFilter(
            user=where.user,
            since=where.since,
            until=where.until,
            before_time=before_time,
            before_id=before_id,
            limit=where.limit,
        )
    async with db.tenant(tenant_id) as conn:
        entries = await repository.search(conn, tenant_id, where)
        await audit.record(
            conn,
            actor=principal.username,
            action="prompt_logs.read",
            tenant_id=tenant_id,
            target=f"prompt_logs:{tenant_id}",
            changes={"user": where.user, "entries": len(entries)},
        )
    more = len(entries) == where.limit and entries
    return PromptLogPage(entries=entries, next_cursor=encode_cursor(entries[-1]) if more else None)


def retention_days(db: SyncDatabase) -> dict[UUID, int]:
    """Each BU's effective prompt-log retention (its own, else the organisation's)."""
    with db.platform() as conn:
        org, per_bu = repository.all_policies(conn)
        tenants = repository.tenant_ids(conn)
    try:
        default = effective_policy(org, None).logging.retention_days
    except PolicyInvalid:
        default = effective_policy({}, None).logging.retention_days
    days: dict[UUID, int] = {}
    for tenant_id in tenants:
        try:
            days[tenant_id] = effective_policy(org, per_bu.get(tenant_id)).logging.retention_days
        except PolicyInvalid:
            days[tenant_id] = default
    return days


def purge(db: SyncDatabase, tenant_id: UUID | None = None) -> dict[str, int]:
    """Delete every BU's prompt logs older than its retention (or one BU's)."""
    now = datetime.now(UTC)
    deleted = 0
    bus = 0
    for tenant, days in retention_days(db).items():
        if tenant_id is not None and tenant != tenant_id:
            continue
        with db.tenant(tenant) as conn:
            deleted += repository.purge_tenant(conn, tenant, now - timedelta(days=days))
        bus += 1
    return {"bus": bus, "deleted": deleted}
