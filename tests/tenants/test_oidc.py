"""OIDC access-token verification against a real, certified OpenID Provider.

The provider is `oidc-provider` (npm, OpenID Certified) run by tests/oidc/server.mjs with
Keycloak's issuer layout (`/realms/<realm>`) and Keycloak-shaped claims; see docs/identity.md
for what this does and does not prove about Keycloak itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import uuid4

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from cove.platform.core.errors import Forbidden, Unauthorized
from cove.platform.local.procs import free_port
from cove.tenants.identity.claims import memberships_from_claims, principal_for_bu
from cove.tenants.identity.oidc import TokenVerifier
from cove.tenants.principal import Role, Scope
from tests.tenants.conftest import OidcProvider, b64url, b64url_json, reassemble, token_parts

ALICE_SUB = "6f1c4c55-5f0b-4c36-9b7e-0a1d2b3c4d01"
DEV_SCOPES = frozenset({Scope.COMPLETIONS, Scope.EVENTS})
ALL_SCOPES = frozenset(Scope)

MakeVerifier = Callable[..., Awaitable[TokenVerifier]]


@pytest.fixture
async def make_verifier() -> AsyncIterator[MakeVerifier]:
    created: list[TokenVerifier] = []

    async def make(issuer: str, audience: str = "cove-gateway", **options: Any) -> TokenVerifier:
        options.setdefault("leeway", 0)
        verifier = TokenVerifier(issuer, audience, **options)
        created.append(verifier)
        await verifier.start()
        return verifier

    yield make
    for verifier in created:
        await verifier.close()


async def rejected(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        await verifier.verify(token)
    assert caught.value.status == 401
    return caught.value.error_code


# ---- accepted tokens --------------------------------------------------------------------------


async def test_valid_token_gives_the_right_role_in_each_bu(
    oidc_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    verifier = await make_verifier(oidc_provider.issuer())
    claims = await verifier.verify(oidc_provider.token("alice"))

    assert claims["sub"] == ALICE_SUB
    assert memberships_from_claims(claims) == {"payments": Role.DEVELOPER, "risk": Role.BU_ADMIN}

    payments_id, risk_id = uuid4(), uuid4()
    payments = principal_for_bu(claims, "payments", payments_id)
    assert payments.subject == ALICE_SUB
    assert payments.username == "alice"
    assert payments.tenant_id == payments_id
    assert payments.roles == {Role.DEVELOPER}
    assert payments.scopes == DEV_SCOPES
    assert "/cove/payments/developers" in payments.groups

    risk = principal_for_bu(claims, "risk", risk_id)
    assert risk.roles == {Role.BU_ADMIN}
    assert risk.scopes == ALL_SCOPES
    assert risk.can(Scope.ADMIN_WRITE)

    with pytest.raises(Forbidden) as caught:
        principal_for_bu(claims, "platform", uuid4())
    assert caught.value.error_code == "not_a_member"


async def test_platform_admin_acts_in_any_bu(
    oidc_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    verifier = await make_verifier(oidc_provider.issuer())
    claims = await verifier.verify(oidc_provider.token("root"))
    assert memberships_from_claims(claims) == {}
    principal = principal_for_bu(claims, "payments", uuid4())
    assert principal.is_platform_admin
    assert principal.scopes == ALL_SCOPES


async def test_group_paths_without_leading_slash_and_viewer_scopes(
    oidc_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    verifier = await make_verifier(oidc_provider.issuer())
    claims = await verifier.verify(oidc_provider.token("carol"))
    principal = principal_for_bu(claims, "payments", uuid4())
    assert principal.roles == {Role.VIEWER}
    assert principal.scopes == {Scope.ADMIN_READ}
    assert principal.groups == ("/cove/payments/viewers",)


async def test_a_token_without_groups_is_a_member_of_nothing(
    oidc_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    verifier = await make_verifier(oidc_provider.issuer())
    claims = await verifier.verify(oidc_provider.token("nobody"))
    with pytest.raises(Forbidden) as caught:
        principal_for_bu(claims, "payments", uuid4())
    assert caught.value.error_code == "not_a_member"


async def test_es256_tokens_verify(
    oidc_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    verifier = await make_verifier(oidc_provider.issuer())
    token = oidc_provider.token("alice", resource="urn:cove:gateway:es256")
    assert token_parts(token)[0]["alg"] == "ES256"
    assert (await verifier.verify(token))["preferred_username"] == "alice"

    rs256_only = await make_verifier(oidc_provider.issuer(), algorithms=["RS256"])
    assert await rejected(rs256_only, token) == "token_alg_not_allowed"


async def test_verifying_a_cached_key_makes_no_request(
    oidc_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    verifier = await make_verifier(oidc_provider.issuer())
    tokens = [oidc_provider.token(user) for user in ("alice", "root", "carol")]
    before = oidc_provider.jwks_requests()
    for _ in range(20):
        for token in tokens:
            await verifier.verify(token)
    assert oidc_provider.jwks_requests() == before
    assert verifier.jwks_downloads == 1


# ---- rejected tokens --------------------------------------------------------------------------


async def test_expired_token(oidc_provider: OidcProvider, make_verifier: MakeVerifier) -> None:
    verifier = await make_verifier(oidc_provider.issuer())
    token = oidc_provider.token("shortlived")
    await verifier.verify(token)  # valid while its one second lasts
    exp = token_parts(token)[1]["exp"]
    await asyncio.sleep(max(0.0, exp - time.time()) + 0.2)
    assert await rejected(verifier, token) == "token_expired"

    lenient = await make_verifier(oidc_provider.issuer(), leeway=30)
    assert (await lenient.verify(token))["preferred_username"] == "shortlived"


async def test_token_from_another_issuer(
    oidc_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    verifier = await make_verifier(oidc_provider.issuer("cove"))
    foreign = oidc_provider.token("alice", realm="other")
    before = oidc_provider.jwks_requests("cove")
    assert await rejected(verifier, foreign) == "token_wrong_issuer"
    # Rejected before any key lookup: a foreign issuer cannot make us download our JWKS.
    assert oidc_provider.jwks_requests("cove") == before


async def test_wrong_audience_and_the_azp_fallback(
    oidc_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    # What Keycloak issues without an audience mapper: aud=account, azp=<requesting client>.
    token = oidc_provider.token("alice", resource="urn:cove:account")
    _, payload, _ = token_parts(token)
    assert payload["aud"] == "account"
    assert payload["azp"] == "cove-cli"

    gateway = await make_verifier(oidc_provider.issuer(), "cove-gateway", accept_azp=True)
    assert await rejected(gateway, token) == "token_wrong_audience"

    strict = await make_verifier(oidc_provider.issuer(), "cove-cli", accept_azp=False)
    assert await rejected(strict, token) == "token_wrong_audience"

    by_azp = await make_verifier(oidc_provider.issuer(), "cove-cli", accept_azp=True)
    assert (await by_azp.verify(token))["sub"] == ALICE_SUB


async def test_alg_none_is_refused(
    oidc_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    verifier = await make_verifier(oidc_provider.issuer())
    _, payload, _ = token_parts(oidc_provider.token("alice"))
    for alg in ("none", "None", "NONE"):
        forged = f"{b64url_json({'alg': alg, 'typ': 'JWT'})}.{b64url_json(payload)}."
        assert await rejected(verifier, forged) == "token_alg_not_allowed"


async def test_hs256_signed_with_the_public_key_is_refused(
    oidc_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    verifier = await make_verifier(oidc_provider.issuer())
    header, payload, _ = token_parts(oidc_provider.token("alice"))
    rsa_jwk = next(k for k in oidc_provider.jwks()["keys"] if k["kid"] == header["kid"])
    public_pem = jwt.PyJWK(rsa_jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The classic key-confusion forgery: HMAC keyed with the (public) RSA key's PEM bytes.
    signing_input = f"{b64url_json({**header, 'alg': 'HS256'})}.{b64url_json(payload)}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    assert await rejected(verifier, f"{signing_input}.{b64url(mac)}") == "token_alg_not_allowed"


def test_symmetric_or_none_algorithms_cannot_be_configured() -> None:
    for algorithms in (["HS256"], ["RS256", "none"], ["RS256", "HS512"], []):
        with pytest.raises(ValueError, match="asymmetric"):
            TokenVerifier("https://idp.example/realms/cove", "cove-gateway", algorithms=algorithms)


async def test_tampered_payload_or_signature(
    oidc_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    verifier = await make_verifier(oidc_provider.issuer())
    token = oidc_provider.token("alice")

    def promote(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "groups": [*payload["groups"], "/cove/payments/admins"]}

    assert await rejected(verifier, reassemble(token, payload=promote)) == (
        "token_invalid_signature"
    )
    head, body, signature = token.split(".")
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    assert await rejected(verifier, f"{head}.{body}.{flipped}") == "token_invalid_signature"


async def test_malformed_tokens(oidc_provider: OidcProvider, make_verifier: MakeVerifier) -> None:
    verifier = await make_verifier(oidc_provider.issuer())
    _, payload, _ = token_parts(oidc_provider.token("alice"))
    for garbage in (
        "",
        "not-a-jwt",
        "a.b.c",
        "a.b.c.d.e",
        f"{b64url(b'[1, 2]')}.{b64url_json(payload)}.sig",
        "x" * 70_000,
    ):
        assert await rejected(verifier, garbage) == "token_malformed", garbage

    without_exp = reassemble(
        oidc_provider.token("alice"), payload=lambda p: {k: v for k, v in p.items() if k != "exp"}
    )
    # The claims are read only after the signature holds, so a stripped `exp` is a forgery.
    assert await rejected(verifier, without_exp) == "token_invalid_signature"


async def test_an_id_token_is_not_an_access_token(
    oidc_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    verifier = await make_verifier(oidc_provider.issuer())
    assert await rejected(verifier, oidc_provider.token("idtoken")) == "token_wrong_type"


# ---- keys: rotation, flood of unknown kids, provider down -----------------------------------


async def test_key_rotation_and_rate_limited_refetch(
    fresh_oidc_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    idp = fresh_oidc_provider
    interval = 2.0
    verifier = await make_verifier(idp.issuer(), refetch_interval=interval)
    assert idp.jwks_requests() == 1
    old_token = idp.token("alice")
    await verifier.verify(old_token)

    new_kid = idp.rotate()
    new_token = idp.token("alice")
    assert token_parts(new_token)[0]["kid"] == new_kid
    await asyncio.sleep(interval)  # the warm-up fetch's interval is over
    assert (await verifier.verify(new_token))["sub"] == ALICE_SUB
    assert idp.jwks_requests() == 2  # exactly one refetch for the new kid
    await verifier.verify(old_token)  # the old key is still published, so still valid
    await verifier.verify(new_token)
    assert idp.jwks_requests() == 2

    def bogus(token: str) -> str:
        return reassemble(token, header=lambda h: {**h, "kid": secrets.token_hex(8)})

    # Flood right after a refetch: none of it reaches the provider.
    codes = await asyncio.gather(*(rejected(verifier, bogus(new_token)) for _ in range(100)))
    assert set(codes) == {"token_unknown_key"}
    assert idp.jwks_requests() == 2

    # After the interval a flood causes one refetch, however many kids it brings.
    await asyncio.sleep(interval)
    started = time.monotonic()
    codes = await asyncio.gather(*(rejected(verifier, bogus(new_token)) for _ in range(200)))
    for _ in range(200):
        codes.append(await rejected(verifier, bogus(new_token)))
    assert time.monotonic() - started < interval, "flood too slow to prove the rate limit"
    assert set(codes) == {"token_unknown_key"}
    assert idp.jwks_requests() == 3
    await verifier.verify(new_token)

    # Retiring the old key: once the next new kid has been fetched, old tokens stop verifying.
    await asyncio.sleep(interval)
    idp.rotate(retire=True)
    newest = idp.token("alice")
    await verifier.verify(newest)
    assert idp.jwks_requests() == 4
    assert await rejected(verifier, old_token) == "token_unknown_key"
    assert await rejected(verifier, new_token) == "token_unknown_key"
    assert idp.jwks_requests() == 4


async def test_cached_keys_keep_verifying_when_the_provider_is_down(
    fresh_oidc_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    idp = fresh_oidc_provider
    verifier = await make_verifier(idp.issuer(), refetch_interval=0.1, http_timeout=2)
    tokens = {user: idp.token(user) for user in ("alice", "root")}
    es256 = idp.token("alice", resource="urn:cove:gateway:es256")
    await verifier.verify(tokens["alice"])
    idp.stop()

    for token in [*tokens.values(), es256]:
        claims = await verifier.verify(token)
        assert claims["iss"] == idp.issuer()
    # An unknown kid tries the (dead) provider, fails cleanly, and loses no cached key.
    await asyncio.sleep(0.15)
    unknown = reassemble(tokens["alice"], header=lambda h: {**h, "kid": "gone"})
    assert await rejected(verifier, unknown) == "token_unknown_key"
    assert verifier.has_keys
    assert (await verifier.verify(tokens["root"]))["preferred_username"] == "root"


async def test_a_verifier_started_while_the_provider_is_down_refuses_cleanly(
    make_verifier: MakeVerifier,
) -> None:
    verifier = await make_verifier(f"http://127.0.0.1:{free_port()}/realms/cove", http_timeout=1)
    assert not verifier.has_keys
    header = b64url_json({"alg": "RS256", "kid": "k1"})
    body = b64url_json({"iss": verifier.issuer, "exp": int(time.time()) + 60})
    assert await rejected(verifier, f"{header}.{body}.c2ln") == "token_unknown_key"


async def test_stale_keys_are_refreshed_in_the_background(
    oidc_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    verifier = await make_verifier(oidc_provider.issuer(), max_key_age=0.2)
    token = oidc_provider.token("alice")
    await verifier.verify(token)
    await asyncio.sleep(0.3)
    before = oidc_provider.jwks_requests()
    await verifier.verify(token)  # answered from the cache; the refresh runs behind it
    for _ in range(50):
        if oidc_provider.jwks_requests() > before:
            break
        await asyncio.sleep(0.05)
    assert oidc_provider.jwks_requests() == before + 1
    assert verifier.jwks_downloads == 2


# ---- claims mapping (no provider needed) --------------------------------------------------


def test_memberships_take_the_highest_role_per_bu() -> None:
    claims = {
        "sub": "u1",
        "groups": [
            "/cove/payments/viewers",
            "/cove/payments/admins",
            "/cove/payments/developers",
            "/cove/risk/viewers",
            "/cove/risk/developers",
            "/cove/search/viewers",
        ],
    }
    assert memberships_from_claims(claims) == {
        "payments": Role.BU_ADMIN,
        "risk": Role.DEVELOPER,
        "search": Role.VIEWER,
    }


def test_nested_groups_inherit_the_role_group_above_them() -> None:
    # Canary cohorts live below a role group (Keycloak members inherit from parent groups).
    claims = {"sub": "u1", "groups": ["/cove/payments/developers/canary", "/cove/risk"]}
    assert memberships_from_claims(claims) == {"payments": Role.DEVELOPER}


def test_groups_that_are_not_cove_roles_are_ignored() -> None:
    claims = {
        "sub": "u1",
        "groups": [
            "/staff",
            "/cove",
            "/cove/payments",
            "/cove/payments/owners",
            "/other/payments/admins",
            "/cove/Not_A_Slug/admins",
            "//",
            42,
            None,
        ],
    }
    assert memberships_from_claims(claims) == {}


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "u1"},
        {"sub": "u1", "groups": None},
        {"sub": "u1", "groups": {"payments": "admins"}},
        {"sub": "u1", "groups": []},
    ],
)
def test_missing_or_odd_groups_claims_give_no_membership(claims: dict[str, Any]) -> None:
    assert memberships_from_claims(claims) == {}
    with pytest.raises(Forbidden):
        principal_for_bu(claims, "payments", uuid4())


def test_a_single_group_string_and_realm_roles() -> None:
    claims = {
        "sub": "u1",
        "email": "u1@example.test",
        "groups": "cove/payments/admins",
        "realm_access": {"roles": ["platform-admin", "offline_access"]},
    }
    principal = principal_for_bu(claims, "payments", uuid4())
    assert principal.roles == {Role.BU_ADMIN, Role.PLATFORM_ADMIN}
    assert principal.scopes == ALL_SCOPES
    assert principal.username == "u1@example.test"
    assert principal.groups == ("/cove/payments/admins",)


def test_realm_roles_other_than_platform_admin_grant_nothing() -> None:
    claims = {"sub": "u1", "realm_access": {"roles": ["admin", "bu-admin", "developer"]}}
    with pytest.raises(Forbidden):
        principal_for_bu(claims, "payments", uuid4())


def test_claims_without_a_subject_are_refused() -> None:
    claims = {"groups": ["/cove/payments/developers"], "preferred_username": "x"}
    with pytest.raises(Unauthorized) as caught:
        principal_for_bu(claims, "payments", uuid4())
    assert caught.value.error_code == "token_malformed"
