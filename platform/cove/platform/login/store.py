"""The signed-in user's tokens on disk: one JSON file readable by its owner only.

`$COVE_CONFIG_DIR/credentials.json`, else `$XDG_CONFIG_HOME/cove/credentials.json`, else
`~/.config/cove/credentials.json`. The file is written whole to a new 0600 file and renamed
over the old one, so a reader never sees half a file and the tokens are never readable by
others, not even for a moment. A file that others can read is refused, as ssh refuses keys.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from cove.platform.login.device import LoginError, Tokens

FILE_NAME = "credentials.json"


class Credentials(BaseModel):
    issuer: str
    client_id: str
    token_endpoint: str
    access_token: str
    refresh_token: str | None = None
    id_token: str | None = None
    expires_at: float | None = None
    scope: str | None = None
    username: str | None = None

    def with_tokens(self, tokens: Tokens) -> Credentials:
        return self.model_copy(
            update={
                "access_token": tokens.access_token,
                "refresh_token": tokens.refresh_token,
                "id_token": tokens.id_token or self.id_token,
                "expires_at": tokens.expires_at,
                "scope": tokens.scope or self.scope,
            }
        )


def config_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    if env.get("COVE_CONFIG_DIR"):
        return Path(env["COVE_CONFIG_DIR"])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cove"


def credentials_path(env: dict[str, str] | None = None) -> Path:
    return config_dir(env) / FILE_NAME


def save(path: Path, credentials: Credentials) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(credentials.model_dump(), option=orjson.OPT_INDENT_2))
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def load(path: Path) -> Credentials:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise LoginError("You are not signed in; run 'cove login'", code="not_signed_in") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise LoginError(
            f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); it holds your "
            f"tokens. Run 'chmod 600 {path}' or 'cove login' again",
            code="credentials_insecure",
        )
    try:
        raw: Any = orjson.loads(path.read_bytes())
        return Credentials.model_validate(raw)
    except (orjson.JSONDecodeError, ValidationError):
        raise LoginError(
            f"{path} is not a Cove credentials file; run 'cove login' again",
            code="credentials_invalid",
        ) from None


def remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
