"""HTTP endpoints for a business unit's members."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request

from cove.tenants.http import AdminReader, Db
from cove.tenants.identity.keycloak import KeycloakDirectoryLike
from cove.tenants.members import service
from cove.tenants.members.schemas import MemberList

router = APIRouter(prefix="/api/v1/bus/{bu_id}/members", tags=["members"])


def get_directory(request: Request) -> KeycloakDirectoryLike | None:
    directory: KeycloakDirectoryLike | None = getattr(request.app.state, "directory", None)
    return directory


Directory = Annotated[KeycloakDirectoryLike | None, Depends(get_directory)]


@router.get("")
async def list_members(
    bu_id: UUID, principal: AdminReader, db: Db, directory: Directory
) -> MemberList:
    """The BU's members and their roles, each with its source: a Keycloak group
    (`/cove/<bu>/admins|developers|viewers` or a subgroup), the `platform-admin` realm role,
    or a membership recorded in Cove. BU admins of the BU and platform admins only.
    `directory` says whether Keycloak was asked (`connected`), is not set up
    (`not_configured`) or failed (`unavailable`: the list then holds Cove's memberships only).
    """
    return await service.list_members(db, principal, bu_id, directory)
