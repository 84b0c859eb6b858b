"""Rules for business units: who may see and change them, and what each change records."""

from __future__ import annotations

from uuid import UUID

import psycopg

from cove.platform.core.db import Database
from cove.platform.core.errors import Conflict, Forbidden, NotFound
from cove.tenants import audit
from cove.tenants.bus import repository
from cove.tenants.bus.schemas import BusinessUnit, BusinessUnitCreate, BusinessUnitUpdate
from cove.tenants.principal import Principal


def _require_platform_admin(principal: Principal) -> None:
    if not principal.is_platform_admin:
        raise Forbidden("Only a platform admin may do this", code="platform_admin_required")


async def create(db: Database, principal: Principal, data: BusinessUnitCreate) -> BusinessUnit:
    _require_platform_admin(principal)
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
    if not principal.is_platform_admin and principal.tenant_id != bu_id:
        raise NotFound("No such business unit", code="bu_not_found")
    _require_platform_admin(principal)
    values = data.model_dump(exclude_unset=True)
    async with db.platform() as conn:
        before = await repository.get(conn, bu_id)
        if before is None:
            raise NotFound("No such business unit", code="bu_not_found")
        if not values:
            return before
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
