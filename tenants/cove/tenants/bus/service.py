"""Rules for business units: who may see and change them, and what each change records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from cove.platform.core.db import Database
from cove.platform.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from cove.tenants import audit
from cove.tenants.bus import repository
from cove.tenants.bus.schemas import (
    RESERVED_SLUGS,
    BusinessUnit,
    BusinessUnitCreate,
    BusinessUnitUpdate,
    DeletionRequest,
)
from cove.tenants.principal import Principal, require_bu_admin, require_bu_visible


def _require_platform_admin(principal: Principal) -> None:
    if not principal.is_platform_admin:
        raise Forbidden("Only a platform admin may do this", code="platform_admin_required")


async def create(db: Database, principal: Principal, data: BusinessUnitCreate) -> BusinessUnit:
    _require_platform_admin(principal)
    if data.slug in RESERVED_SLUGS:
        raise ValidationFailed(
            f"The slug '{data.slug}' is reserved: Cove labels the base instances shared across"
            " business units with it on Kubernetes; choose another slug",
            code="slug_reserved",
            param="slug",
        )
    async with db.platform() as conn:
        if await repository.get_by_slug(conn, data.slug) is not None:
            raise Conflict(f"A business unit with slug '{data.slug}' exists", code="slug_taken")
        try:
            bu = await repository.insert(conn, data.model_dump())
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict(
                f"A business unit with slug '{data.slug}' exists", code="slug_taken"
            ) from exc
        await audit.record(
            conn,
            actor=principal.username,
            action="bu.create",
            tenant_id=bu.id,
            target=f"bu:{bu.slug}",
            changes=audit.diff(None, bu.model_dump(mode="json")),
        )
    return bu


async def list_visible(db: Database, principal: Principal) -> list[BusinessUnit]:
    if principal.is_platform_admin:
        async with db.platform() as conn:
            return await repository.list_all(conn)
    if principal.tenant_id is None:
        return []
    async with db.tenant(principal.tenant_id) as conn:
        return await repository.list_all(conn)


async def get(db: Database, principal: Principal, bu_id: UUID) -> BusinessUnit:
    if principal.is_platform_admin:
        async with db.platform() as conn:
            bu = await repository.get(conn, bu_id)
    elif principal.tenant_id == bu_id:
        async with db.tenant(bu_id) as conn:
            bu = await repository.get(conn, bu_id)
    else:
        bu = None
    if bu is None:
        raise NotFound("No such business unit", code="bu_not_found")
    return bu


async def update(
    db: Database, principal: Principal, bu_id: UUID, data: BusinessUnitUpdate
) -> BusinessUnit:
    require_bu_visible(principal, bu_id)
    _require_platform_admin(principal)
    values = data.model_dump(exclude_unset=True)
    async with db.platform() as conn:
        before = await repository.get(conn, bu_id)
        if before is None:
            raise NotFound("No such business unit", code="bu_not_found")
        if not values:
            return before
        if before.status == "deleting":
            raise Conflict(
                "The business unit is being deleted; restore it first",
                code="bu_deleting",
                details={"purge_after": before.purge_after.isoformat()}
                if before.purge_after
                else None,
            )
        after = await repository.update(conn, bu_id, values)
        assert after is not None
        await audit.record(
            conn,
            actor=principal.username,
            action="bu.update",
            tenant_id=bu_id,
            target=f"bu:{after.slug}",
            changes=audit.diff(before.model_dump(mode="json"), after.model_dump(mode="json")),
        )
        # Gateways reload keys (which carry the BU's status) on this notification.
        await conn.execute("SELECT pg_notify('cove_auth', %s)", (f"bu:{bu_id}",))
    return after


def require_exporter(principal: Principal, bu_id: UUID) -> None:
    """A platform admin, or an admin of this very BU, may export it."""
    require_bu_admin(principal, bu_id, "export this BU")


async def _notify_gateways(conn: psycopg.AsyncConnection[Any], bu_id: UUID) -> None:
    # Gateways reload keys and routes (which carry the BU's status) on this notification.
    await conn.execute("SELECT pg_notify('cove_auth', %s)", (f"bu:{bu_id}",))


async def record_export(
    conn: psycopg.AsyncConnection[Any],
    principal: Principal,
    bu: BusinessUnit,
    summary: dict[str, Any],
) -> None:
    """Remember that the BU was exported (deletion needs a recent export) and audit it."""
    await repository.update(conn, bu.id, {"last_exported_at": datetime.now(UTC)})
    await audit.record(
        conn,
        actor=principal.username,
        action="bu.export",
        tenant_id=bu.id,
        target=f"bu:{bu.slug}",
        changes=summary,
    )


async def request_deletion(
    db: Database,
    principal: Principal,
    bu_id: UUID,
    data: DeletionRequest,
    *,
    default_grace_days: int,
    export_max_age: timedelta,
) -> BusinessUnit:
    """Stage the BU for deletion: it stops serving at once (`deleting`, like a suspended BU)
    and is purged after the grace period, unless a platform admin restores it before."""
    require_bu_visible(principal, bu_id)
    _require_platform_admin(principal)
    grace_days = default_grace_days if data.grace_days is None else data.grace_days
    now = datetime.now(UTC)
    async with db.platform() as conn:
        before = await repository.lock(conn, bu_id)
        if before is None:
            raise NotFound("No such business unit", code="bu_not_found")
        if before.status == "deleting":
            raise Conflict(
                "The business unit is already being deleted",
                code="bu_already_deleting",
                details={"purge_after": before.purge_after.isoformat()}
                if before.purge_after
                else None,
            )
        if before.last_exported_at is None or now - before.last_exported_at > export_max_age:
            raise Conflict(
                "Export the business unit before deleting it "
                f"(an export from the last {export_max_age.total_seconds() / 3600:g} hours)",
                code="export_required",
                details={
                    "last_exported_at": before.last_exported_at.isoformat()
                    if before.last_exported_at
                    else None
                },
            )
        after = await repository.update(
            conn,
            bu_id,
            {
                "status": "deleting",
                "status_before_deletion": before.status,
                "deletion_requested_at": now,
                "deletion_requested_by": principal.username,
                "purge_after": now + timedelta(days=grace_days),
            },
        )
        assert after is not None
        changes = audit.diff(before.model_dump(mode="json"), after.model_dump(mode="json"))
        changes["grace_days"] = grace_days
        if data.reason:
            changes["reason"] = data.reason
        await audit.record(
            conn,
            actor=principal.username,
            action="bu.delete_request",
            tenant_id=bu_id,
            target=f"bu:{after.slug}",
            changes=changes,
        )
        await _notify_gateways(conn, bu_id)
    return after


async def restore(db: Database, principal: Principal, bu_id: UUID) -> BusinessUnit:
    """Cancel a pending deletion during the grace period: the BU gets back the status it had."""
    require_bu_visible(principal, bu_id)
    _require_platform_admin(principal)
    async with db.platform() as conn:
        before = await repository.lock(conn, bu_id)
        if before is None:
            raise NotFound("No such business unit", code="bu_not_found")
        if before.status != "deleting" or before.purge_after is None:
            raise Conflict(
                "The business unit is not being deleted",
                code="bu_not_deleting",
                details={"status": before.status},
            )
        if before.purge_after <= datetime.now(UTC):
            raise Conflict(
                "The grace period is over; the business unit is being purged",
                code="grace_period_over",
                details={"purge_after": before.purge_after.isoformat()},
            )
        previous = await repository.status_before_deletion(conn, bu_id) or "active"
        after = await repository.update(
            conn,
            bu_id,
            {
                "status": previous,
                "status_before_deletion": None,
                "deletion_requested_at": None,
                "deletion_requested_by": None,
                "purge_after": None,
            },
        )
        assert after is not None
        await audit.record(
            conn,
            actor=principal.username,
            action="bu.restore",
            tenant_id=bu_id,
            target=f"bu:{after.slug}",
            changes=audit.diff(before.model_dump(mode="json"), after.model_dump(mode="json")),
        )
        await _notify_gateways(conn, bu_id)
    return after
