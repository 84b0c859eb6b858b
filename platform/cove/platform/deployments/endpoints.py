"""HTTP endpoints for a business unit's model deployments, the adapters on them, and its
capacity."""

from __future__ import annotations

import logging
from typing import Annotated
from uuid import UUID

from celery import Celery
from fastapi import APIRouter, Depends, Request, status

from cove.platform.deployments import service
from cove.platform.deployments.schemas import (
    AdapterAttach,
    Capacity,
    Deployment,
    DeploymentAdapter,
    DeploymentCreate,
    DeploymentUpdate,
    SharedInstance,
    SharedInstanceCreate,
    SharedInstanceUpdate,
)
from cove.tenants.http import AdminReader, AdminWriter, Db

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/bus/{bu_id}", tags=["deployments"])
platform_router = APIRouter(prefix="/api/v1/shared-instances", tags=["deployments"])


def get_tasks(request: Request) -> Celery | None:
    """The Celery app the composition root put on `app.state.celery` (None: tasks are left
    to the workers' periodic sweep)."""
    tasks: Celery | None = getattr(request.app.state, "celery", None)
    if tasks is None:
        log.warning("no Celery app on app.state.celery; reconciles wait for the sweep")
    return tasks


Tasks = Annotated[Celery | None, Depends(get_tasks)]


@router.get("/deployments")
async def list_deployments(bu_id: UUID, principal: AdminReader, db: Db) -> list[Deployment]:
    """The business unit's model deployments with their observed state and adapters."""
    return await service.list_deployments(db, principal, bu_id)


@router.post("/deployments", status_code=status.HTTP_201_CREATED)
async def create_deployment(
    bu_id: UUID, body: DeploymentCreate, principal: AdminWriter, db: Db, tasks: Tasks
) -> Deployment:
    """Create a deployment of a base model granted to the business unit: register an external
    instance, or have Cove run one (`runtime` local or kubernetes). GPUs are admitted against
    the business unit's quota (409 `gpu_quota_exceeded` with the arithmetic)."""
    return await service.create_deployment(db, principal, bu_id, body, tasks)


@router.get("/deployments/{deployment_id}")
async def get_deployment(
    bu_id: UUID, deployment_id: UUID, principal: AdminReader, db: Db
) -> Deployment:
    """One deployment."""
    return await service.get_deployment(db, principal, bu_id, deployment_id)


@router.patch("/deployments/{deployment_id}")
async def update_deployment(
    bu_id: UUID,
    deployment_id: UUID,
    body: DeploymentUpdate,
    principal: AdminWriter,
    db: Db,
    tasks: Tasks,
) -> Deployment:
    """Change replicas, GPUs, vLLM options, the fallback or an external address. `generation`
    must be the one you read (409 `generation_conflict` otherwise)."""
    return await service.update_deployment(db, principal, bu_id, deployment_id, body, tasks)


@router.delete("/deployments/{deployment_id}", status_code=status.HTTP_202_ACCEPTED)
async def delete_deployment(
    bu_id: UUID, deployment_id: UUID, principal: AdminWriter, db: Db, tasks: Tasks
) -> Deployment:
    """Stop routing to the deployment at once; the reconciler stops the instance and removes
    it. Refused while the release sends traffic to a model only this deployment serves."""
    return await service.delete_deployment(db, principal, bu_id, deployment_id, tasks)


@router.post("/deployments/{deployment_id}/adapters", status_code=status.HTTP_202_ACCEPTED)
async def attach_adapter(
    bu_id: UUID,
    deployment_id: UUID,
    body: AdapterAttach,
    principal: AdminWriter,
    db: Db,
    tasks: Tasks,
) -> DeploymentAdapter:
    """Load one of the business unit's adapters onto a shared (multi-LoRA) deployment of its
    base model. Compatibility (base, rank, location) is checked before the instance is
    touched; the adapter is `pending` until the reconciler has hot-loaded it."""
    return await service.attach_adapter(db, principal, bu_id, deployment_id, body, tasks)


