"""HTTP endpoints for policies."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter

from cove.platform.policies import service
from cove.platform.policies.schemas import DryRunRequest, DryRunResult, PolicyUpdate, PolicyView
from cove.tenants.http import AdminReader, AdminWriter, Db

router = APIRouter(tags=["policies"])


@router.get("/api/v1/policy")
async def get_default_policy(principal: AdminReader, db: Db) -> PolicyView:
    """The organisation's default policy, which every BU inherits."""
    del principal
    return await service.get_org(db)


@router.put("/api/v1/policy")
async def put_default_policy(body: PolicyUpdate, principal: AdminWriter, db: Db) -> PolicyView:
    """Replace the organisation's default policy (platform admins only)."""
    return await service.put_org(db, principal, body.document, body.expected_version)


@router.get("/api/v1/bus/{bu_id}/policy")
async def get_bu_policy(bu_id: UUID, principal: AdminReader, db: Db) -> PolicyView:
    """The BU's overrides and the effective policy the gateway enforces."""
    return await service.get_bu(db, principal, bu_id)


@router.put("/api/v1/bus/{bu_id}/policy")
async def put_bu_policy(
    bu_id: UUID, body: PolicyUpdate, principal: AdminWriter, db: Db
) -> PolicyView:
    """Replace the BU's overrides. Limits can only tighten the organisation's."""
    return await service.put_bu(db, principal, bu_id, body.document, body.expected_version)


@router.post("/api/v1/bus/{bu_id}/policy/dry-run")
async def dry_run_bu_policy(
    bu_id: UUID, body: DryRunRequest, principal: AdminReader, db: Db
) -> DryRunResult:
    """What the gateway would forward for this text under the BU's effective policy."""
    return await service.dry_run(db, principal, bu_id, body)
