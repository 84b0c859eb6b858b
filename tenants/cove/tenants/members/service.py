"""Rules for listing a BU's members: who may, and how Keycloak and Cove roles are merged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from keycloak.exceptions import KeycloakError

from cove.platform.core.db import Database
from cove.platform.core.errors import NotFound
from cove.tenants.bus import repository as bu_repository
from cove.tenants.identity.keycloak import KeycloakDirectoryLike, bu_role_holders
from cove.tenants.members import repository
from cove.tenants.members.schemas import (
    DirectoryStatus,
    Member,
    MemberList,
    RoleGrant,
    RoleSource,
)
from cove.tenants.principal import Principal, Role, require_bu_admin

log = logging.getLogger(__name__)

_RANK: Final = {Role.VIEWER: 1, Role.DEVELOPER: 2, Role.BU_ADMIN: 3, Role.PLATFORM_ADMIN: 4}
DIRECTORY_TIMEOUT_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True)
class _Grant:
    username: str
    email: str | None
    grant: RoleGrant


def _merge(grants: Iterable[_Grant]) -> list[Member]:
    """One row per person (usernames compared case-insensitively, as Keycloak stores them),
    every distinct grant kept, strongest role first."""
    by_user: dict[str, tuple[str, str | None, list[RoleGrant]]] = {}
    for item in grants:
        key = item.username.lower()
        username, email, found = by_user.get(key, (item.username, item.email, []))
        if item.grant not in found:
            found.append(item.grant)
        by_user[key] = (username, email or item.email, found)
    members = []
    for username, email, found in by_user.values():
        found.sort(key=lambda g: (-_RANK[g.role], g.source, g.via or ""))
        members.append(Member(username=username, email=email, role=found[0].role, roles=found))
    members.sort(key=lambda m: (-_RANK[m.role], m.username.lower()))
    return members


async def list_members(
    db: Database,
    principal: Principal,
    bu_id: UUID,
    directory: KeycloakDirectoryLike | None,
) -> MemberList:
    require_bu_admin(principal, bu_id, "list the BU's members")
    async with db.tenant(bu_id) as conn:
        bu = await bu_repository.get(conn, bu_id)
        if bu is None:
            raise NotFound("No such business unit", code="bu_not_found")
        memberships = await repository.list_for_tenant(conn, bu_id)
    # Platform admins act in every BU; they are users outside any one BU's scope.
    async with db.platform() as conn:
        admins = await repository.platform_admins(conn)

    grants = [
        _Grant(row.username, row.email, RoleGrant(role=Role(row.role), source=RoleSource.COVE))
        for row in [*memberships, *admins]
    ]
    status = DirectoryStatus.NOT_CONFIGURED
    error: str | None = None
    if directory is not None:
        try:
            held = await asyncio.wait_for(
                asyncio.to_thread(bu_role_holders, directory, bu.slug),
                DIRECTORY_TIMEOUT_SECONDS,
            )
        except (KeycloakError, TimeoutError, OSError) as exc:
            status = DirectoryStatus.UNAVAILABLE
            error = f"Keycloak did not answer the member lookup: {type(exc).__name__}"
            log.warning("keycloak member lookup failed", extra={"bu": bu.slug, "error": str(exc)})
        else:
            status = DirectoryStatus.CONNECTED
            grants.extend(
                _Grant(
                    h.username,
                    h.email,
                    RoleGrant(
                        role=h.role,
                        source=(
                            RoleSource.KEYCLOAK_GROUP
                            if h.kind == "group"
                            else RoleSource.KEYCLOAK_REALM_ROLE
                        ),
                        via=h.via,
                    ),
                )
                for h in held
            )
    return MemberList(
        bu_id=bu.id,
        bu_slug=bu.slug,
        members=_merge(grants),
        directory=status,
        directory_error=error,
    )
