"""Rules for policies: who may change which scope, validation, versions, audit, and the
notification that makes every gateway reload."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from cove.gateway.policies import PolicyInvalid, effective_policy, validate_document
from cove.gateway.policy.engine import apply_policy
from cove.platform.core.db import Database
from cove.platform.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from cove.platform.policies import repository
from cove.platform.policies.schemas import DryRunFinding, DryRunRequest, DryRunResult, PolicyView
from cove.tenants import audit
from cove.tenants.principal import Principal, require_bu_admin, require_bu_visible


def _view(scope: str, row: repository.PolicyRow | None, effective: dict[str, Any]) -> PolicyView:
    return PolicyView(
        scope=scope,
        document=row.document if row else {},
        effective=effective,
        version=row.version if row else 0,
        updated_by=row.updated_by if row else None,
        updated_at=row.updated_at if row else None,
    )


def _validated(document: dict[str, Any]) -> None:
    try:
        validate_document(document)
    except PolicyInvalid as exc:
        first = exc.errors[0]
        where = ".".join(first["loc"]) or "document"
        raise ValidationFailed(
            f"document.{where}: {first['msg']}",
            code="invalid_policy",
            details={"errors": exc.errors},
        ) from exc


async def get_org(db: Database) -> PolicyView:
    async with db.platform() as conn:
        row = await repository.get(conn, None)
    document = row.document if row else {}
    return _view("organisation", row, effective_policy(document, None).model_dump(mode="json"))


async def put_org(
    db: Database, principal: Principal, document: dict[str, Any], expected: int | None
) -> PolicyView:
    if not principal.is_platform_admin:
        raise Forbidden(
            "Only a platform admin may change the default policy", code="platform_admin_required"
        )
    _validated(document)
    async with db.platform() as conn:
        await repository.lock(conn, None)
        before = await repository.get(conn, None)
        if expected is not None and (before.version if before else 0) != expected:
            raise Conflict("The policy changed since you read it", code="version_conflict")
        row = await repository.upsert(conn, None, document, principal.username)
        await audit.record(
            conn,
            actor=principal.username,
            action="policy.update",
            tenant_id=None,
            target="policy:organisation",
            changes=audit.diff(before.document if before else {}, document),
        )
        await conn.execute("SELECT pg_notify('cove_policies', 'org')")
    return _view("organisation", row, effective_policy(document, None).model_dump(mode="json"))


async def get_bu(db: Database, principal: Principal, tenant_id: UUID) -> PolicyView:
    require_bu_visible(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        if not await _bu_exists(conn, tenant_id):
            raise NotFound("No such business unit", code="bu_not_found")
        org = await repository.get(conn, None)
        row = await repository.get(conn, tenant_id)
    effective = effective_policy(org.document if org else {}, row.document if row else None)
    return _view(str(tenant_id), row, effective.model_dump(mode="json"))


async def put_bu(
    db: Database,
    principal: Principal,
    tenant_id: UUID,
    document: dict[str, Any],
    expected: int | None,
) -> PolicyView:
    require_bu_admin(principal, tenant_id, "change the BU's policy")
    _validated(document)
    async with db.tenant(tenant_id) as conn:
        if not await _bu_exists(conn, tenant_id):
            raise NotFound("No such business unit", code="bu_not_found")
        await repository.lock(conn, tenant_id)
        before = await repository.get(conn, tenant_id)
        if expected is not None and (before.version if before else 0) != expected:
            raise Conflict("The policy changed since you read it", code="version_conflict")
        org = await repository.get(conn, None)
        effective = effective_policy(org.document if org else {}, document)
        row = await repository.upsert(conn, tenant_id, document, principal.username)
        await audit.record(
            conn,
            actor=principal.username,
            action="policy.update",
            tenant_id=tenant_id,
            target=f"policy:{tenant_id}",
            changes=audit.diff(before.document if before else {}, document),
        )
        await conn.execute("SELECT pg_notify('cove_policies', %s)", (str(tenant_id),))
    return _view(str(tenant_id), row, effective.model_dump(mode="json"))


async def dry_run(
    db: Database, principal: Principal, tenant_id: UUID, request: DryRunRequest
) -> DryRunResult:
    view = await get_bu(db, principal, tenant_id)
    policy = validate_document(view.effective)
    result = apply_policy(policy.content, request.text, request.path).to_dict()
    return DryRunResult(
        findings=[DryRunFinding(**f) for f in result["findings"]],
        blocked=result["blocked"],
        excluded=result["excluded"],
        text=result["text"],
    )


async def _bu_exists(conn: Any, tenant_id: UUID) -> bool:
    cur = await conn.execute("SELECT 1 FROM tenants WHERE id = %s", (tenant_id,))
    return await cur.fetchone() is not None
