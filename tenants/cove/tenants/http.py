"""FastAPI glue for the tenancy kernel: the authenticated principal as a typed dependency.

The composition root puts the `Database` and the key pepper on `app.state`; endpoints declare
`CurrentPrincipal` (any authenticated caller) or `AdminReader` / `AdminWriter` (an admin scope
is required). An endpoint without one of these is public on purpose.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request

from cove.platform.core.db import Database
from cove.platform.core.errors import Forbidden, NotFound
from cove.tenants.bus import repository as bu_repository
from cove.tenants.identity.bearer import bearer_token
from cove.tenants.identity.claims import choose_bu, platform_principal, principal_for_bu
from cove.tenants.identity.claims import is_platform_admin as claims_is_platform_admin
from cove.tenants.identity.oidc import TokenVerifier
from cove.tenants.keys import service as key_service
from cove.tenants.principal import Principal, Scope


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_pepper(request: Request) -> bytes:
    pepper: bytes = request.app.state.pepper
    return pepper


Db = Annotated[Database, Depends(get_db)]
Pepper = Annotated[bytes, Depends(get_pepper)]


async def current_principal(request: Request, db: Db, pepper: Pepper) -> Principal:
    token = bearer_token(
        request.headers.get("authorization"),
        code="missing_credentials",
        message="Send an API key as 'Authorization: Bearer <key>'",
    )
    verifier: TokenVerifier | None = getattr(request.app.state, "verifier", None)
    if verifier is not None and not token.startswith("cove_") and token.count(".") == 2:
        return await _token_principal(request, db, verifier, token)
    return await key_service.authenticate(db, pepper, token)


async def _token_principal(
    request: Request, db: Database, verifier: TokenVerifier, token: str
) -> Principal:
    """An OIDC caller acts in the BU of the URL (`/bus/{bu_id}/...`), else the one named by
    `X-Cove-BU`, else their only BU."""
    claims = await verifier.verify(token)
    bu_id = request.path_params.get("bu_id")
    slug: str | None
    tenant_id: UUID | None = None
    if bu_id is not None:
        try:
            tenant_id = UUID(str(bu_id))
        except ValueError:
            tenant_id = None
        async with db.platform() as conn:
            found = await bu_repository.get(conn, tenant_id) if tenant_id else None
        if found is None:
            if claims_is_platform_admin(claims):
                return platform_principal(claims)
            raise NotFound("No such business unit", code="bu_not_found")
        slug = found.slug
    else:
        slug = choose_bu(claims, request.headers.get("x-cove-bu"))
        if slug is None:
            return platform_principal(claims)
        async with db.platform() as conn:
            by_slug = await bu_repository.get_by_slug(conn, slug)
        if by_slug is None:
            raise Forbidden(f"You are not a member of business unit '{slug}'", code="not_a_member")
        tenant_id = by_slug.id
    assert tenant_id is not None
    try:
        return principal_for_bu(claims, slug, tenant_id)
    except Forbidden as exc:
        if bu_id is not None:
            # Another BU's ids look exactly like ids that do not exist.
            raise NotFound("No such business unit", code="bu_not_found") from exc
        raise


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def _requiring(scope: Scope) -> object:
    async def dependency(principal: CurrentPrincipal) -> Principal:
        if not principal.can(scope):
            raise Forbidden(f"This key lacks the '{scope}' scope", code="insufficient_scope")
        return principal

    return dependency


AdminReader = Annotated[Principal, Depends(_requiring(Scope.ADMIN_READ))]
AdminWriter = Annotated[Principal, Depends(_requiring(Scope.ADMIN_WRITE))]
