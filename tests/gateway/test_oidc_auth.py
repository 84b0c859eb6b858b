"""Keycloak-shaped OIDC tokens from a real certified provider, at the gateway and the API."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from cove.gateway.app import create_app
from cove.gateway.settings import GatewaySettings
from cove.platform.core.db import Database
from cove.tenants.bus import repository as bu_repository
from cove.tenants.bus import service as bu_service
from cove.tenants.bus.schemas import BusinessUnitUpdate
from cove.tenants.principal import Principal, Role, Scope
from tests.conftest import ServerThread
from tests.gateway.conftest import add_deployment

# The provider fixtures live with the identity tests; imported here to share the session one.
from tests.tenants.conftest import OidcProvider, oidc_log_dir, oidc_provider  # noqa: F401

pytestmark = pytest.mark.vllm

GATEWAY_AUDIENCE = "urn:cove:gateway"
ADMIN = Principal(
    subject="t",
    username="t",
    tenant_id=None,
    user_id=None,
    roles=frozenset({Role.PLATFORM_ADMIN}),
    scopes=frozenset({Scope.ADMIN_WRITE}),
)


@pytest.fixture
async def bus(db: Database, vllm_url: str, world: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    async with db.platform() as conn:
        for slug in ("payments", "risk"):
            found[slug] = await bu_repository.insert(conn, {"slug": slug, "name": slug})
    for bu in (*found.values(), world["a"]["bu"]):
        await add_deployment(db, bu.id, vllm_url)
    return found


@pytest.fixture
def oidc_settings(gateway_settings: GatewaySettings, oidc_provider: OidcProvider) -> Any:
    return gateway_settings.model_copy(
        update={"oidc_issuer": oidc_provider.issuer(), "oidc_audience": "cove-gateway"}
    )


def _complete(url: str, token: str, bu: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if bu:
        headers["X-Cove-BU"] = bu
    return httpx.post(
        f"{url}/v1/completions",
        json={"model": "cove-tiny", "prompt": "x", "max_tokens": 1},
        headers=headers,
        timeout=30,
    )


async def test_gateway_accepts_keycloak_tokens_for_the_bu_the_user_belongs_to(
    bus: dict[str, Any],
    world: dict[str, Any],
    oidc_settings: GatewaySettings,
    oidc_provider: OidcProvider,
    db: Database,
) -> None:
    alice = oidc_provider.token("alice", resource=GATEWAY_AUDIENCE)
    carol = oidc_provider.token("carol", resource=GATEWAY_AUDIENCE)
    wrong_audience = oidc_provider.token("alice", resource="urn:cove:account")
    with ServerThread(create_app(oidc_settings)) as gateway:
        ok = _complete(gateway.url, alice, "payments")
        assert ok.status_code == 200, ok.text
        assert _complete(gateway.url, alice, "risk").status_code == 200
        several = _complete(gateway.url, alice)
        assert several.status_code == 400
        assert several.json()["error"]["code"] == "bu_required"
        foreign = _complete(gateway.url, alice, "bu-a")
        assert foreign.status_code == 403
        assert foreign.json()["error"]["code"] == "not_a_member"
        viewer = _complete(gateway.url, carol)
        assert viewer.status_code == 403
        assert viewer.json()["error"]["code"] == "insufficient_scope"
        audience = _complete(gateway.url, wrong_audience, "payments")
        assert audience.status_code == 401
        assert audience.json()["error"]["code"] == "token_wrong_audience"
        forged = _complete(gateway.url, alice[:-4] + "AAAA", "payments")
        assert forged.status_code == 401
        # API keys keep working beside tokens.
        assert _complete(gateway.url, world["a"]["dev_key"]).status_code == 200

        await bu_service.update(
            db, ADMIN, bus["payments"].id, BusinessUnitUpdate(status="suspended")
        )
        suspended_at = time.monotonic()
        while (r := _complete(gateway.url, alice, "payments")).status_code == 200:
            assert time.monotonic() - suspended_at < 5, "suspension took longer than 5 s"
            time.sleep(0.1)
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "bu_suspended"
        assert _complete(gateway.url, alice, "risk").status_code == 200


async def test_platform_api_accepts_tokens_and_scopes_them_to_the_bu_in_the_url(
    bus: dict[str, Any],
    settings: Any,
    oidc_provider: OidcProvider,
) -> None:
    from cove.platform.api.app import PlatformSettings
    from cove.platform.api.app import create_app as create_platform

    app = create_platform(
        PlatformSettings(**{**settings.model_dump(), "oidc_issuer": oidc_provider.issuer()})
    )
    root = oidc_provider.token("root", resource=GATEWAY_AUDIENCE)
    alice = oidc_provider.token("alice", resource=GATEWAY_AUDIENCE)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as api:
            listed = await api.get("/api/v1/bus", headers={"Authorization": f"Bearer {root}"})
            assert listed.status_code == 200
            assert {b["slug"] for b in listed.json()} >= {"payments", "risk"}
            risk = bus["risk"].id
            keys = await api.get(
                f"/api/v1/bus/{risk}/api-keys", headers={"Authorization": f"Bearer {alice}"}
            )
            assert keys.status_code == 200, keys.text
            payments = bus["payments"].id
            dev = await api.get(
                f"/api/v1/bus/{payments}/api-keys", headers={"Authorization": f"Bearer {alice}"}
            )
            assert dev.status_code == 403
            assert dev.json()["error"]["code"] == "insufficient_scope"
            created = await api.post(
                f"/api/v1/bus/{risk}/api-keys",
                json={"name": "from sso"},
                headers={"Authorization": f"Bearer {alice}"},
            )
            assert created.status_code == 201, created.text
