"""The `Authorization: Bearer <token>` header, parsed once for the gateway and the platform API."""

from __future__ import annotations

from cove.platform.core.errors import Unauthorized


def bearer_token(authorization: str | None, *, code: str, message: str) -> str:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).

    Anything else (no header, another scheme, an empty token) is `Unauthorized` with the
    caller's `code` and `message`: the gateway and the platform API name the problem in their
    own words (`missing_api_key` vs `missing_credentials`).
    """
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(message, code=code)
    return token
