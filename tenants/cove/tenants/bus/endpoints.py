"""HTTP endpoints for business units."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status

from cove.tenants.bus import service
from cove.tenants.bus.schemas import BusinessUnit, BusinessUnitCreate, BusinessUnitUpdate
from cove.tenants.http import AdminReader, AdminWriter, Db

router = APIRouter(prefix="/api/v1/bus", tags=["business units"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_business_unit(
    body: BusinessUnitCreate, principal: AdminWriter, db: Db
) -> BusinessUnit:
    """Create a business unit (platform admins only)."""
    return await service.create(db, principal, body)


@router.get("")
async def list_business_units(principal: AdminReader, db: Db) -> list[BusinessUnit]:
    """Business units the caller can see: all for a platform admin, else the caller's own."""
    return await service.list_visible(db, principal)


@router.get("/{bu_id}")
async def get_business_unit(bu_id: UUID, principal: AdminReader, db: Db) -> BusinessUnit:
    """One business unit."""
    return await service.get(db, principal, bu_id)


@router.patch("/{bu_id}")
async def update_business_unit(
    bu_id: UUID, body: BusinessUnitUpdate, principal: AdminWriter, db: Db
) -> BusinessUnit:
    """Change a business unit's name, quotas, prompt logging, retention or status."""
    return await service.update(db, principal, bu_id, body)
