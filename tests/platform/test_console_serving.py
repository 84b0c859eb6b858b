"""The platform API serves the built console beside the API, without swallowing API errors."""

from __future__ import annotations

from pathlib import Path

import httpx

from cove.platform.api.app import PlatformSettings, create_app
from cove.platform.core.settings import CoveSettings


async def test_console_files_spa_fallback_and_json_api_errors(
    settings: CoveSettings, tmp_path: Path
) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>Cove console</title>")
    (dist / "assets" / "app-1234.js").write_text("console.log('cove')")
    (dist / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside dist")
    app = create_app(PlatformSettings(**{**settings.model_dump(), "console_dir": dist}))
    html = {"accept": "text/html"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
            assert "Cove console" in (await client.get("/", headers=html)).text
            route = await client.get("/policies?bu=x", headers=html)
            assert route.status_code == 200
            assert "Cove console" in route.text
            assert (await client.get("/assets/app-1234.js")).text == "console.log('cove')"
            assert (await client.get("/favicon.svg")).status_code == 200
            api = await client.get("/api/v1/nope", headers=html)
            assert api.status_code == 404
            assert api.json()["error"]["code"] == "route_not_found"
            escape = await client.get("/..%2fsecret.txt")
            assert escape.status_code == 404
            assert "outside dist" not in escape.text
            config = (await client.get("/api/v1/console-config")).json()
    assert config == {"oidc": None, "dev_login": True}
