"""HTTP plumbing shared by Cove's FastAPI services: request ids and error rendering."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from opentelemetry import propagate, trace
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cove.platform.core.errors import CoveError
from cove.platform.core.logging import request_id_var
from cove.platform.core.telemetry import Telemetry

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"


class RequestIdMiddleware:
    """Takes the caller's `X-Request-ID` (if sane) or makes one; echoes it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = (
            incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else (uuid.uuid4().hex)
        )
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for error in exc.errors():
        details.append(
            {
                "loc": [str(part) for part in error.get("loc", ())],
                "msg": error.get("msg", ""),
                "type": error.get("type", ""),
            }
        )
    return details


def install_error_handlers(
    app: FastAPI, render: Callable[[CoveError], dict[str, Any]] | None = None
) -> None:
    """Render every error as JSON with a stable code. `render` picks the envelope."""
    to_body = render or (lambda err: err.to_json())

    def respond(err: CoveError) -> Response:
        return JSONResponse(to_body(err), status_code=err.status, headers=err.headers or None)

    @app.exception_handler(CoveError)
    async def _cove(_: Request, exc: CoveError) -> Response:
        return respond(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        details = _validation_details(exc)
        if any(d["type"] == "json_invalid" for d in details):
            err: CoveError = _error(400, "malformed_json", "The request body is not valid JSON")
        else:
            first = details[0] if details else {"loc": [], "msg": "invalid"}
            where = ".".join(p for p in first["loc"] if p != "body") or "request"
            err = _error(422, "validation_failed", f"{where}: {first['msg']}")
            err.details = {"errors": details}
            err.param = where
        return respond(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "route_not_found", 405: "method_not_allowed"}
        err = _error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))
        return respond(err)

    @app.exception_handler(psycopg.DataError)
    async def _data(_: Request, exc: psycopg.DataError) -> Response:
        # Postgres refused a value the API let through (a NUL byte, an out-of-range number):
        # the caller's input, so a 400, and nothing was written (the transaction rolled back).
        log.info("value refused by the database: %s", str(exc).splitlines()[0])
        return respond(_error(400, "invalid_value", "A value in the request cannot be stored"))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return respond(_error(500, "internal_error", "Internal error; see the server log"))


def _error(status: int, code: str, message: str) -> CoveError:
    err = CoveError(message, code=code)
    # Instances carry their own status where no subclass fits (Starlette's 404/405).
    err.status = status  # type: ignore[misc]
    if status < 500:
        err.kind = "invalid_request_error"  # type: ignore[misc]
    return err


class TelemetryMiddleware:
    """One server span per HTTP request and a request-duration histogram (recorded only when a
    metric reader collects it).

    Incoming W3C `traceparent` headers are honoured, so a caller's trace continues here.
    """

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.tracer = telemetry.tracer("cove.http")
        self.duration = (
            telemetry.meter("cove.http").create_histogram(
                "http.server.request.duration", unit="s", description="HTTP request duration"
            )
            if telemetry.exports_metrics
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        context = propagate.extract(carrier)
        route = scope.get("path", "")
        method = scope["method"]
        status = {"code": 500}

        async def record_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        started = time.perf_counter()
        with self.tracer.start_as_current_span(
            f"{method} {route}",
            context=context,
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": route},
        ) as span:
            try:
                await self.app(scope, receive, record_status)
            finally:
                request_id = request_id_var.get()
                span.set_attributes(
                    {"http.response.status_code": status["code"], "cove.request_id": request_id}
                    if request_id
                    else {"http.response.status_code": status["code"]}
                )
                if status["code"] >= 500:
                    span.set_status(trace.StatusCode.ERROR)
                if self.duration is not None:
                    self.duration.record(
                        time.perf_counter() - started,
                        {
                            "http.request.method": method,
                            "http.response.status_code": status["code"],
                        },
                    )
