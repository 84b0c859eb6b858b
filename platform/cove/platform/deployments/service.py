"""Rules for model deployments (the foundation's slice: register, list, health)."""

from __future__ import annotations

from uuid import UUID

import psycopg

from cove.platform.core.db import Database
from cove.platform.core.errors import Conflict, Forbidden, NotFound
from cove.platform.deployments import repository
from cove.platform.deployments.schemas import Deployment, DeploymentCreate
from cove.tenants import audit
from cove.tenants.bus import repository as bu_repository
from cove.tenants.principal import Principal, Role


def _visible(principal: Principal, tenant_id: UUID) -> None:
    if not principal.is_platform_admin and principal.tenant_id != tenant_id:
        raise NotFound("No such business unit", code="bu_not_found")


async def list_deployments(db: Database, principal: Principal, tenant_id: UUID) -> list[Deployment]:
    _visible(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        if await bu_repository.get(conn, tenant_id) is None:
            raise NotFound("No such business unit", code="bu_not_found")
        return await repository.list_for_tenant(conn, tenant_id)


async def get_deployment(
    db: Database, principal: Principal, tenant_id: UUID, deployment_id: UUID
) -> Deployment:
    _visible(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        found = await repository.get(conn, tenant_id, deployment_id)
    if found is None:
        raise NotFound("No such deployment", code="deployment_not_found")
    return found


async def create_deployment(
    db: Database, principal: Principal, tenant_id: UUID, data: DeploymentCreate
) -> Deployment:
    _visible(principal, tenant_id)
    if not (principal.is_platform_admin or Role.BU_ADMIN in principal.roles):
        raise Forbidden("Only a BU admin may deploy models", code="bu_admin_required")
    async with db.tenant(tenant_id) as conn:
        if await bu_repository.get(conn, tenant_id) is None:
            raise NotFound("No such business unit", code="bu_not_found")
        model_id = await repository.model_id_by_name(conn, data.model)
        if model_id is None:
            raise NotFound(f"No model named '{data.model}' in the catalog", code="model_not_found")
        try:
            deployment_id = await repository.insert(
                conn,
                {
                    "tenant_id": tenant_id,
                    "name": data.name,
                    "model_id": model_id,
                    "served_model_name": data.served_model_name or data.model,
                    "endpoint_url": str(data.endpoint_url).rstrip("/"),
                },
            )
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict(
                f"A deployment named '{data.name}' exists", code="deployment_exists"
            ) from exc
        await audit.record(
            conn,
            actor=principal.username,
            action="deployment.create",
            tenant_id=tenant_id,
            target=f"deployment:{data.name}",
            changes={"model": [None, data.model], "endpoint_url": [None, str(data.endpoint_url)]},
        )
        await conn.execute("SELECT pg_notify('cove_routes', %s)", (str(tenant_id),))
        created = await repository.get(conn, tenant_id, deployment_id)
    assert created is not None
    return created
