"""Local verification of OIDC access tokens (Keycloak in production) against cached JWKS.

The hot path makes no network call: signing keys are fetched once (discovery, then JWKS), kept
in memory, and reused. A token signed with a key we do not hold triggers one JWKS download, at
most once per `refetch_interval`, so a flood of made-up `kid`s cannot hammer the identity
provider. When the provider is down the cached keys keep verifying; a failed download never
drops them.

Every rejection is an `Unauthorized` with one of these stable codes:
`token_malformed`, `token_alg_not_allowed`, `token_wrong_issuer`, `token_unknown_key`,
`token_invalid_signature`, `token_expired`, `token_not_yet_valid`, `token_wrong_audience`,
`token_wrong_type`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import aiohttp
import jwt
from jwt.exceptions import (
    DecodeError,
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAlgorithmError,
    InvalidIssuedAtError,
    InvalidIssuerError,
    InvalidKeyError,
    InvalidSignatureError,
    InvalidTokenError,
    MissingRequiredClaimError,
    PyJWKError,
)

from cove.platform.core.errors import Unauthorized

log = logging.getLogger(__name__)

# Only asymmetric algorithms: with HS* the verification key is whatever the JWKS (public)
# holds, and `none` is no signature at all.
ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DEFAULT_ALGORITHMS: Final = ("RS256", "ES256")

# Keycloak marks its access tokens `typ: Bearer`; ID and refresh tokens are signed by the same
# keys and must never be accepted in their place.
_REJECTED_TOKEN_TYPES: Final = frozenset({"ID", "Refresh", "Offline", "Logout"})

# Far above any real access token (Keycloak's with hundreds of groups stay under 16 KiB);
# bounds the work an attacker can make us do before the signature check.
MAX_TOKEN_BYTES: Final = 64 * 1024

_WWW_AUTHENTICATE: Final = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def _reject(code: str, message: str) -> Unauthorized:
    return Unauthorized(message, code=code, headers=dict(_WWW_AUTHENTICATE))


@dataclass(frozen=True, slots=True)
class _KeySet:
    by_kid: Mapping[str, Mapping[str, Any]]
    # Keys published without a `kid`; usable only for a token without one.
    anonymous: tuple[Mapping[str, Any], ...]


class TokenVerifier:
    """Verifies access tokens of one issuer for one audience.

    Create it in the application's lifespan, `await start()` to warm the key cache (a failure
    is logged, not raised: keys are fetched again on the first token), `await close()` at the
    end. `verify(token)` returns the verified claims.

    - `issuer`: exactly the tokens' `iss`, e.g. `https://sso.example/realms/cove`.
    - `audience`: required in `aud` (Keycloak's audience mapper puts `cove-gateway` there).
    - `accept_azp`: also accept a token whose `azp` is `audience`, for realms without an
      audience mapper where the API is addressed by the requesting client's id.
    - `leeway`: seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    - `refetch_interval`: at most one JWKS download per this many seconds for unknown keys.
    - `max_key_age`: cached keys older than this are refreshed in the background (a failure
      keeps them), so keys the provider stopped publishing eventually stop verifying.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway: float = 30.0,
        accept_azp: bool = False,
        refetch_interval: float = 30.0,
        max_key_age: float = 3600.0,
        http_timeout: float = 5.0,
        jwks_uri: str | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        allowed = tuple(dict.fromkeys(algorithms))
        unsafe = [alg for alg in allowed if alg not in ASYMMETRIC_ALGORITHMS]
        if unsafe or not allowed:
            raise ValueError(
                f"allowed algorithms must be asymmetric signature algorithms "
                f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}); refused: {unsafe or 'none given'}"
            )
        if not issuer.startswith(("https://", "http://")):
            raise ValueError(f"issuer must be an http(s) URL, got {issuer!r}")
        self.issuer = issuer
        self.audience = audience
        self.algorithms = frozenset(allowed)
        self.leeway = leeway
        self.accept_azp = accept_azp
        self.refetch_interval = refetch_interval
        self.max_key_age = max_key_age
        self._timeout = aiohttp.ClientTimeout(total=http_timeout)
        self._jwks_uri = jwks_uri
        self._session = session
        self._owns_session = session is None
        self._keys = _KeySet(by_kid={}, anonymous=())
        self._prepared: dict[tuple[str | None, str], jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._next_refetch = 0.0
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[bool] | None = None
        self.jwks_downloads = 0

    async def __aenter__(self) -> TokenVerifier:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> bool:
        """Fetch the signing keys now; False (and a warning) when the provider is unreachable."""
        async with self._lock:
            fetched = await self._refresh()
            if fetched:
                self._next_refetch = time.monotonic() + self.refetch_interval
            return fetched

    async def close(self) -> None:
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._background
            self._background = None
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    @property
    def has_keys(self) -> bool:
        return bool(self._keys.by_kid or self._keys.anonymous)

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims once signature, issuer, audience and times all check out."""
        if len(token) > MAX_TOKEN_BYTES:
            raise _reject("token_malformed", "The access token is too large")
        try:
            unverified = jwt.decode_complete(token, options={"verify_signature": False})
        except InvalidTokenError:
            raise _reject("token_malformed", "The access token is not a signed JWT") from None
        header: dict[str, Any] = unverified["header"]
        payload: dict[str, Any] = unverified["payload"]

        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise _reject(
                "token_alg_not_allowed",
                f"Tokens signed with {alg!r} are not accepted "
                f"(allowed: {', '.join(sorted(self.algorithms))})",
            )
        # Checked before any key lookup, so tokens of a foreign issuer never trigger a JWKS
        # download of ours.
        if payload.get("iss") != self.issuer:
            raise _reject("token_wrong_issuer", "The access token was issued by another issuer")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _reject("token_malformed", "The token's key id is not a string")

        key = await self._key_for(kid, alg)
        claims = self._decode(token, key, alg)
        self._check_audience(claims)
        if claims.get("typ") in _REJECTED_TOKEN_TYPES:
            raise _reject("token_wrong_type", f"A {claims['typ']} token is not an access token")
        self._refresh_in_background_if_stale()
        return claims

    def _decode(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss"], "verify_aud": False},
            )
        except ExpiredSignatureError:
            raise _reject("token_expired", "The access token has expired") from None
        except (ImmatureSignatureError, InvalidIssuedAtError):
            raise _reject("token_not_yet_valid", "The access token is not valid yet") from None
        except InvalidSignatureError:
            raise _reject(
                "token_invalid_signature", "The access token's signature is invalid"
            ) from None
        except InvalidAlgorithmError:
            raise _reject(
                "token_alg_not_allowed", "The token's algorithm does not match its key"
            ) from None
        except InvalidIssuerError:
            raise _reject(
                "token_wrong_issuer", "The access token was issued by another issuer"
            ) from None
        except MissingRequiredClaimError as exc:
            raise _reject("token_malformed", f"The access token lacks '{exc.claim}'") from None
        except (DecodeError, InvalidTokenError):
            raise _reject("token_malformed", "The access token's claims are invalid") from None
        return claims

    def _check_audience(self, claims: Mapping[str, Any]) -> None:
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.audience in audiences:
            return
        # Keycloak names the requesting client only in `azp` unless an audience mapper runs.
        if self.accept_azp and claims.get("azp") == self.audience:
            return
        raise _reject(
            "token_wrong_audience", f"The access token is not meant for '{self.audience}'"
        )

    # ---- keys ------------------------------------------------------------------------------

    def _prepared_key(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        """The verification key for (kid, alg), or None when no such key is cached."""
        cached = self._prepared.get((kid, alg))
        if cached is not None:
            return cached
        if kid is not None:
            jwk = self._keys.by_kid.get(kid)
        elif len(self._keys.anonymous) == 1:
            jwk = self._keys.anonymous[0]
        else:
            jwk = None
        if jwk is None:
            return None
        declared = jwk.get("alg")
        if declared is not None and declared != alg:
            raise _reject("token_invalid_signature", f"Key {kid!r} is not for {alg} signatures")
        try:
            prepared = jwt.PyJWK(dict(jwk), algorithm=alg)
        except (PyJWKError, InvalidKeyError):
            raise _reject(
                "token_invalid_signature", f"Key {kid!r} cannot verify {alg} signatures"
            ) from None
        self._prepared[(kid, alg)] = prepared
        return prepared

    async def _key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        key = self._prepared_key(kid, alg)
        if key is not None:
            return key
        async with self._lock:
            # Another request may have fetched the keys while this one waited.
            key = self._prepared_key(kid, alg)
            if key is None:
                now = time.monotonic()
                if now >= self._next_refetch:
                    self._next_refetch = now + self.refetch_interval
                    await self._refresh()
                    key = self._prepared_key(kid, alg)
        if key is None:
            raise _reject(
                "token_unknown_key", f"The access token was signed with an unknown key {kid!r}"
            )
        return key

    def _refresh_in_background_if_stale(self) -> None:
        if self._fetched_at is None or self._background is not None:
            return
        if time.monotonic() - self._fetched_at < self.max_key_age:
            return
        self._background = asyncio.create_task(self._scheduled_refresh(), name="cove-jwks")

    async def _scheduled_refresh(self) -> bool:
        try:
            async with self._lock:
                return await self._refresh()
        finally:
            self._background = None

    async def _refresh(self) -> bool:
        """Download the JWKS (after discovery, once); on any failure keep the keys we have."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover()
            self.jwks_downloads += 1
            document = await self._get_json(self._jwks_uri)
            keys = _parse_jwks(document)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning(
                "could not refresh the identity provider's signing keys; keeping %d cached",
                len(self._keys.by_kid) + len(self._keys.anonymous),
                extra={"issuer": self.issuer, "error": str(exc)},
            )
            return False
        self._keys = keys
        self._prepared = {}
        self._fetched_at = time.monotonic()
        return True

    async def _discover(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get_json(url)
        if document.get("issuer") != self.issuer:
            # OpenID Connect Discovery 1.0 §4.3: the document must name the issuer we asked.
            raise ValueError(f"discovery document names issuer {document.get('issuer')!r}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise ValueError("discovery document has no usable jwks_uri")
        return jwks_uri

    async def _get_json(self, url: str) -> dict[str, Any]:
        assert self._session is not None
        async with self._session.get(url, timeout=self._timeout) as response:
            response.raise_for_status()
            document = await response.json(content_type=None)
        if not isinstance(document, dict):
            raise ValueError(f"{url} did not answer a JSON object")
        return document


def _parse_jwks(document: Mapping[str, Any]) -> _KeySet:
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise ValueError("JWKS document has no 'keys' list")
    by_kid: dict[str, Mapping[str, Any]] = {}
    anonymous: list[Mapping[str, Any]] = []
    for jwk in keys:
        if not isinstance(jwk, dict):
            continue
        # Keycloak also publishes its encryption key (RSA-OAEP, use=enc); symmetric keys
        # would make HMAC forgeries with public material possible.
        if jwk.get("use", "sig") != "sig" or jwk.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        kid = jwk.get("kid")
        if isinstance(kid, str):
            by_kid[kid] = jwk
        elif kid is None:
            anonymous.append(jwk)
    return _KeySet(by_kid=by_kid, anonymous=tuple(anonymous))
