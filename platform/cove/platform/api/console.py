"""Serving the built admin console (web/dist) beside the API, and how it signs in."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

API_PREFIXES = ("/api/", "/docs", "/redoc", "/openapi.json", "/healthz", "/readyz", "/metrics")


class ConsoleOidc(BaseModel):
    issuer: str
    client_id: str
    scope: str


class ConsoleConfig(BaseModel):
    oidc: ConsoleOidc | None
    dev_login: bool


async def _as_response(result: Response | Awaitable[Response]) -> Response:
    return await result if inspect.isawaitable(result) else result


def install_console(app: FastAPI, console: Path) -> bool:
    """Serve hashed assets, files at the root of dist/, and index.html for every other browser
    navigation (client-side routes), while API 404s stay JSON. False without a build."""
    root = console.resolve()
    index = root / "index.html"
    if not index.is_file():
        return False
    if (root / "assets").is_dir():
        app.mount("/assets", StaticFiles(directory=root / "assets"), name="console-assets")
    api_not_found = app.exception_handlers[StarletteHTTPException]

    async def console_or_404(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        path = request.url.path
        if (
            exc.status_code != 404
            or request.method not in {"GET", "HEAD"}
            or path.startswith(API_PREFIXES)
        ):
            return await _as_response(api_not_found(request, exc))
        candidate = (root / path.lstrip("/")).resolve()
        if candidate.is_file() and candidate.is_relative_to(root):
            return FileResponse(candidate)
        if "text/html" in request.headers.get("accept", ""):
            return FileResponse(index, headers={"Cache-Control": "no-cache"})
        return await _as_response(api_not_found(request, exc))

    app.add_exception_handler(StarletteHTTPException, console_or_404)
    return True
