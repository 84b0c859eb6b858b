"""From verified Keycloak claims to Cove roles and a `Principal` for one business unit.

Keycloak groups carry BU roles: a member of `/cove/<bu>/admins`, `/cove/<bu>/developers` or
`/cove/<bu>/viewers` (or of any subgroup below one of them, which Keycloak members inherit
from) holds that role in the BU. The realm role `platform-admin` (in `realm_access.roles`)
makes a platform admin. A user may belong to several BUs; the request names the one it acts
in, and `principal_for_bu` checks that membership.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from uuid import UUID

from cove.platform.core.errors import BadRequest, Forbidden, Unauthorized
from cove.tenants.principal import Principal, Role, Scope

GROUP_ROOT: Final = "cove"
PLATFORM_ADMIN_REALM_ROLE: Final = "platform-admin"

ROLE_BY_GROUP: Final[Mapping[str, Role]] = {
    "admins": Role.BU_ADMIN,
    "developers": Role.DEVELOPER,
    "viewers": Role.VIEWER,
}
GROUP_BY_ROLE: Final[Mapping[Role, str]] = {role: group for group, role in ROLE_BY_GROUP.items()}

_RANK: Final[Mapping[Role, int]] = {Role.VIEWER: 1, Role.DEVELOPER: 2, Role.BU_ADMIN: 3}

SCOPES_BY_ROLE: Final[Mapping[Role, frozenset[Scope]]] = {
    Role.VIEWER: frozenset({Scope.ADMIN_READ}),
    Role.DEVELOPER: frozenset({Scope.COMPLETIONS, Scope.EVENTS}),
    Role.BU_ADMIN: frozenset(
        {Scope.COMPLETIONS, Scope.EVENTS, Scope.ADMIN_READ, Scope.ADMIN_WRITE}
    ),
    Role.PLATFORM_ADMIN: frozenset(Scope),
}

# The same rule as a BU's slug in the API, so a group name can never address a BU that
# could not exist.
_SLUG: Final = re.compile(r"^[a-z][a-z0-9-]{1,62}$")


def group_path(bu_slug: str, role: Role) -> str:
    """The Keycloak group whose members hold `role` in the BU, e.g. `/cove/payments/admins`."""
    return f"/{GROUP_ROOT}/{bu_slug}/{GROUP_BY_ROLE[role]}"


def groups_from_claims(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """The token's group paths, each with a leading slash, in token order."""
    raw = claims.get("groups")
    # A single-valued group mapper emits a string instead of a list.
    items = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    paths: list[str] = []
    for item in items:
        if isinstance(item, str) and item.strip("/"):
            path = "/" + item.strip("/")
            if path not in paths:
                paths.append(path)
    return tuple(paths)


def realm_roles(claims: Mapping[str, Any]) -> frozenset[str]:
    access = claims.get("realm_access")
    roles = access.get("roles") if isinstance(access, Mapping) else None
    if not isinstance(roles, list):
        return frozenset()
    return frozenset(role for role in roles if isinstance(role, str))


def is_platform_admin(claims: Mapping[str, Any]) -> bool:
    return PLATFORM_ADMIN_REALM_ROLE in realm_roles(claims)


def memberships_from_claims(claims: Mapping[str, Any]) -> dict[str, Role]:
    """BU slug → the highest role the token's groups give in that BU."""
    memberships: dict[str, Role] = {}
    for path in groups_from_claims(claims):
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != GROUP_ROOT or not _SLUG.match(parts[1]):
            continue
        role = ROLE_BY_GROUP.get(parts[2])
        if role is None:
            continue
        bu = parts[1]
        current = memberships.get(bu)
        if current is None or _RANK[role] > _RANK[current]:
            memberships[bu] = role
    return memberships


def scopes_for(roles: frozenset[Role]) -> frozenset[Scope]:
    scopes: set[Scope] = set()
    for role in roles:
        scopes |= SCOPES_BY_ROLE[role]
    return frozenset(scopes)


def _subject(claims: Mapping[str, Any]) -> str:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        # Keycloak's lightweight access tokens drop `sub` unless the `basic` scope maps it.
        raise Unauthorized("The access token has no subject ('sub')", code="token_malformed")
    return sub


def _username(claims: Mapping[str, Any], subject: str) -> str:
    for claim in ("preferred_username", "email"):
        value = claims.get(claim)
        if isinstance(value, str) and value:
            return value
    return subject


def principal_for_bu(claims: Mapping[str, Any], bu_slug: str, bu_id: UUID) -> Principal:
    """The caller acting in one BU; `Forbidden(not_a_member)` without a role there.

    Platform admins may act in every BU; they keep any BU role their groups give as well.
    """
    subject = _subject(claims)
    roles: set[Role] = set()
    bu_role = memberships_from_claims(claims).get(bu_slug)
    if bu_role is not None:
        roles.add(bu_role)
    if is_platform_admin(claims):
        roles.add(Role.PLATFORM_ADMIN)
    if not roles:
        raise Forbidden(f"You are not a member of business unit '{bu_slug}'", code="not_a_member")
    frozen = frozenset(roles)
    return Principal(
        subject=subject,
        username=_username(claims, subject),
        tenant_id=bu_id,
        user_id=None,
        roles=frozen,
        scopes=scopes_for(frozen),
        groups=groups_from_claims(claims),
    )


def choose_bu(claims: Mapping[str, Any], requested: str | None) -> str | None:
    """The BU slug a token acts in: the one the request names (`X-Cove-BU`), else the user's
    only BU. None for a platform admin acting platform-wide. A user of several BUs must say
    which; guessing would let a request land in the wrong BU."""
    if requested:
        return requested
    memberships = memberships_from_claims(claims)
    if len(memberships) == 1:
        return next(iter(memberships))
    if is_platform_admin(claims):
        return None
    if not memberships:
        raise Forbidden("You are not a member of any business unit", code="not_a_member")
    raise BadRequest(
        "You belong to several business units; name one with the X-Cove-BU header "
        f"({', '.join(sorted(memberships))})",
        code="bu_required",
    )


def platform_principal(claims: Mapping[str, Any]) -> Principal:
    """A platform admin acting outside any BU."""
    subject = _subject(claims)
    return Principal(
        subject=subject,
        username=_username(claims, subject),
        tenant_id=None,
        user_id=None,
        roles=frozenset({Role.PLATFORM_ADMIN}),
        scopes=scopes_for(frozenset({Role.PLATFORM_ADMIN})),
        groups=groups_from_claims(claims),
    )
