"""HTTP endpoints for a business unit's model deployments."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status

from cove.platform.deployments import service
from cove.platform.deployments.schemas import Deployment, DeploymentCreate
from cove.tenants.http import AdminReader, AdminWriter, Db

router = APIRouter(prefix="/api/v1/bus/{bu_id}/deployments", tags=["deployments"])


@router.get("")
async def list_deployments(bu_id: UUID, principal: AdminReader, db: Db) -> list[Deployment]:
    """The business unit's model deployments and their last health status."""
    return await service.list_deployments(db, principal, bu_id)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_deployment(
    bu_id: UUID, body: DeploymentCreate, principal: AdminWriter, db: Db
) -> Deployment:
    """Register a running model instance as one of the business unit's deployments."""
    return await service.create_deployment(db, principal, bu_id, body)


@router.get("/{deployment_id}")
async def get_deployment(
    bu_id: UUID, deployment_id: UUID, principal: AdminReader, db: Db
) -> Deployment:
    """One deployment."""
    return await service.get_deployment(db, principal, bu_id, deployment_id)
