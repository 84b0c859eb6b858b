"""Keycloak provisioning: the realm import Cove expects, and idempotent BU group sync.

`realm_json` emits a realm representation (Keycloak's `RealmRepresentation`, the format of
`kc.sh import` and of the admin console's "Partial import") with Cove's three clients, the
`platform-admin` realm role, the mappers that put `groups` and `aud: cove-gateway` into access
tokens, and the group tree `/cove/<bu>/{admins,developers,viewers}`.

`sync_groups` creates what is missing of that group tree through the Admin REST API, using
python-keycloak's `KeycloakAdmin` (or anything with the same three methods). It never deletes:
BU groups that Keycloak has and Cove does not are only reported.

`bu_role_holders` reads who holds which role in a BU (group members and `platform-admin`
realm-role holders) for the members API.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from keycloak.exceptions import KeycloakGetError

from cove.tenants.identity.claims import (
    GROUP_ROOT,
    PLATFORM_ADMIN_REALM_ROLE,
    ROLE_BY_GROUP,
)
from cove.tenants.principal import Role

CONSOLE_CLIENT: Final = "cove-console"
CLI_CLIENT: Final = "cove-cli"
GATEWAY_CLIENT: Final = "cove-gateway"
PLATFORM_CLIENT: Final = "cove-platform"
# What the platform's service account may read through the Admin API (the members list).
PLATFORM_ADMIN_API_ROLES: Final = ("query-groups", "view-users")

_SLUG: Final = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
_HTTP_NOT_FOUND: Final = 404


def _checked_bus(bus: Sequence[str]) -> list[str]:
    bad = [bu for bu in bus if not _SLUG.match(bu)]
    if bad:
        raise ValueError(f"not valid BU slugs: {', '.join(map(repr, bad))}")
    return list(dict.fromkeys(bus))


# ---- realm import ---------------------------------------------------------------------------


def _token_mappers(audience: str) -> list[dict[str, Any]]:
    """Mappers every Cove-facing client needs so its access tokens work at the gateway."""
    return [
        {
            "name": "groups",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-group-membership-mapper",
            "consentRequired": False,
            "config": {
                "claim.name": "groups",
                # `/cove/payments/admins` rather than `admins`, which would be ambiguous.
                "full.path": "true",
                "access.token.claim": "true",
                "id.token.claim": "true",
                "userinfo.token.claim": "true",
                "introspection.token.claim": "true",
            },
        },
        {
            "name": f"{audience}-audience",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "consentRequired": False,
            "config": {
                "included.client.audience": audience,
                "access.token.claim": "true",
                "id.token.claim": "false",
                "introspection.token.claim": "true",
            },
        },
    ]


def _public_client(client_id: str, name: str, audience: str) -> dict[str, Any]:
    return {
        "clientId": client_id,
        "name": name,
        "enabled": True,
        "protocol": "openid-connect",
        "publicClient": True,
        "standardFlowEnabled": False,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": False,
        "frontchannelLogout": True,
        "fullScopeAllowed": True,
        "attributes": {},
        "protocolMappers": _token_mappers(audience),
    }


def _group(name: str, path: str, children: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "path": path, "attributes": {}, "subGroups": children}


def bu_group_tree(bus: Sequence[str]) -> dict[str, Any]:
    """The `/cove` group with one subgroup per BU and one role group below each."""
    return _group(
        GROUP_ROOT,
        f"/{GROUP_ROOT}",
        [
            _group(
                bu,
                f"/{GROUP_ROOT}/{bu}",
                [_group(g, f"/{GROUP_ROOT}/{bu}/{g}", []) for g in ROLE_BY_GROUP],
            )
            for bu in _checked_bus(bus)
        ],
    )


def realm_json(
    realm: str,
    bus: Sequence[str],
    console_redirect_uris: Sequence[str],
    *,
    display_name: str = "Cove",
    console_web_origins: Sequence[str] = ("+",),
    gateway_audience: str = GATEWAY_CLIENT,
    access_token_lifespan: int = 300,
    device_code_lifespan: int = 600,
    device_polling_interval: int = 5,
) -> dict[str, Any]:
    """A Keycloak realm import for Cove.

    - `cove-console`: public client, authorization code flow with PKCE (S256 required).
    - `cove-cli`: public client with the OAuth 2.0 device authorization grant (CLI and IDEs).
    - `cove-gateway`: bearer-only client that exists to be the access tokens' audience.
    - `cove-platform`: confidential client whose service account reads groups and users
      (realm-management `query-groups`, `view-users`) for the members API; Keycloak generates
      its secret on import (the platform's `COVE_KEYCLOAK_CLIENT_SECRET`).
    Both public clients map `groups` (full paths) and `aud: cove-gateway` into access tokens;
    `realm_access.roles` comes from Keycloak's default `roles` client scope.
    """
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", realm):
        raise ValueError(f"not a valid realm name: {realm!r}")
    if not console_redirect_uris:
        raise ValueError("the console needs at least one redirect URI")
    console = _public_client(CONSOLE_CLIENT, "Cove console", gateway_audience)
    console.update(
        {
            "standardFlowEnabled": True,
            "rootUrl": "",
            "redirectUris": list(console_redirect_uris),
            # `+` allows the origins of the redirect URIs and nothing else.
            "webOrigins": list(console_web_origins),
            "attributes": {
                "pkce.code.challenge.method": "S256",
                "post.logout.redirect.uris": "+",
                "oauth2.device.authorization.grant.enabled": "false",
            },
        }
    )
    cli = _public_client(CLI_CLIENT, "Cove CLI and IDE plugins", gateway_audience)
    cli["attributes"] = {"oauth2.device.authorization.grant.enabled": "true"}
    gateway = {
        "clientId": gateway_audience,
        "name": "Cove gateway (token audience)",
        "enabled": True,
        "protocol": "openid-connect",
        # Never obtains tokens itself; it only names the API that accepts them.
        "bearerOnly": True,
        "publicClient": False,
        "standardFlowEnabled": False,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": False,
        "attributes": {},
    }
    platform = {
        "clientId": PLATFORM_CLIENT,
        "name": "Cove platform (reads groups and members)",
        "enabled": True,
        "protocol": "openid-connect",
        "publicClient": False,
        "clientAuthenticatorType": "client-secret",
        "bearerOnly": False,
        "standardFlowEnabled": False,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": True,
        "attributes": {},
    }
    return {
        "realm": realm,
        "displayName": display_name,
        "enabled": True,
        "sslRequired": "external",
        "accessTokenLifespan": access_token_lifespan,
        "oauth2DeviceCodeLifespan": device_code_lifespan,
        "oauth2DevicePollingInterval": device_polling_interval,
        "roles": {
            "realm": [
                {
                    "name": PLATFORM_ADMIN_REALM_ROLE,
                    "description": "Cove platform administrator: every BU, org-wide policy",
                    "composite": False,
                    "clientRole": False,
                }
            ]
        },
        "groups": [bu_group_tree(bus)],
        "clients": [console, cli, gateway, platform],
        # The service account of `cove-platform`, with read-only Admin API roles.
        "users": [
            {
                "username": f"service-account-{PLATFORM_CLIENT}",
                "enabled": True,
                "serviceAccountClientId": PLATFORM_CLIENT,
                "clientRoles": {"realm-management": list(PLATFORM_ADMIN_API_ROLES)},
            }
        ],
    }


# ---- Admin API sync -------------------------------------------------------------------------


class KeycloakAdminLike(Protocol):
    """The part of python-keycloak's `KeycloakAdmin` that `sync_groups` uses."""

    def get_group_by_path(self, path: str) -> dict[str, Any]: ...

    def get_group_children(
        self,
        group_id: str,
        query: dict[str, Any] | None = None,
        full_hierarchy: bool = False,
    ) -> list[Any]: ...

    def create_group(
        self,
        payload: dict[str, Any],
        parent: str | None = None,
        skip_exists: bool = False,
    ) -> str | None: ...


@dataclass(frozen=True, slots=True)
class SyncReport:
    created: tuple[str, ...] = field(default=())
    existing: tuple[str, ...] = field(default=())
    # BU groups under /cove that Keycloak has and the sync was not asked for: left alone.
    unmanaged: tuple[str, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return bool(self.created)


class _Sync:
    def __init__(self, admin: KeycloakAdminLike) -> None:
        self.admin = admin
        self.created: list[str] = []
        self.existing: list[str] = []

    def root(self) -> tuple[str, bool]:
        """The `/cove` group's id, and whether it existed before."""
        path = f"/{GROUP_ROOT}"
        try:
            group = self.admin.get_group_by_path(GROUP_ROOT)
        except KeycloakGetError as exc:
            if exc.response_code != _HTTP_NOT_FOUND:
                raise
            return self.create(path, GROUP_ROOT, parent=None), False
        self.existing.append(path)
        return str(group["id"]), True

    def children(self, parent_id: str) -> dict[str, str]:
        return {
            str(child["name"]): str(child["id"])
            for child in self.admin.get_group_children(parent_id)
            if isinstance(child, dict)
        }

    def ensure_child(self, parent_id: str, known: dict[str, str], path: str, name: str) -> str:
        if name in known:
            self.existing.append(path)
            return known[name]
        return self.create(path, name, parent=parent_id)

    def create(self, path: str, name: str, *, parent: str | None) -> str:
        # skip_exists: a concurrent sync may have created it between our read and write.
        group_id = self.admin.create_group({"name": name}, parent=parent, skip_exists=True)
        if group_id is None:
            group_id = str(self.admin.get_group_by_path(path.lstrip("/"))["id"])
            self.existing.append(path)
        else:
            self.created.append(path)
        return group_id


def sync_groups(admin: KeycloakAdminLike, bus: list[str]) -> SyncReport:
    """Create `/cove`, `/cove/<bu>` and `/cove/<bu>/{admins,developers,viewers}` as needed.

    `admin` must be bound to the Cove realm (`KeycloakAdmin(..., realm_name=<realm>,
    user_realm_name="master")`). Running it twice changes nothing the second time.
    """
    wanted = _checked_bus(bus)
    sync = _Sync(admin)
    root_id, root_existed = sync.root()
    present = sync.children(root_id) if root_existed else {}
    for bu in wanted:
        bu_path = f"/{GROUP_ROOT}/{bu}"
        bu_id = sync.ensure_child(root_id, present, bu_path, bu)
        role_groups = sync.children(bu_id) if bu in present else {}
        for role_group in ROLE_BY_GROUP:
            sync.ensure_child(bu_id, role_groups, f"{bu_path}/{role_group}", role_group)
    unmanaged = tuple(f"/{GROUP_ROOT}/{name}" for name in sorted(present) if name not in wanted)
    return SyncReport(
        created=tuple(sync.created), existing=tuple(sync.existing), unmanaged=unmanaged
    )


# ---- Admin API read: who holds which role in a BU -------------------------------------------


class KeycloakDirectoryLike(Protocol):
    """The part of python-keycloak's `KeycloakAdmin` that `bu_role_holders` uses."""

    def get_group_by_path(self, path: str) -> dict[str, Any]: ...

    def get_group_children(
        self,
        group_id: str,
        query: dict[str, Any] | None = None,
        full_hierarchy: bool = False,
    ) -> list[Any]: ...

    def get_group_members(
        self, group_id: str, query: dict[str, Any] | None = None
    ) -> list[Any]: ...

    def get_realm_role_members(
        self, role_name: str, query: dict[str, Any] | None = None
    ) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class DirectoryGrant:
    """One role one Keycloak user holds, and where it comes from."""

    user_id: str
    username: str
    email: str | None
    role: Role
    # `group` (a /cove/<bu>/<role> group or a subgroup of it) or `realm-role`.
    kind: str
    # The group path or the realm role's name.
    via: str


# Canary cohorts sit a level or two below a role group; deeper trees are not Cove's.
_MAX_SUBGROUP_DEPTH: Final = 4


def _grant(user: Any, role: Role, kind: str, via: str) -> DirectoryGrant | None:
    if not isinstance(user, dict) or not user.get("id") or not user.get("username"):
        return None
    email = user.get("email")
    return DirectoryGrant(
        user_id=str(user["id"]),
        username=str(user["username"]),
        email=email if isinstance(email, str) and email else None,
        role=role,
        kind=kind,
        via=via,
    )


def _group_grants(
    admin: KeycloakDirectoryLike, group: dict[str, Any], role: Role, depth: int
) -> list[DirectoryGrant]:
    path = str(group.get("path") or "")
    grants = [
        grant
        for user in admin.get_group_members(str(group["id"]))
        if (grant := _grant(user, role, "group", path)) is not None
    ]
    if depth < _MAX_SUBGROUP_DEPTH and group.get("subGroupCount", 1):
        for child in admin.get_group_children(str(group["id"])):
            if isinstance(child, dict) and child.get("id"):
                grants.extend(_group_grants(admin, child, role, depth + 1))
    return grants


def bu_role_holders(admin: KeycloakDirectoryLike, bu_slug: str) -> list[DirectoryGrant]:
    """Everyone the realm gives a role in the BU: members of `/cove/<bu>/{admins,developers,
    viewers}` and of their subgroups (Keycloak members inherit from parent groups, and so do
    Cove's token roles), and holders of the `platform-admin` realm role.

    The same rules as `claims.memberships_from_claims`, read from the directory instead of a
    token. A role group that does not exist (yet) has no members.
    """
    _checked_bus([bu_slug])
    grants: list[DirectoryGrant] = []
    for group_name, role in ROLE_BY_GROUP.items():
        path = f"{GROUP_ROOT}/{bu_slug}/{group_name}"
        try:
            group = admin.get_group_by_path(path)
        except KeycloakGetError as exc:
            if exc.response_code != _HTTP_NOT_FOUND:
                raise
            continue
        grants.extend(_group_grants(admin, group, role, 0))
    for user in admin.get_realm_role_members(PLATFORM_ADMIN_REALM_ROLE):
        grant = _grant(user, Role.PLATFORM_ADMIN, "realm-role", PLATFORM_ADMIN_REALM_ROLE)
        if grant is not None:
            grants.append(grant)
    return grants


def directory_client(
    server_url: str, realm: str, client_id: str, client_secret: str, *, timeout: float = 10.0
) -> KeycloakDirectoryLike:
    """A python-keycloak `KeycloakAdmin` logged in as a confidential client's service account
    of the Cove realm (client credentials), for reading groups, their members and role
    holders. The account needs the realm-management roles `query-groups` and `view-users`."""
    from keycloak import KeycloakAdmin

    return KeycloakAdmin(
        server_url=server_url,
        realm_name=realm,
        user_realm_name=realm,
        client_id=client_id,
        client_secret_key=client_secret,
        timeout=int(timeout),
    )
