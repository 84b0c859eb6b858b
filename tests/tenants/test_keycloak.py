"""Keycloak provisioning: the realm import, and the group sync through the Admin REST API.

`sync_groups` is a CONTRACT TEST, not a test against a live Keycloak (none can run here): a
real python-keycloak `KeycloakAdmin` talks HTTP to a small local server that answers the
Admin REST endpoints it calls with responses shaped like Keycloak's documented
representations (Admin REST API, `GroupRepresentation`; token endpoint of the `master` realm;
`201 Created` + `Location` on create, `409 Conflict` on a duplicate sibling, `404` from
`group-by-path`). The server records every request so the tests assert the exact calls.
What this proves and what it does not is written down in docs/identity.md.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakGetError

from cove.tenants.identity.claims import memberships_from_claims
from cove.tenants.identity.keycloak import SyncReport, realm_json, sync_groups
from cove.tenants.principal import Role

REALM = "cove"
ADMIN_TOKEN = "admin-access-token"


# ---- realm import ---------------------------------------------------------------------------


def _client(realm: dict[str, Any], client_id: str) -> dict[str, Any]:
    matches = [c for c in realm["clients"] if c["clientId"] == client_id]
    assert len(matches) == 1, client_id
    client: dict[str, Any] = matches[0]
    return client


def _mapper(client: dict[str, Any], kind: str) -> dict[str, Any]:
    matches = [m for m in client.get("protocolMappers", []) if m["protocolMapper"] == kind]
    assert len(matches) == 1, (client["clientId"], kind)
    mapper: dict[str, Any] = matches[0]
    return mapper


def _paths(groups: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    for group in groups:
        found.append(group["path"])
        found.extend(_paths(group["subGroups"]))
    return found


@pytest.fixture
def realm() -> dict[str, Any]:
    exported = realm_json(REALM, ["payments", "risk"], ["https://cove.example/console/*"])
    # What `kc.sh import` reads is JSON; the representation must survive the round trip.
    decoded: dict[str, Any] = json.loads(json.dumps(exported))
    return decoded


def test_console_is_public_with_pkce_s256(realm: dict[str, Any]) -> None:
    console = _client(realm, "cove-console")
    assert console["publicClient"] is True
    assert console["standardFlowEnabled"] is True
    assert console["implicitFlowEnabled"] is False
    assert console["directAccessGrantsEnabled"] is False
    assert console["attributes"]["pkce.code.challenge.method"] == "S256"
    assert console["redirectUris"] == ["https://cove.example/console/*"]
    assert "secret" not in console


def test_cli_uses_the_device_authorization_grant(realm: dict[str, Any]) -> None:
    cli = _client(realm, "cove-cli")
    assert cli["publicClient"] is True
    assert cli["attributes"]["oauth2.device.authorization.grant.enabled"] == "true"
    assert cli["standardFlowEnabled"] is False
    assert cli["directAccessGrantsEnabled"] is False
    assert realm["oauth2DeviceCodeLifespan"] > 0


def test_gateway_is_a_bearer_only_audience(realm: dict[str, Any]) -> None:
    gateway = _client(realm, "cove-gateway")
    assert gateway["bearerOnly"] is True
    assert gateway["publicClient"] is False
    assert not gateway["standardFlowEnabled"]
    assert not gateway["serviceAccountsEnabled"]


@pytest.mark.parametrize("client_id", ["cove-console", "cove-cli"])
def test_tokens_carry_full_group_paths_and_the_gateway_audience(
    realm: dict[str, Any], client_id: str
) -> None:
    client = _client(realm, client_id)
    groups = _mapper(client, "oidc-group-membership-mapper")["config"]
    assert groups["claim.name"] == "groups"
    assert groups["full.path"] == "true"
    assert groups["access.token.claim"] == "true"
    audience = _mapper(client, "oidc-audience-mapper")["config"]
    assert audience["included.client.audience"] == "cove-gateway"
    assert audience["access.token.claim"] == "true"


def test_platform_client_reads_members_with_a_read_only_service_account(
    realm: dict[str, Any],
) -> None:
    platform = _client(realm, "cove-platform")
    assert platform["publicClient"] is False
    assert platform["serviceAccountsEnabled"] is True
    assert not platform["standardFlowEnabled"]
    assert not platform["directAccessGrantsEnabled"]
    assert "secret" not in platform  # Keycloak generates it on import
    [account] = [u for u in realm["users"] if u.get("serviceAccountClientId") == "cove-platform"]
    assert account["clientRoles"] == {"realm-management": ["query-groups", "view-users"]}


def test_platform_admin_role_and_bu_groups(realm: dict[str, Any]) -> None:
    assert [r["name"] for r in realm["roles"]["realm"]] == ["platform-admin"]
    paths = _paths(realm["groups"])
    assert paths == [
        "/cove",
        "/cove/payments",
        "/cove/payments/admins",
        "/cove/payments/developers",
        "/cove/payments/viewers",
        "/cove/risk",
        "/cove/risk/admins",
        "/cove/risk/developers",
        "/cove/risk/viewers",
    ]


def test_the_groups_it_creates_are_the_groups_the_verifier_understands(
    realm: dict[str, Any],
) -> None:
    expected = {"admins": Role.BU_ADMIN, "developers": Role.DEVELOPER, "viewers": Role.VIEWER}
    for path in _paths(realm["groups"]):
        parts = path.strip("/").split("/")
        if len(parts) == 3:
            assert memberships_from_claims({"groups": [path]}) == {parts[1]: expected[parts[2]]}


@pytest.mark.parametrize(
    ("bus", "redirects"),
    [(["Payments"], ["https://x/*"]), (["payments/admins"], ["https://x/*"]), (["ok"], [])],
)
def test_invalid_input_is_refused(bus: list[str], redirects: list[str]) -> None:
    with pytest.raises(ValueError, match=r"slug|redirect"):
        realm_json(REALM, bus, redirects)


# ---- Admin REST API contract ----------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    authorization: str | None


class FakeKeycloak:
    """Keycloak's Admin REST API for groups, their members and realm-role holders, as
    documented, with an in-memory group tree and users."""

    def __init__(self, realm: str) -> None:
        self.realm = realm
        self.groups: dict[str, dict[str, Any]] = {}
        self.members: dict[str, list[dict[str, Any]]] = {}
        self.role_members: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[Recorded] = []
        self.fail_group_by_path: int | None = None
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, path: str) -> str:
        """Seed an existing group (and its parents) as if an operator had made it."""
        parent: str | None = None
        built = ""
        for name in path.strip("/").split("/"):
            built = f"{built}/{name}"
            found = self._by_path(built)
            parent = found["id"] if found else self._create(name, parent)["id"]
        assert parent is not None
        return parent

    def add_member(self, path: str, username: str, email: str | None = None) -> None:
        """Put a user (a UserRepresentation, brief) into a group, making the group if needed."""
        self.members.setdefault(self.add(path), []).append(self.user(username, email))

    def add_role_member(self, role: str, username: str) -> None:
        self.role_members.setdefault(role, []).append(self.user(username))

    @staticmethod
    def user(username: str, email: str | None = None) -> dict[str, Any]:
        user = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, username)),
            "username": username,
            "enabled": True,
            "emailVerified": email is not None,
            "createdTimestamp": 1764900000000,
            "firstName": username.title(),
            "lastName": "Test",
        }
        if email is not None:
            user["email"] = email
        return user

    def group_id(self, path: str) -> str:
        group = self._by_path(path)
        assert group is not None, path
        return str(group["id"])

    def admin_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/admin/")]

    def posts(self) -> list[tuple[str, Any]]:
        return [(r.path, r.body) for r in self.admin_requests() if r.method == "POST"]

    # -- the model --

    def _by_path(self, path: str) -> dict[str, Any] | None:
        wanted = "/" + path.strip("/")
        return next((g for g in self.groups.values() if g["path"] == wanted), None)

    def _create(self, name: str, parent_id: str | None) -> dict[str, Any]:
        parent_path = self.groups[parent_id]["path"] if parent_id else ""
        group = {"id": str(uuid.uuid4()), "name": name, "path": f"{parent_path}/{name}"}
        if parent_id:
            group["parentId"] = parent_id
        self.groups[group["id"]] = group
        return group

    def _children(self, parent_id: str | None) -> list[dict[str, Any]]:
        kids = [g for g in self.groups.values() if g.get("parentId") == parent_id]
        return sorted(kids, key=lambda g: g["name"])

    def representation(self, group: dict[str, Any]) -> dict[str, Any]:
        """GroupRepresentation as Keycloak 23+ returns it (subgroups only as a count)."""
        return {
            **group,
            "subGroupCount": len(self._children(group["id"])),
            "subGroups": [],
            "attributes": {},
            "realmRoles": [],
            "clientRoles": {},
            "access": {
                "view": True,
                "viewMembers": True,
                "manageMembers": True,
                "manage": True,
                "manageMembership": True,
            },
        }

    # -- HTTP --

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def _dispatch(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.headers.get("content-type", "").startswith("application/json") and raw:
                    body: Any = json.loads(raw)
                elif raw:
                    body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                else:
                    body = None
                with fake.lock:
                    fake.requests.append(
                        Recorded(
                            method,
                            unquote(parts.path),
                            parse_qs(parts.query),
                            body,
                            self.headers.get("authorization"),
                        )
                    )
                    status, payload, headers = fake.answer(
                        method, unquote(parts.path), parts.query, body, self.headers
                    )
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if payload is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def answer(
        self, method: str, path: str, query: str, body: Any, headers: Any
    ) -> tuple[int, Any, dict[str, str]]:
        # The master realm's admin login, or a service account of the realm itself.
        if (
            path
            in (
                "/realms/master/protocol/openid-connect/token",
                f"/realms/{self.realm}/protocol/openid-connect/token",
            )
            and method == "POST"
        ):
            return 200, self._token_response(), {}
        if not path.startswith(f"/admin/realms/{self.realm}/"):
            return 404, {"error": "Realm not found."}, {}
        if headers.get("authorization") != f"Bearer {ADMIN_TOKEN}":
            return 401, {"error": "HTTP 401 Unauthorized"}, {}
        rest = path[len(f"/admin/realms/{self.realm}/") :]
        query_params = {k: v[0] for k, v in parse_qs(query).items()}

        if method == "GET" and rest.startswith("group-by-path/"):
            if self.fail_group_by_path is not None:
                return self.fail_group_by_path, {"error": "HTTP 403 Forbidden"}, {}
            group = self._by_path(rest[len("group-by-path/") :])
            if group is None:
                return 404, {"error": "Group path does not exist"}, {}
            return 200, self.representation(group), {}

        segments = rest.split("/")
        first = int(query_params.get("first", 0))
        size = int(query_params.get("max", 100))
        if segments[0] == "roles" and len(segments) == 3 and segments[2] == "users":
            if segments[1] not in self.role_members:
                return 404, {"error": "Could not find role"}, {}
            return 200, self.role_members[segments[1]][first : first + size], {}
        if segments[0] != "groups":
            return 404, {"error": "HTTP 404 Not Found"}, {}
        if len(segments) == 3 and segments[2] == "members" and method == "GET":
            if segments[1] not in self.groups:
                return 404, {"error": "Could not find group by id"}, {}
            return 200, self.members.get(segments[1], [])[first : first + size], {}
        if len(segments) == 1 and method == "POST":
            return self._post_group(body["name"], None)
        if len(segments) == 3 and segments[2] == "children":
            parent_id = segments[1]
            if parent_id not in self.groups:
                return 404, {"error": "Could not find group by id"}, {}
            if method == "POST":
                return self._post_group(body["name"], parent_id)
            first = int(query_params.get("first", 0))
            size = int(query_params.get("max", 10))
            page = self._children(parent_id)[first : first + size]
            return 200, [self.representation(g) for g in page], {}
        return 404, {"error": "HTTP 404 Not Found"}, {}

    def _post_group(self, name: str, parent_id: str | None) -> tuple[int, Any, dict[str, str]]:
        if any(g["name"] == name for g in self._children(parent_id)):
            if parent_id is None:
                return 409, {"errorMessage": f"Top level group named '{name}' already exists."}, {}
            return 409, {"errorMessage": f"Sibling group named '{name}' already exists."}, {}
        group = self._create(name, parent_id)
        location = f"{self.url}/admin/realms/{self.realm}/groups/{group['id']}"
        return 201, None, {"Location": location}

    @staticmethod
    def _token_response() -> dict[str, Any]:
        return {
            "access_token": ADMIN_TOKEN,
            "expires_in": 60,
            "refresh_expires_in": 1800,
            "refresh_token": "admin-refresh-token",
            "token_type": "Bearer",
            "not-before-policy": 0,
            "session_state": str(uuid.uuid4()),
            "scope": "profile email",
        }


@pytest.fixture
def keycloak() -> Iterator[FakeKeycloak]:
    fake = FakeKeycloak(REALM)
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def admin_for(fake: FakeKeycloak) -> KeycloakAdmin:
    return KeycloakAdmin(
        server_url=fake.url,
        username="admin",
        password="admin-password",
        realm_name=REALM,
        user_realm_name="master",
        timeout=5,
    )


def test_first_sync_creates_the_tree_and_a_second_changes_nothing(keycloak: FakeKeycloak) -> None:
    admin = admin_for(keycloak)
    report = sync_groups(admin, ["payments", "risk"])

    token_calls = [r for r in keycloak.requests if not r.path.startswith("/admin/")]
    assert [(r.method, r.path) for r in token_calls] == [
        ("POST", "/realms/master/protocol/openid-connect/token")
    ]
    assert token_calls[0].body["grant_type"] == "password"
    assert token_calls[0].body["client_id"] == "admin-cli"
    assert token_calls[0].body["username"] == "admin"
    assert all(r.authorization == f"Bearer {ADMIN_TOKEN}" for r in keycloak.admin_requests())

    cove_id = keycloak.group_id("/cove")
    payments_id = keycloak.group_id("/cove/payments")
    base = f"/admin/realms/{REALM}"
    assert [(r.method, r.path) for r in keycloak.admin_requests()][:2] == [
        ("GET", f"{base}/group-by-path/cove"),
        ("POST", f"{base}/groups"),
    ]
    assert keycloak.posts()[:5] == [
        (f"{base}/groups", {"name": "cove"}),
        (f"{base}/groups/{cove_id}/children", {"name": "payments"}),
        (f"{base}/groups/{payments_id}/children", {"name": "admins"}),
        (f"{base}/groups/{payments_id}/children", {"name": "developers"}),
        (f"{base}/groups/{payments_id}/children", {"name": "viewers"}),
    ]
    assert len(keycloak.posts()) == 9
    assert report.created == (
        "/cove",
        "/cove/payments",
        "/cove/payments/admins",
        "/cove/payments/developers",
        "/cove/payments/viewers",
        "/cove/risk",
        "/cove/risk/admins",
        "/cove/risk/developers",
        "/cove/risk/viewers",
    )
    assert sorted(g["path"] for g in keycloak.groups.values()) == sorted(report.created)

    keycloak.requests.clear()
    again = sync_groups(admin, ["payments", "risk"])
    assert keycloak.posts() == []
    assert again == SyncReport(created=(), existing=report.created, unmanaged=())
    assert not again.changed
    risk_id = keycloak.group_id("/cove/risk")
    assert [(r.method, r.path) for r in keycloak.admin_requests()] == [
        ("GET", f"{base}/group-by-path/cove"),
        ("GET", f"{base}/groups/{cove_id}/children"),
        ("GET", f"{base}/groups/{payments_id}/children"),
        ("GET", f"{base}/groups/{risk_id}/children"),
    ]


def test_sync_fills_gaps_and_leaves_other_groups_alone(keycloak: FakeKeycloak) -> None:
    keycloak.add("/cove/payments/admins")
    keycloak.add("/cove/legacy/admins")
    keycloak.add("/staff")
    before = {g["id"]: g["path"] for g in keycloak.groups.values()}

    report = sync_groups(admin_for(keycloak), ["payments", "search"])

    assert report.created == (
        "/cove/payments/developers",
        "/cove/payments/viewers",
        "/cove/search",
        "/cove/search/admins",
        "/cove/search/developers",
        "/cove/search/viewers",
    )
    assert report.existing == ("/cove", "/cove/payments", "/cove/payments/admins")
    assert report.unmanaged == ("/cove/legacy",)
    after = {g["id"]: g["path"] for g in keycloak.groups.values()}
    # Nothing renamed, moved or deleted: only additions.
    assert {k: after[k] for k in before} == before
    assert all(r.method in ("GET", "POST") for r in keycloak.requests)


def test_a_group_created_concurrently_is_not_an_error(keycloak: FakeKeycloak) -> None:
    admin = admin_for(keycloak)
    sync_groups(admin, ["payments"])
    viewers_id = keycloak.group_id("/cove/payments/viewers")

    # Another sync made it between our read and our write: Keycloak answers 409.
    class RacingAdmin:
        def get_group_by_path(self, path: str) -> dict[str, Any]:
            return admin.get_group_by_path(path)

        def get_group_children(
            self, group_id: str, query: dict[str, Any] | None = None, full_hierarchy: bool = False
        ) -> list[Any]:
            children = admin.get_group_children(group_id, query, full_hierarchy)
            return [c for c in children if c["id"] != viewers_id]

        def create_group(
            self, payload: dict[str, Any], parent: str | None = None, skip_exists: bool = False
        ) -> str | None:
            return admin.create_group(payload, parent=parent, skip_exists=skip_exists)

    report = sync_groups(RacingAdmin(), ["payments"])
    assert report.created == ()
    assert "/cove/payments/viewers" in report.existing
    assert keycloak.posts()[-1][1] == {"name": "viewers"}


def test_errors_other_than_not_found_propagate(keycloak: FakeKeycloak) -> None:
    keycloak.fail_group_by_path = HTTPStatus.FORBIDDEN
    with pytest.raises(KeycloakGetError) as caught:
        sync_groups(admin_for(keycloak), ["payments"])
    assert caught.value.response_code == HTTPStatus.FORBIDDEN
    assert keycloak.posts() == []


def test_invalid_bu_slugs_are_refused_before_any_call(keycloak: FakeKeycloak) -> None:
    with pytest.raises(ValueError, match="slug"):
        sync_groups(admin_for(keycloak), ["payments", "../admins"])
    assert keycloak.requests == []
