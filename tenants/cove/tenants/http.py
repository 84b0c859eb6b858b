"""FastAPI glue for the tenancy kernel: the authenticated principal as a typed dependency.

The composition root puts the `Database` and the key pepper on `app.state`; endpoints declare
`CurrentPrincipal` (any authenticated caller) or `AdminReader` / `AdminWriter` (an admin scope
is required). An endpoint without one of these is public on purpose.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from cove.platform.core.db import Database
from cove.platform.core.errors import Forbidden, Unauthorized
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


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "Send an API key as 'Authorization: Bearer <key>'", code="missing_credentials"
        )
    return token.strip()


async def current_principal(request: Request, db: Db, pepper: Pepper) -> Principal:
    return await key_service.authenticate(db, pepper, _bearer(request))


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def _requiring(scope: Scope) -> object:
    async def dependency(principal: CurrentPrincipal) -> Principal:
        if not principal.can(scope):
            raise Forbidden(f"This key lacks the '{scope}' scope", code="insufficient_scope")
        return principal

    return dependency


AdminReader = Annotated[Principal, Depends(_requiring(Scope.ADMIN_READ))]
AdminWriter = Annotated[Principal, Depends(_requiring(Scope.ADMIN_WRITE))]
