"""HTTP endpoints for the model catalog: base models and grants (platform admins), and a
business unit's models and adapters."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response, status

from cove.platform.models import service
from cove.platform.models.schemas import AdapterCreate, BaseModelCreate, CatalogModel, Grant
from cove.tenants.http import AdminReader, AdminWriter, Db

router = APIRouter(tags=["models"])


@router.get("/api/v1/models")
async def list_base_models(principal: AdminReader, db: Db) -> list[CatalogModel]:
    """Every base model in the catalog (platform admins)."""
    return await service.list_base_models(db, principal)


@router.post("/api/v1/models", status_code=status.HTTP_201_CREATED)
async def create_base_model(body: BaseModelCreate, principal: AdminWriter, db: Db) -> CatalogModel:
    """Register a base model (platform admins). A local directory is checked and described
    from its files (architecture, context length, FIM tokens); a missing one is refused."""
    return await service.create_base_model(db, principal, body)


@router.get("/api/v1/models/{model_id}")
async def get_model(model_id: UUID, principal: AdminReader, db: Db) -> CatalogModel:
    """One catalog model (platform admins)."""
    return await service.get_model(db, principal, model_id)


@router.delete("/api/v1/models/{model_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_base_model(model_id: UUID, principal: AdminWriter, db: Db) -> Response:
    """Remove a base model nothing uses any more (platform admins)."""
    await service.delete_base_model(db, principal, model_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/api/v1/models/{model_id}/grants")
async def list_grants(model_id: UUID, principal: AdminReader, db: Db) -> list[Grant]:
    """The business units that may deploy this base model."""
    return await service.list_grants(db, principal, model_id)


@router.put("/api/v1/models/{model_id}/grants/{bu_id}")
async def grant(model_id: UUID, bu_id: UUID, principal: AdminWriter, db: Db) -> Grant:
    """Let a business unit deploy the base model and train adapters on it (idempotent)."""
    return await service.grant(db, principal, model_id, bu_id)


@router.delete("/api/v1/models/{model_id}/grants/{bu_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke(model_id: UUID, bu_id: UUID, principal: AdminWriter, db: Db) -> Response:
    """Withdraw a grant the business unit no longer uses."""
    await service.revoke(db, principal, model_id, bu_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/api/v1/bus/{bu_id}/models")
async def list_bu_models(bu_id: UUID, principal: AdminReader, db: Db) -> list[CatalogModel]:
    """The base models granted to the business unit, and its own adapters."""
    return await service.list_for_bu(db, principal, bu_id)


@router.post("/api/v1/bus/{bu_id}/adapters", status_code=status.HTTP_201_CREATED)
async def create_adapter(
    bu_id: UUID, body: AdapterCreate, principal: AdminWriter, db: Db
) -> CatalogModel:
    """Register a LoRA adapter (a model version) of the business unit on a granted base
    model. A local PEFT directory gives the rank (`r` in adapter_config.json)."""
    return await service.create_adapter(db, principal, bu_id, body)


@router.get("/api/v1/bus/{bu_id}/adapters/{model_id}")
async def get_adapter(bu_id: UUID, model_id: UUID, principal: AdminReader, db: Db) -> CatalogModel:
    """One of the business unit's adapters."""
    return await service.get_adapter(db, principal, bu_id, model_id)


@router.delete("/api/v1/bus/{bu_id}/adapters/{model_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_adapter(bu_id: UUID, model_id: UUID, principal: AdminWriter, db: Db) -> Response:
    """Remove an adapter that no deployment serves and no release names."""
    await service.delete_adapter(db, principal, bu_id, model_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
