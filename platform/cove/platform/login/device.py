"""The OAuth 2.0 device authorization grant (RFC 8628) and refresh tokens, as a public client.

`DeviceFlow.start()` asks the provider for a device code and the code a person enters in a
browser; `DeviceFlow.wait()` polls the token endpoint at the interval the provider asked for,
backing off on `slow_down`, until the person approved (tokens), denied (`access_denied`) or
the code expired (`expired_token`, or our own clock past `expires_in`). `refresh()` trades a
refresh token for new tokens. Every failure is a `LoginError` with a stable `code` and a
sentence a person can act on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

DEVICE_CODE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL: Final = 5  # RFC 8628 §3.2: when the provider names none
SLOW_DOWN_STEP: Final = 5  # RFC 8628 §3.5: add 5 s to the interval on every slow_down


class LoginError(Exception):
    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class Endpoints:
    issuer: str
    device_authorization: str
    token: str

    @classmethod
    def discover(cls, http: httpx.Client, issuer: str) -> Endpoints:
        """The provider's endpoints from its discovery document (OpenID Connect Discovery)."""
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        response = _send(http, "GET", url, issuer=issuer)
        if response.status_code != 200:
            raise LoginError(
                f"No OpenID discovery document at {url} (HTTP {response.status_code}); check "
                "--issuer (Keycloak's is https://<host>/realms/<realm>)",
                code="discovery_failed",
            )
        document = _json(response, url)
        if document.get("issuer") != issuer:
            raise LoginError(
                f"{url} names the issuer {document.get('issuer')!r}, not {issuer!r}; "
                "check --issuer (Keycloak's is https://<host>/realms/<realm>)",
                code="issuer_mismatch",
            )
        device = document.get("device_authorization_endpoint")
        token = document.get("token_endpoint")
        if not isinstance(device, str) or not device:
            raise LoginError(
                f"The identity provider at {issuer} does not offer the device authorization "
                "grant (no device_authorization_endpoint); in Keycloak enable "
                "'OAuth 2.0 Device Authorization Grant' on the cove-cli client",
                code="device_flow_unsupported",
            )
        if not isinstance(token, str) or not token:
            raise LoginError(f"{url} names no token_endpoint", code="discovery_invalid")
        return cls(issuer=issuer, device_authorization=device, token=token)


@dataclass(frozen=True, slots=True)
class DeviceCode:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    interval: int
    # time.monotonic() when the provider answered; the code expires expires_in after it.
    issued_at: float


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str | None
    id_token: str | None
    # Seconds since the epoch; None when the provider did not say (`expires_in` is optional).
    expires_at: float | None
    scope: str | None

    @classmethod
    def from_response(cls, body: Mapping[str, Any], *, now: float) -> Tokens:
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise LoginError(
                "The identity provider answered without an access token", code="token_invalid"
            )
        if str(body.get("token_type", "")).lower() != "bearer":
            raise LoginError(
                f"The identity provider issued a {body.get('token_type')!r} token, not Bearer",
                code="token_invalid",
            )
        expires_in = body.get("expires_in")
        refresh = body.get("refresh_token")
        id_token = body.get("id_token")
        scope = body.get("scope")
        return cls(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            id_token=id_token if isinstance(id_token, str) and id_token else None,
            expires_at=now + expires_in if isinstance(expires_in, int | float) else None,
            scope=scope if isinstance(scope, str) else None,
        )


