"""`cove login`, `cove token`, `cove logout`: sign in to Cove's identity provider from a terminal.

`cove login` runs the device authorization grant: it prints a URL and a code, the person
approves in any browser (on any machine), and the tokens land in the credentials file (0600).
`cove token` prints a valid access token for scripts and IDE plugins, refreshing it with the
refresh token when it is about to expire. Messages go to stderr; stdout carries only the token.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
import jwt
import typer

from cove.platform.login import store
from cove.platform.login.device import DeviceFlow, Endpoints, LoginError, Tokens
from cove.tenants.identity.claims import is_platform_admin, memberships_from_claims

# Refresh an access token that has less than this many seconds left.
REFRESH_MARGIN_SECONDS = 30
HTTP_TIMEOUT_SECONDS = 10.0
DEFAULT_SCOPE = "openid profile email"

Issuer = Annotated[
    str,
    typer.Option(
        envvar="COVE_OIDC_ISSUER",
        help="The realm's issuer URL, e.g. https://sso.example.com/realms/cove",
    ),
]
ClientId = Annotated[
    str, typer.Option(envvar="COVE_OIDC_CLI_CLIENT_ID", help="The public device-flow client")
]


def _fail(error: LoginError) -> typer.Exit:
    typer.secho(f"error: {error.message} ({error.code})", err=True, fg=typer.colors.RED)
    return typer.Exit(1)


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _check_issuer(issuer: str) -> str:
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise LoginError(f"{issuer!r} is not an http(s) URL", code="issuer_invalid")
    if parts.scheme == "http":
        try:
            loopback = ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = parts.hostname == "localhost"
        if not loopback:
            raise LoginError(
                f"Refusing to send sign-in traffic to {issuer} over plain HTTP; use https "
                "(plain HTTP is accepted only for a provider on this machine)",
                code="issuer_insecure",
            )
    return issuer.rstrip("/")


def _claims(token: str) -> dict[str, Any]:
    """The access token's claims, unverified: only for telling the person who they are."""
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return {}
    return claims


def _who(claims: dict[str, Any]) -> str:
    name = claims.get("preferred_username") or claims.get("email") or claims.get("sub") or "?"
    memberships = memberships_from_claims(claims)
    roles = [f"{bu} ({role})" for bu, role in sorted(memberships.items())]
    if is_platform_admin(claims):
        roles.insert(0, "platform admin")
    return f"{name}" + (f"; {', '.join(roles)}" if roles else "; no business unit yet")


def login(
    issuer: Issuer,
    client_id: ClientId = "cove-cli",
    scope: Annotated[str, typer.Option(help="Scopes to request")] = DEFAULT_SCOPE,
) -> None:
    """Sign in with the device flow: open the URL shown, enter the code, approve."""
    path = store.credentials_path()
    try:
        issuer = _check_issuer(issuer)
        with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS) as http:
            endpoints = Endpoints.discover(http, issuer)
            flow = DeviceFlow(http, endpoints, client_id)
            code = flow.start(scope)
            minutes = max(1, round(code.expires_in / 60))
            _say(f"To sign in, open {code.verification_uri} in a browser")
            _say(f"and enter the code: {code.user_code}")
            if code.verification_uri_complete:
                _say(f"(or open {code.verification_uri_complete})")
            _say(f"Waiting for you to approve; the code expires in {minutes} min…")
            tokens = flow.wait(code)
        claims = _claims(tokens.access_token)
        credentials = store.Credentials(
            issuer=issuer,
            client_id=client_id,
            token_endpoint=endpoints.token,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            id_token=tokens.id_token,
            expires_at=tokens.expires_at,
            scope=tokens.scope,
            username=claims.get("preferred_username"),
        )
        store.save(path, credentials)
    except LoginError as exc:
        raise _fail(exc) from None
    _say(f"Signed in as {_who(claims)}.")
    _say(f"Saved to {path} (readable by you only).")
    if tokens.refresh_token is None:
        _say("The provider issued no refresh token: run 'cove login' again when it expires.")


def _refreshed(credentials: store.Credentials) -> store.Credentials:
    if credentials.refresh_token is None:
        raise LoginError(
            "Your access token has expired and there is no refresh token; run 'cove login'",
            code="session_expired",
        )
    endpoints = Endpoints(
        issuer=credentials.issuer,
        device_authorization="",
        token=credentials.token_endpoint,
    )
    with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS) as http:
        tokens: Tokens = DeviceFlow(http, endpoints, credentials.client_id).refresh(
            credentials.refresh_token
        )
    return credentials.with_tokens(tokens)


def token(
    refresh: Annotated[bool, typer.Option(help="Refresh even if the token is still valid")] = False,
) -> None:
    """Print a valid access token (refreshing it when it is about to expire)."""
    path = store.credentials_path()
    try:
        credentials = store.load(path)
        expires_at = credentials.expires_at
        stale = expires_at is not None and expires_at - time.time() < REFRESH_MARGIN_SECONDS
        if refresh or stale:
            credentials = _refreshed(credentials)
            store.save(path, credentials)
    except LoginError as exc:
        raise _fail(exc) from None
    typer.echo(credentials.access_token)


def logout() -> None:
    """Forget the saved tokens (the provider's session stays until it expires)."""
    path = store.credentials_path()
    if store.remove(path):
        _say(f"Removed {path}.")
    else:
        _say("You were not signed in.")


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("token")(token)
    app.command("logout")(logout)
