"""The local stack's dev login (a demo user, its keys on disk, pasting a key into the console)
is for a laptop: with COVE_ENV=production every way to it is shut, and says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from cove.platform.api.app import PlatformSettings, create_app
from cove.platform.core.db import Database
from cove.platform.core.settings import CoveSettings, Environment, InsecureSettingsError
from cove.platform.local.seed import seed_demo

STRONG_SECRET = "a-production-secret-that-is-long-enough-0123456789"


def production(settings: CoveSettings, **extra: Any) -> dict[str, Any]:
    return {
        **settings.model_dump(),
        "env": Environment.PRODUCTION,
        "secret_key": STRONG_SECRET,
        **extra,
    }


async def console_config(settings: PlatformSettings) -> dict[str, Any]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
            resp = await client.get("/api/v1/console-config")
    assert resp.status_code == 200
    body: dict[str, Any] = resp.json()
    return body


async def test_the_console_offers_the_dev_login_in_development_only(
    settings: CoveSettings,
) -> None:
    oidc = {
        "oidc_issuer": "http://127.0.0.1:9/realms/cove",
        "console_oidc_client_id": "cove-console",
    }
    dev = await console_config(PlatformSettings(**{**settings.model_dump(), **oidc}))
    assert dev["dev_login"] is True
    prod = await console_config(PlatformSettings(**production(settings, **oidc)))
    assert prod["dev_login"] is False
    assert prod["oidc"]["client_id"] == "cove-console"


def test_turning_the_dev_login_on_in_production_is_refused(settings: CoveSettings) -> None:
    # pydantic wraps the InsecureSettingsError (a ValueError) in its ValidationError.
    with pytest.raises(ValueError, match="COVE_CONSOLE_DEV_LOGIN cannot be turned on"):
        PlatformSettings(**production(settings, console_dev_login=True))
    # Off, or left to the default, is fine.
    assert PlatformSettings(**production(settings, console_dev_login=False)).is_production


async def test_the_demo_user_is_never_seeded_in_production(
    settings: CoveSettings, db: Database, tmp_path: Path
) -> None:
    with pytest.raises(InsecureSettingsError, match=r"disabled when COVE_ENV=production"):
        await seed_demo(
            CoveSettings(**production(settings)),
            state_dir=tmp_path,
            model_name="cove-tiny",
            model_location=str(tmp_path / "model"),
            fim_tokens=None,
            context_length=None,
            **_endpoint_if_needed(),
        )
    async with db.platform() as conn:
        users = await (await conn.execute("SELECT username FROM users")).fetchall()
        bus = await (await conn.execute("SELECT slug FROM tenants")).fetchall()
    assert users == []
    assert bus == []
    assert list(tmp_path.iterdir()) == []  # no key files written


def _endpoint_if_needed() -> dict[str, str]:
    # Older seeds registered an external vLLM endpoint; newer ones let the runtime run it.
    import inspect

    params = inspect.signature(seed_demo).parameters
    return {"endpoint_url": "http://127.0.0.1:9"} if "endpoint_url" in params else {}


def test_cove_up_refuses_to_start_in_production(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = subprocess.run(
        [sys.executable, "-m", "cove.platform.cli", "up"],
        env={**os.environ, "COVE_ENV": "production", "COVE_HOME": str(home), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "refuses to run with COVE_ENV=production" in result.stderr
    assert not home.exists()