class DeviceFlow:
    """One public client (`client_id`, e.g. `cove-cli`) at one provider."""

    def __init__(
        self,
        http: httpx.Client,
        endpoints: Endpoints,
        client_id: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.endpoints = endpoints
        self.client_id = client_id
        self._sleep = sleep
        self._clock = clock

    def start(self, scope: str) -> DeviceCode:
        response = _send(
            self.http,
            "POST",
            self.endpoints.device_authorization,
            issuer=self.endpoints.issuer,
            data={"client_id": self.client_id, "scope": scope},
        )
        body = _json(response, self.endpoints.device_authorization)
        if response.status_code != 200:
            raise _oauth_error(body, self.client_id, during="the device authorization request")
        try:
            return DeviceCode(
                device_code=str(body["device_code"]),
                user_code=str(body["user_code"]),
                verification_uri=str(body["verification_uri"]),
                verification_uri_complete=(
                    str(body["verification_uri_complete"])
                    if body.get("verification_uri_complete")
                    else None
                ),
                expires_in=int(body["expires_in"]),
                interval=max(1, int(body.get("interval") or DEFAULT_INTERVAL)),
                issued_at=self._clock(),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LoginError(
                f"The device authorization response lacks or garbles {exc}",
                code="device_authorization_invalid",
            ) from None

    def wait(self, code: DeviceCode, *, on_poll: Callable[[str], None] | None = None) -> Tokens:
        """Poll until the person approved or denied, or the code expired."""
        interval = code.interval
        # The provider says when the code expired (`expired_token`); our own clock is the
        # backstop for one that never does.
        deadline = code.issued_at + code.expires_in + 2 * code.interval
        while True:
            if self._clock() + interval > deadline:
                raise _expired()
            self._sleep(interval)
            response = _send(
                self.http,
                "POST",
                self.endpoints.token,
                issuer=self.endpoints.issuer,
                data={
                    "grant_type": DEVICE_CODE_GRANT,
                    "device_code": code.device_code,
                    "client_id": self.client_id,
                },
            )
            body = _json(response, self.endpoints.token)
            if response.status_code == 200:
                return Tokens.from_response(body, now=time.time())
            error = body.get("error")
            if on_poll is not None and isinstance(error, str):
                on_poll(error)
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += SLOW_DOWN_STEP
                continue
            if error == "expired_token":
                raise _expired()
            if error == "access_denied":
                raise LoginError(
                    "Sign-in was denied in the browser; nothing was saved. Run 'cove login' "
                    "again to retry",
                    code="access_denied",
                )
            raise _oauth_error(body, self.client_id, during="polling the token endpoint")

    def refresh(self, refresh_token: str) -> Tokens:
        response = _send(
            self.http,
            "POST",
            self.endpoints.token,
            issuer=self.endpoints.issuer,
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": self.client_id,
            },
        )
        body = _json(response, self.endpoints.token)
        if response.status_code == 200:
            tokens = Tokens.from_response(body, now=time.time())
            if tokens.refresh_token is None:
                # RFC 6749 §6: without a new refresh token the old one stays valid.
                tokens = Tokens(
                    tokens.access_token,
                    refresh_token,
                    tokens.id_token,
                    tokens.expires_at,
                    tokens.scope,
                )
            return tokens
        if body.get("error") == "invalid_grant":
            raise LoginError(
                "Your session with the identity provider has ended (the refresh token was "
                "refused); run 'cove login' again",
                code="session_expired",
            )
        raise _oauth_error(body, self.client_id, during="refreshing the access token")


def _expired() -> LoginError:
    return LoginError(
        "The sign-in code expired before it was approved; nothing was saved. Run 'cove login' "
        "again and enter the new code within the time shown",
        code="expired_token",
    )


def _oauth_error(body: Mapping[str, Any], client_id: str, *, during: str) -> LoginError:
    error = body.get("error")
    description = body.get("error_description")
    detail = f": {description}" if isinstance(description, str) and description else ""
    if error in ("invalid_client", "unauthorized_client", "unsupported_grant_type"):
        return LoginError(
            f"The identity provider refused client '{client_id}' ({error}){detail}. The realm "
            "needs the public client cove-cli with the device authorization grant "
            "('cove keycloak realm-json' sets it up)",
            code=str(error),
        )
    if isinstance(error, str) and error:
        return LoginError(f"The identity provider refused {during} ({error}){detail}", code=error)
    return LoginError(
        f"The identity provider answered {during} without an OAuth error", code="provider_error"
    )


def _send(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    issuer: str,
    data: Mapping[str, str] | None = None,
) -> httpx.Response:
    try:
        return http.request(method, url, data=data, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise LoginError(
            f"Cannot reach the identity provider at {issuer} ({type(exc).__name__}: {exc})",
            code="provider_unreachable",
        ) from None


def _json(response: httpx.Response, url: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise LoginError(
            f"{url} answered HTTP {response.status_code} without a JSON object; is the issuer "
            "URL right?",
            code="provider_error",
        )
    return body
