"""HTTP endpoints for a business unit's release: stable and canary versions, promote,
rollback, and the history of every step."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter

from cove.platform.releases import service
from cove.platform.releases.schemas import Release, ReleaseStep, ReleaseUpdate
from cove.tenants.http import AdminReader, AdminWriter, Db

router = APIRouter(prefix="/api/v1/bus/{bu_id}/release", tags=["releases"])


@router.get("")
async def get_release(bu_id: UUID, principal: AdminReader, db: Db) -> Release:
    """The stable and canary model versions and the history of changes, newest first."""
    return await service.get_release(db, principal, bu_id)


@router.put("")
async def put_release(bu_id: UUID, body: ReleaseUpdate, principal: AdminWriter, db: Db) -> Release:
    """Set the stable model and optionally a canary for a sticky share of users
    (`canary_percent`) and/or Keycloak groups (`canary_groups`). Both must be routable: a
    deployed base model or an adapter loaded on a deployment of the business unit."""
    return await service.put_release(db, principal, bu_id, body)


@router.delete("")
async def clear_release(bu_id: UUID, principal: AdminWriter, db: Db) -> Release:
    """Remove the release; requests then go to the model they name."""
    return await service.clear_release(db, principal, bu_id)


@router.post("/promote")
async def promote(
    bu_id: UUID, principal: AdminWriter, db: Db, body: ReleaseStep | None = None
) -> Release:
    """Make the canary the stable version for everyone (the old stable is remembered)."""
    return await service.promote(db, principal, bu_id, body)


@router.post("/rollback")
async def rollback(
    bu_id: UUID, principal: AdminWriter, db: Db, body: ReleaseStep | None = None
) -> Release:
    """Restore the previous stable version for everyone and drop the canary, in one step."""
    return await service.rollback(db, principal, bu_id, body)
