"""Rules for releases: only models the gateway can route for the BU may be released, every
step is one transaction with its history entry, audit entry and `cove_routes` notification
(the gateway switches within a second), and concurrent editors are told about each other."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

from cove.platform.core.db import Database
from cove.platform.core.errors import Conflict, NotFound, ValidationFailed
from cove.platform.deployments import service as deployments
from cove.platform.models import service as models
from cove.platform.releases import repository
from cove.platform.releases.repository import ReleaseRow
from cove.platform.releases.schemas import Release, ReleaseStep, ReleaseUpdate
from cove.tenants import audit
from cove.tenants.bus import repository as bu_repository
from cove.tenants.principal import Principal, require_bu_admin, require_bu_visible


def _bu_admin(principal: Principal, tenant_id: UUID) -> None:
    require_bu_admin(principal, tenant_id, "change the release")


def _fields(row: ReleaseRow | None) -> dict[str, Any]:
    if row is None:
        return {"stable": None, "canary": None, "canary_percent": 0, "canary_groups": []}
    return {
        "stable": row.stable,
        "canary": row.canary,
        "canary_percent": row.canary_percent,
        "canary_groups": list(row.canary_groups),
        "previous_stable": row.previous_stable,
    }


async def _view(conn: psycopg.AsyncConnection[Any], tenant_id: UUID) -> Release:
    row = await repository.get(conn, tenant_id)
    history = await repository.history(conn, tenant_id)
    return Release(
        bu_id=tenant_id,
        stable=row.stable if row else None,
        canary=row.canary if row else None,
        canary_percent=row.canary_percent if row else 0,
        canary_groups=list(row.canary_groups) if row else [],
        previous_stable=row.previous_stable if row else None,
        version=row.version if row else 0,
        updated_by=row.updated_by if row else None,
        updated_at=row.updated_at if row else None,
        history=history,
    )


async def _routable(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, name: str, role: str
) -> UUID:
    """The id of `name` if the gateway can route it for the BU; a clear 404 / 409 if not."""
    routable = await deployments.routable_models(conn, tenant_id)
    if name in routable:
        return routable[name]
    model = await models.find_visible(conn, name)
    if model is None or (model.kind == "adapter" and model.bu_id != tenant_id):
        raise NotFound(f"{role}: no model named '{name}' in the catalog", code="model_not_found")
    how = (
        "load the adapter onto a shared deployment"
        if model.kind == "adapter"
        else "deploy the base model"
    )
    raise Conflict(
        f"{role}: '{name}' is not served by any of the business unit's deployments; {how}"
        " and wait until it is loaded",
        code="model_not_routable",
        details={"model": name, "role": role},
    )


def _check_version(row: ReleaseRow | None, expected: int | None) -> None:
    current = row.version if row else 0
    if expected is not None and expected != current:
        raise Conflict(
            f"The release changed since you read it (version {expected}, now {current})",
            code="release_version_conflict",
            details={"expected": expected, "current": current},
        )


async def _record(
    conn: psycopg.AsyncConnection[Any],
    principal: Principal,
    tenant_id: UUID,
    action: str,
    before: ReleaseRow | None,
    version: int,
) -> None:
    after = await repository.get(conn, tenant_id)
    fields = _fields(after)
    await repository.add_history(
        conn,
        tenant_id,
        version=version,
        action=action,
        stable=fields["stable"],
        canary=fields["canary"],
        canary_percent=fields["canary_percent"],
        canary_groups=fields["canary_groups"],
        previous_stable=fields.get("previous_stable"),
        actor=principal.username,
    )
    await audit.record(
        conn,
        actor=principal.username,
        action=f"release.{action}",
        tenant_id=tenant_id,
        target="release",
        changes={
            **audit.diff(_fields(before), fields),
            "version": [before and before.version, version],
        },
    )
    await repository.notify_routes(conn, tenant_id)


async def get_release(db: Database, principal: Principal, tenant_id: UUID) -> Release:
    require_bu_visible(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        if await bu_repository.get(conn, tenant_id) is None:
            raise NotFound("No such business unit", code="bu_not_found")
        return await _view(conn, tenant_id)


async def put_release(
    db: Database, principal: Principal, tenant_id: UUID, data: ReleaseUpdate
) -> Release:
    _bu_admin(principal, tenant_id)
    if data.canary is None and (data.canary_percent or data.canary_groups):
        raise ValidationFailed(
            "canary_percent and canary_groups need a canary model", code="canary_required"
        )
    if data.canary is not None and data.canary == data.stable:
        raise ValidationFailed(
            "canary: the canary must differ from the stable model", code="canary_is_stable"
        )
    groups = sorted(set(data.canary_groups))
    async with db.tenant(tenant_id) as conn:
        if await bu_repository.get(conn, tenant_id) is None:
            raise NotFound("No such business unit", code="bu_not_found")
        row = await repository.get(conn, tenant_id, for_update=True)
        _check_version(row, data.version)
        stable = await _routable(conn, tenant_id, data.stable, "stable")
        canary = await _routable(conn, tenant_id, data.canary, "canary") if data.canary else None
        previous = row.previous_stable_model_id if row else None
        if row is not None and row.stable_model_id != stable:
            previous = row.stable_model_id
        version = await repository.save(
            conn,
            tenant_id,
            stable=stable,
            canary=canary,
            canary_percent=data.canary_percent if canary else 0,
            canary_groups=groups if canary else [],
            previous_stable=previous,
            actor=principal.username,
        )
        await _record(conn, principal, tenant_id, "set", row, version)
        return await _view(conn, tenant_id)


async def promote(
    db: Database, principal: Principal, tenant_id: UUID, data: ReleaseStep | None
) -> Release:
    """The canary becomes stable for everyone; the old stable is kept for a rollback."""
    _bu_admin(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        row = await _existing(conn, tenant_id)
        _check_version(row, data.version if data else None)
        if row.canary is None:
            raise Conflict("There is no canary to promote", code="no_canary")
        canary = await _routable(conn, tenant_id, row.canary, "canary")
        version = await repository.save(
            conn,
            tenant_id,
            stable=canary,
            canary=None,
            canary_percent=0,
            canary_groups=[],
            previous_stable=row.stable_model_id,
            actor=principal.username,
        )
        await _record(conn, principal, tenant_id, "promote", row, version)
        return await _view(conn, tenant_id)


async def rollback(
    db: Database, principal: Principal, tenant_id: UUID, data: ReleaseStep | None
) -> Release:
    """Restore the previous stable version for everyone and drop any canary, in one step."""
    _bu_admin(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        row = await _existing(conn, tenant_id)
        _check_version(row, data.version if data else None)
        if row.previous_stable is None:
            raise Conflict(
                "There is no previous stable version to roll back to", code="no_previous"
            )
        previous = await _routable(conn, tenant_id, row.previous_stable, "previous stable")
        version = await repository.save(
            conn,
            tenant_id,
            stable=previous,
            canary=None,
            canary_percent=0,
            canary_groups=[],
            previous_stable=row.stable_model_id,
            actor=principal.username,
        )
        await _record(conn, principal, tenant_id, "rollback", row, version)
        return await _view(conn, tenant_id)


async def clear_release(db: Database, principal: Principal, tenant_id: UUID) -> Release:
    """Remove the release: requests go to the model they name (or the first deployment)."""
    _bu_admin(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        row = await _existing(conn, tenant_id)
        await repository.delete(conn, tenant_id)
        await _record(conn, principal, tenant_id, "clear", row, row.version + 1)
        return await _view(conn, tenant_id)


async def _existing(conn: psycopg.AsyncConnection[Any], tenant_id: UUID) -> ReleaseRow:
    if await bu_repository.get(conn, tenant_id) is None:
        raise NotFound("No such business unit", code="bu_not_found")
    row = await repository.get(conn, tenant_id, for_update=True)
    if row is None:
        raise Conflict("The business unit has no release yet; PUT one first", code="no_release")
    return row
