"""Who is calling, as every Cove service sees it after authentication."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID

from cove.platform.core.errors import Forbidden, NotFound


class Role(StrEnum):
    PLATFORM_ADMIN = "platform-admin"
    BU_ADMIN = "bu-admin"
    DEVELOPER = "developer"
    VIEWER = "viewer"


class Scope(StrEnum):
    COMPLETIONS = "completions"
    EVENTS = "events"
    ADMIN_READ = "admin:read"
    ADMIN_WRITE = "admin:write"


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    username: str
    # None for a platform-wide principal (a platform admin's key).
    tenant_id: UUID | None
    user_id: UUID | None
    roles: frozenset[Role]
    scopes: frozenset[Scope]
    key_id: str | None = None
    groups: tuple[str, ...] = field(default=())

    @property
    def is_platform_admin(self) -> bool:
        return Role.PLATFORM_ADMIN in self.roles

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes


def require_bu_visible(principal: Principal, tenant_id: UUID) -> None:
    """The one check every tenant-owned endpoint makes first: the caller acts in this BU, or
    is a platform admin. Otherwise `NotFound(bu_not_found)`, so another BU's ids look exactly
    like ids that do not exist."""
    if not principal.is_platform_admin and principal.tenant_id != tenant_id:
        raise NotFound("No such business unit", code="bu_not_found")


def require_bu_admin(principal: Principal, tenant_id: UUID, action: str) -> None:
    """`require_bu_visible`, then: the caller is an admin of this BU (or a platform admin).
    Otherwise `Forbidden(bu_admin_required)`, saying "Only a BU admin may <action>"."""
    require_bu_visible(principal, tenant_id)
    if not principal.is_platform_admin and Role.BU_ADMIN not in principal.roles:
        raise Forbidden(f"Only a BU admin may {action}", code="bu_admin_required")
