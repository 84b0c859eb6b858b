"""GET /api/v1/bus/{bu_id}/members: a BU's members, each role with its source.

Cove's own memberships come from the real Postgres; Keycloak's side is a CONTRACT test: the
real python-keycloak `KeycloakAdmin` (as the platform builds it from its settings) talks to
`FakeKeycloak`, a local server answering the documented Admin REST endpoints (group by path,
group members, group children, realm-role users, the realm's token endpoint for the service
account) with Keycloak-shaped representations. See docs/identity.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from cove.platform.core.settings import CoveSettings
from tests.factories import bearer
from tests.tenants.test_keycloak import REALM, FakeKeycloak


@pytest.fixture
def keycloak() -> Iterator[FakeKeycloak]:
    fake = FakeKeycloak(REALM)
    fake.add_member("/cove/bu-a/admins", "alice", "alice@example.test")
    fake.add_member("/cove/bu-a/developers", "bob")
    # A canary cohort below the developers group: its members are developers too.
    fake.add_member("/cove/bu-a/developers/canary", "carol")
    # a-dev is a developer in Cove and a viewer in Keycloak: both grants are shown.
    fake.add_member("/cove/bu-a/viewers", "A-Dev")
    fake.add_member("/cove/bu-b/admins", "mallory")
    fake.add_member("/staff", "dave")
    fake.add_role_member("platform-admin", "root")
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


@pytest.fixture
async def directory_api(
    settings: CoveSettings, keycloak: FakeKeycloak
) -> AsyncIterator[httpx.AsyncClient]:
    from cove.platform.api.app import PlatformSettings, create_app

    app = create_app(
        PlatformSettings(
            **settings.model_dump(),
            keycloak_url=keycloak.url,
            keycloak_realm=REALM,
            keycloak_client_id="cove-platform",
            keycloak_client_secret="cove-platform-secret",
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://platform") as client:
            yield client


def table(body: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, str, str | None]]]]:
    return [
        (m["username"], m["role"], [(g["role"], g["source"], g["via"]) for g in m["roles"]])
        for m in body["members"]
    ]


async def test_bu_admin_sees_keycloak_and_cove_roles_with_their_sources(
    directory_api: httpx.AsyncClient, world: dict[str, Any], keycloak: FakeKeycloak
) -> None:
    resp = await directory_api.get(
        f"/api/v1/bus/{world['a']['bu'].id}/members", headers=bearer(world["a"]["admin_key"])
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["bu_slug"] == "bu-a"
    assert body["directory"] == "connected"
    assert body["directory_error"] is None
    assert table(body) == [
        ("admin", "platform-admin", [("platform-admin", "cove", None)]),
        ("root", "platform-admin", [("platform-admin", "keycloak-realm-role", "platform-admin")]),
        ("a-admin", "bu-admin", [("bu-admin", "cove", None)]),
        ("alice", "bu-admin", [("bu-admin", "keycloak-group", "/cove/bu-a/admins")]),
        (
            "a-dev",
            "developer",
            [("developer", "cove", None), ("viewer", "keycloak-group", "/cove/bu-a/viewers")],
        ),
        ("bob", "developer", [("developer", "keycloak-group", "/cove/bu-a/developers")]),
        (
            "carol",
            "developer",
            [("developer", "keycloak-group", "/cove/bu-a/developers/canary")],
        ),
    ]
    assert body["members"][3]["email"] == "alice@example.test"
    # The platform logs in as its own service account, in the Cove realm.
    logins = [r for r in keycloak.requests if r.path.endswith("/openid-connect/token")]
    assert logins
    assert logins[0].path == f"/realms/{REALM}/protocol/openid-connect/token"
    assert logins[0].body["grant_type"] == "client_credentials"
    assert logins[0].body["client_id"] == "cove-platform"
    # Read-only: the member list never writes to Keycloak.
    assert keycloak.posts() == []


async def test_platform_admin_sees_any_bu(
    directory_api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    resp = await directory_api.get(
        f"/api/v1/bus/{world['b']['bu'].id}/members", headers=bearer(world["admin_key"])
    )
    assert resp.status_code == 200, resp.text
    names = [m["username"] for m in resp.json()["members"]]
    assert names == ["admin", "root", "b-admin", "mallory", "b-dev"]


async def test_other_bus_and_non_admins_are_refused(
    directory_api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    other = await directory_api.get(
        f"/api/v1/bus/{world['b']['bu'].id}/members", headers=bearer(world["a"]["admin_key"])
    )
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "bu_not_found"
    assert "mallory" not in other.text

    developer = await directory_api.get(
        f"/api/v1/bus/{world['a']['bu'].id}/members", headers=bearer(world["a"]["dev_key"])
    )
    assert developer.status_code == 403
    assert developer.json()["error"]["code"] == "insufficient_scope"

    unauthenticated = await directory_api.get(f"/api/v1/bus/{world['a']['bu'].id}/members")
    assert unauthenticated.status_code == 401


async def test_viewer_key_is_refused_as_not_a_bu_admin(
    directory_api: httpx.AsyncClient, world: dict[str, Any], db: Any, settings: CoveSettings
) -> None:
    from tests.factories import add_key

    async with db.platform() as conn:
        viewer_key, _ = await add_key(
            conn,
            settings.secret_key.get_secret_value().encode(),
            tenant_id=world["a"]["bu"].id,
            user_id=world["a"]["dev_user"],
            scopes=["admin:read"],
        )
    resp = await directory_api.get(
        f"/api/v1/bus/{world['a']['bu'].id}/members", headers=bearer(viewer_key)
    )
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "bu_admin_required"


async def test_keycloak_down_still_lists_cove_members_and_says_so(
    directory_api: httpx.AsyncClient, world: dict[str, Any], keycloak: FakeKeycloak
) -> None:
    keycloak.server.shutdown()
    keycloak.server.server_close()
    resp = await directory_api.get(
        f"/api/v1/bus/{world['a']['bu'].id}/members", headers=bearer(world["a"]["admin_key"])
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["directory"] == "unavailable"
    assert "Keycloak did not answer" in body["directory_error"]
    assert [m["username"] for m in body["members"]] == ["admin", "a-admin", "a-dev"]


async def test_without_keycloak_settings_only_cove_members(
    api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    resp = await api.get(
        f"/api/v1/bus/{world['a']['bu'].id}/members", headers=bearer(world["a"]["admin_key"])
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["directory"] == "not_configured"
    assert table(body) == [
        ("admin", "platform-admin", [("platform-admin", "cove", None)]),
        ("a-admin", "bu-admin", [("bu-admin", "cove", None)]),
        ("a-dev", "developer", [("developer", "cove", None)]),
    ]
