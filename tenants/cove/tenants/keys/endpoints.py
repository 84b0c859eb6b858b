"""HTTP endpoints for a business unit's API keys."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status

from cove.tenants.http import AdminReader, AdminWriter, Db, Pepper
from cove.tenants.keys import service
from cove.tenants.keys.schemas import ApiKey, ApiKeyCreate, ApiKeyCreated

router = APIRouter(prefix="/api/v1/bus/{bu_id}/api-keys", tags=["api keys"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_api_key(
    bu_id: UUID, body: ApiKeyCreate, principal: AdminWriter, db: Db, pepper: Pepper
) -> ApiKeyCreated:
    """Issue a key. The response is the only time the key itself is shown."""
    return await service.create(db, pepper, principal, bu_id, body)


@router.get("")
async def list_api_keys(bu_id: UUID, principal: AdminReader, db: Db) -> list[ApiKey]:
    """The business unit's keys (never the secrets)."""
    return await service.list_keys(db, principal, bu_id)


@router.delete("/{key_id}")
async def revoke_api_key(bu_id: UUID, key_id: UUID, principal: AdminWriter, db: Db) -> ApiKey:
    """Revoke a key; gateways stop accepting it within seconds."""
    return await service.revoke(db, principal, bu_id, key_id)
