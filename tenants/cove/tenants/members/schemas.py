"""API models of a BU's member list."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, Field

from cove.tenants.principal import Role


class RoleSource(StrEnum):
    # Recorded in Cove: a membership (the local stack's users, owners of per-user API keys)
    # or a Cove user flagged platform admin.
    COVE = "cove"
    # Membership of /cove/<bu>/{admins,developers,viewers} (or a subgroup) in Keycloak.
    KEYCLOAK_GROUP = "keycloak-group"
    # The `platform-admin` realm role in Keycloak.
    KEYCLOAK_REALM_ROLE = "keycloak-realm-role"


class DirectoryStatus(StrEnum):
    CONNECTED = "connected"
    # No Keycloak Admin API credentials configured: only Cove's own memberships are listed.
    NOT_CONFIGURED = "not_configured"
    # Configured but failing: the list holds Cove's memberships only; see `directory_error`.
    UNAVAILABLE = "unavailable"


class RoleGrant(BaseModel):
    role: Role
    source: RoleSource
    via: str | None = Field(
        default=None,
        description="The Keycloak group path or realm role that gives the role",
        examples=["/cove/payments/admins"],
    )


class Member(BaseModel):
    username: str
    email: str | None
    role: Role = Field(description="The strongest of the member's roles in this BU")
    roles: list[RoleGrant]


class MemberList(BaseModel):
    bu_id: UUID
    bu_slug: str
    members: list[Member]
    directory: DirectoryStatus
    directory_error: str | None = None