@router.delete(
    "/deployments/{deployment_id}/adapters/{model_id}", status_code=status.HTTP_202_ACCEPTED
)
async def detach_adapter(
    bu_id: UUID,
    deployment_id: UUID,
    model_id: UUID,
    principal: AdminWriter,
    db: Db,
    tasks: Tasks,
) -> DeploymentAdapter:
    """Stop routing to the adapter on this deployment and unload it from the instance."""
    return await service.detach_adapter(db, principal, bu_id, deployment_id, model_id, tasks)


@router.get("/capacity")
async def get_capacity(bu_id: UUID, principal: AdminReader, db: Db) -> Capacity:
    """GPUs used against the quota, and each instance's replicas and load."""
    return await service.capacity(db, principal, bu_id)


@router.get("/shared-instances")
async def list_shared_instances_for_bu(
    bu_id: UUID, principal: AdminReader, db: Db
) -> list[SharedInstance]:
    """The platform's shared base instances of the base models granted to the business unit,
    each with the business unit's own adapters on it (never another's)."""
    return await service.list_shared_for_bu(db, principal, bu_id)


@router.post("/shared-instances/{instance_id}/adapters", status_code=status.HTTP_202_ACCEPTED)
async def attach_shared_adapter(
    bu_id: UUID,
    instance_id: UUID,
    body: AdapterAttach,
    principal: AdminWriter,
    db: Db,
    tasks: Tasks,
) -> DeploymentAdapter:
    """Load one of the business unit's adapters onto a shared base instance. The same checks
    as for the business unit's own instances run before the instance is touched; the gateway
    routes the adapter's name there for this business unit only."""
    return await service.attach_shared_adapter(db, principal, bu_id, instance_id, body, tasks)


@router.delete(
    "/shared-instances/{instance_id}/adapters/{model_id}",
    status_code=status.HTTP_202_ACCEPTED,
)
async def detach_shared_adapter(
    bu_id: UUID,
    instance_id: UUID,
    model_id: UUID,
    principal: AdminWriter,
    db: Db,
    tasks: Tasks,
) -> DeploymentAdapter:
    """Stop routing to the business unit's adapter on the shared instance and unload it."""
    return await service.detach_shared_adapter(db, principal, bu_id, instance_id, model_id, tasks)


@platform_router.get("")
async def list_shared_instances(principal: AdminReader, db: Db) -> list[Deployment]:
    """Every shared base instance with the adapters of all business units on it (platform
    admins)."""
    return await service.list_shared_instances(db, principal)


@platform_router.post("", status_code=status.HTTP_201_CREATED)
async def create_shared_instance(
    body: SharedInstanceCreate, principal: AdminWriter, db: Db, tasks: Tasks
) -> Deployment:
    """Run a base instance (multi-LoRA) that business units granted its base model put their
    adapters on (platform admins). Its GPUs are the platform's, counted against no business
    unit's quota."""
    return await service.create_shared_instance(db, principal, body, tasks)


@platform_router.get("/{instance_id}")
async def get_shared_instance(instance_id: UUID, principal: AdminReader, db: Db) -> Deployment:
    """One shared base instance (platform admins)."""
    return await service.get_shared_instance(db, principal, instance_id)


@platform_router.patch("/{instance_id}")
async def update_shared_instance(
    instance_id: UUID,
    body: SharedInstanceUpdate,
    principal: AdminWriter,
    db: Db,
    tasks: Tasks,
) -> Deployment:
    """Scale or reshape a shared instance (platform admins). `generation` must be the one you
    read (409 `generation_conflict`); a `max_lora_rank` below an adapter on it is refused (409
    `adapter_rank_too_high`)."""
    return await service.update_shared_instance(db, principal, instance_id, body, tasks)


@platform_router.delete("/{instance_id}", status_code=status.HTTP_202_ACCEPTED)
async def delete_shared_instance(
    instance_id: UUID, principal: AdminWriter, db: Db, tasks: Tasks
) -> Deployment:
    """Stop and remove a shared instance (platform admins). Refused (409
    `shared_instance_in_use`) while business units keep adapters on it."""
    return await service.delete_shared_instance(db, principal, instance_id, tasks)
