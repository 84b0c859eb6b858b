"""The shape of a Cove API key, and how it is hashed and verified.

A key reads `cove_<key id>_<secret>`. The key id is public (it names the key in the console
and in logs); the secret is 32 random bytes, shown once and stored only as
HMAC-SHA256(pepper, salt || secret) with a random per-key salt. Keys are high-entropy, so a
keyed fast hash is the right tool: verification costs microseconds on the gateway's hot path.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "cove_"
KEY_ID_BYTES = 9
SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key_id: str
    plaintext: str
    salt: bytes
    digest: bytes


def _digest(pepper: bytes, salt: bytes, secret: str) -> bytes:
    return hmac.new(pepper, salt + secret.encode(), hashlib.sha256).digest()


def issue_key(pepper: bytes) -> IssuedKey:
    key_id = secrets.token_hex(KEY_ID_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    salt = secrets.token_bytes(16)
    return IssuedKey(
        key_id=key_id,
        plaintext=f"{PREFIX}{key_id}_{secret}",
        salt=salt,
        digest=_digest(pepper, salt, secret),
    )


def split_key(plaintext: str) -> tuple[str, str] | None:
    """Return (key id, secret) for a well-formed key, else None."""
    if not plaintext.startswith(PREFIX):
        return None
    key_id, sep, secret = plaintext[len(PREFIX) :].partition("_")
    if not sep or len(key_id) != KEY_ID_BYTES * 2 or not secret or len(secret) > 128:
        return None
    return key_id, secret


def verify_secret(pepper: bytes, salt: bytes, digest: bytes, secret: str) -> bool:
    return hmac.compare_digest(_digest(pepper, salt, secret), digest)
