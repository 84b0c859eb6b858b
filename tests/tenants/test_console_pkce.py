"""The console's sign-in: Authorization Code with PKCE (S256) at a real OpenID Provider.

The console (oidc-client-ts in web/src/auth) sends the person to the provider's authorization
endpoint with an S256 code challenge and exchanges the code with its verifier. Here the same
requests are made over HTTP against oidc-provider (tests/oidc/server.mjs, client
`cove-console` as `cove keycloak realm-json` defines it in Keycloak: public, PKCE S256), the
person signing in on the provider's pages. The code is worthless without the verifier.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit
from uuid import uuid4

import httpx
import pytest

from cove.tenants.identity.claims import principal_for_bu
from cove.tenants.identity.oidc import TokenVerifier
from cove.tenants.principal import Role
from tests.tenants.conftest import OidcProvider
from tests.tenants.oidc_pages import SignInPages

CLIENT_ID = "cove-console"
REDIRECT_URI = "http://127.0.0.1:5173/auth/callback"


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(provider: OidcProvider, **params: str) -> str:
    query = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email",
        "state": secrets.token_urlsafe(16),
        **params,
    }
    return f"{provider.issuer()}/auth?{urlencode({k: v for k, v in query.items() if v})}"


def redirect_params(url: str | None) -> dict[str, str]:
    assert url is not None
    assert url.startswith(REDIRECT_URI)
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
def browser() -> Iterator[SignInPages]:
    with SignInPages(app_url=REDIRECT_URI) as pages:
        yield pages


def code_for(provider: OidcProvider, browser: SignInPages, challenge: str, login: str) -> str:
    """A person signs in (once per browser session) and the console receives a code."""
    state = secrets.token_urlsafe(16)
    page = browser.open(
        authorize_url(provider, state=state, code_challenge=challenge, code_challenge_method="S256")
    )
    if page.redirected_to is None:
        page = browser.sign_in(page, login)
    params = redirect_params(page.redirected_to)
    assert params["state"] == state
    return params["code"]


def exchange(provider: OidcProvider, code: str, verifier: str | None) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID,
    }
    if verifier is not None:
        data["code_verifier"] = verifier
    return httpx.post(f"{provider.issuer()}/token", data=data, timeout=10)


async def test_code_with_its_verifier_gives_a_token_the_platform_accepts(
    oidc_provider: OidcProvider, browser: SignInPages
) -> None:
    verifier = secrets.token_urlsafe(48)
    code = code_for(oidc_provider, browser, s256(verifier), "root")

    response = exchange(oidc_provider, code, verifier)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"].lower() == "bearer"
    assert body["refresh_token"]
    async with TokenVerifier(oidc_provider.issuer(), "cove-gateway", leeway=0) as tokens:
        claims = await tokens.verify(body["access_token"])
    assert claims["preferred_username"] == "root"
    assert claims["azp"] == CLIENT_ID
    assert Role.PLATFORM_ADMIN in principal_for_bu(claims, "payments", uuid4()).roles

    # A code is good once.
    again = exchange(oidc_provider, code, verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("verifier", [None, "wrong-" + "x" * 43], ids=["missing", "wrong"])
def test_a_code_without_its_verifier_is_refused(
    oidc_provider: OidcProvider, browser: SignInPages, verifier: str | None
) -> None:
    right = secrets.token_urlsafe(48)
    code = code_for(oidc_provider, browser, s256(right), "alice")
    refused = exchange(oidc_provider, code, verifier)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert "access_token" not in refused.json()
    # The refusal was the verifier's doing: the same code with the right one still works.
    accepted = exchange(oidc_provider, code, right)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["access_token"]


def test_an_authorization_request_without_s256_is_refused(
    oidc_provider: OidcProvider, browser: SignInPages
) -> None:
    """A public client must send an S256 challenge; `plain` would give the verifier away."""
    verifier = secrets.token_urlsafe(48)
    without = browser.open(authorize_url(oidc_provider))
    plain = browser.open(
        authorize_url(oidc_provider, code_challenge=verifier, code_challenge_method="plain")
    )
    for page in (without, plain):
        params = redirect_params(page.redirected_to)
        assert params["error"] == "invalid_request"
        assert "code" not in params
