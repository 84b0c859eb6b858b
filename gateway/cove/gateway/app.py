"""The gateway application: OpenAI-compatible endpoints in front of each BU's model instances.

The hot path is deliberately lean: the body is parsed once with orjson (no model validation
layer), identity and routes come from in-memory caches, and responses are relayed as bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from cove.gateway.caches import CacheRefresher, KeyCache, Route, RouteCache
from cove.gateway.errors import FimNotSupported, MalformedJson, ModelNotFound
from cove.gateway.proxy import Upstream, UpstreamReply, relay
from cove.gateway.settings import GatewaySettings
from cove.platform.core.db import Database
from cove.platform.core.errors import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    Unauthorized,
    UpstreamUnavailable,
)
from cove.platform.core.http import (
    RequestIdMiddleware,
    TelemetryMiddleware,
    install_error_handlers,
)
from cove.platform.core.logging import configure_logging
from cove.platform.core.telemetry import Telemetry, setup_telemetry
from cove.tenants.principal import Principal, Scope

MODEL_VERSION_HEADER = "x-cove-model-version"

_COMPLETION_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["prompt"],
                    "properties": {
                        "model": {"type": "string"},
                        "prompt": {"type": "string"},
                        "suffix": {"type": "string"},
                        "max_tokens": {"type": "integer", "minimum": 1},
                        "temperature": {"type": "number"},
                        "stream": {"type": "boolean"},
                        "stop": {"oneOf": [{"type": "string"}, {"type": "array"}]},
                        "n": {"type": "integer", "minimum": 1},
                    },
                }
            }
        },
    }
}
_CHAT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["messages"],
                    "properties": {
                        "model": {"type": "string"},
                        "messages": {"type": "array", "items": {"type": "object"}},
                        "max_tokens": {"type": "integer", "minimum": 1},
                        "stream": {"type": "boolean"},
                    },
                }
            }
        },
    }
}


class Health(BaseModel):
    status: str
    keys: int


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    owned_by: str


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "Missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
        )
    return token.strip()


def _require(value: Any, kind: type | tuple[type, ...], name: str) -> None:
    # bool is an int in Python; a JSON true is never a valid count.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise BadRequest(f"'{name}' has the wrong type", code="invalid_type", param=name)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _reply(reply: UpstreamReply, route: Route) -> Response:
    return Response(
        reply.body,
        status_code=reply.status,
        media_type=reply.content_type or "application/json",
        headers={MODEL_VERSION_HEADER: route.model},
    )


def create_app(
    settings: GatewaySettings | None = None, telemetry: Telemetry | None = None
) -> FastAPI:
    settings = settings or GatewaySettings()
    pepper = settings.secret_key.get_secret_value().encode()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings, min_size=1)
        await db.open(wait=False)
        keys = KeyCache(db, pepper, settings.negative_cache_seconds)
        routes = RouteCache(db)
        refresher = CacheRefresher(
            settings.database_url, keys, routes, settings.cache_refresh_seconds
        )
        await refresher.start()
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=settings.upstream_pool_size, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None, connect=settings.upstream_connect_timeout),
            auto_decompress=False,
        )
        app.state.keys = keys
        app.state.routes = routes
        app.state.upstream = Upstream(session, settings.upstream_read_timeout)
        try:
            yield
        finally:
            await refresher.stop()
            await session.close()
            await db.close()

    app = FastAPI(
        title="Cove gateway",
        description="OpenAI-compatible API for IDE plugins, in front of each BU's models.",
        lifespan=lifespan,
    )
    if telemetry is not None:
        app.add_middleware(TelemetryMiddleware, telemetry=telemetry)
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app, render=lambda err: err.to_openai())

    async def authenticate(request: Request, scope: Scope) -> Principal:
        principal = await request.app.state.keys.authenticate(_bearer(request))
        if not principal.can(scope):
            raise Forbidden(f"This key lacks the '{scope}' scope", code="insufficient_scope")
        if principal.tenant_id is None:
            raise Forbidden("Use a key that belongs to a business unit", code="no_business_unit")
        return principal

    async def read_json(request: Request) -> dict[str, Any]:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
            raise PayloadTooLarge(
                f"The request body exceeds {settings.max_body_bytes} bytes", code="body_too_large"
            )
        raw = await request.body()
        if len(raw) > settings.max_body_bytes:
            raise PayloadTooLarge(
                f"The request body exceeds {settings.max_body_bytes} bytes", code="body_too_large"
            )
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedJson("The request body is not valid JSON") from exc
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object", code="invalid_body")
        return body

    def resolve(request: Request, principal: Principal, body: dict[str, Any]) -> Route:
        model = body.get("model")
        if model is not None:
            _require(model, str, "model")
        assert principal.tenant_id is not None
        tenant = request.app.state.routes.for_tenant(principal.tenant_id)
        route = tenant.find(model) if tenant is not None else None
        if route is None:
            if model is None:
                raise UpstreamUnavailable(
                    "Your business unit has no model deployed", code="no_deployment"
                )
            raise ModelNotFound(f"The model '{model}' does not exist or you do not have access")
        if route.status == "unavailable":
            raise UpstreamUnavailable(
                f"The model '{route.model}' is unavailable", code="model_unavailable"
            )
        return route

    async def forward(request: Request, route: Route, path: str, body: dict[str, Any]) -> Response:
        body["model"] = route.served_model_name
        url = route.endpoint_url + path
        upstream: Upstream = request.app.state.upstream
        if body.get("stream") is True:
            resp, error = await upstream.open_stream(url, body)
            if error is not None:
                return _reply(error, route)
            assert resp is not None
            return StreamingResponse(
                relay(resp),
                media_type="text/event-stream",
                headers={MODEL_VERSION_HEADER: route.model, "cache-control": "no-cache"},
            )
        return _reply(await upstream.post_json(url, body), route)

    def check_common(body: dict[str, Any]) -> None:
        if "stream" in body:
            _require(body["stream"], bool, "stream")
        if "max_tokens" in body and body["max_tokens"] is not None:
            _require(body["max_tokens"], int, "max_tokens")
            if body["max_tokens"] < 1:
                raise BadRequest("'max_tokens' must be at least 1", param="max_tokens")
        if "n" in body and body["n"] is not None:
            _require(body["n"], int, "n")
            if not 1 <= body["n"] <= 8:
                raise BadRequest("'n' must be between 1 and 8", code="invalid_n", param="n")

    @app.post("/v1/completions", tags=["openai"], openapi_extra=_COMPLETION_BODY)
    async def completions(request: Request) -> Response:
        """Text completion, with `suffix` for fill-in-the-middle."""
        principal = await authenticate(request, Scope.COMPLETIONS)
        body = await read_json(request)
        check_common(body)
        prompt = body.get("prompt")
        if prompt is None:
            raise BadRequest("'prompt' is required", code="missing_field", param="prompt")
        _require(prompt, str, "prompt")
        route = resolve(request, principal, body)
        suffix = body.pop("suffix", None)
        if suffix is not None:
            _require(suffix, str, "suffix")
            tokens = route.fim_tokens
            if not tokens:
                raise FimNotSupported(
                    f"The model '{route.model}' has no fill-in-the-middle tokens",
                    param="suffix",
                )
            body["prompt"] = (
                f"{tokens['prefix']}{prompt}{tokens['suffix']}{suffix}{tokens['middle']}"
            )
        return await forward(request, route, "/v1/completions", body)

    @app.post("/v1/chat/completions", tags=["openai"], openapi_extra=_CHAT_BODY)
    async def chat_completions(request: Request) -> Response:
        """Chat completion (streaming supported)."""
        principal = await authenticate(request, Scope.COMPLETIONS)
        body = await read_json(request)
        check_common(body)
        messages = body.get("messages")
        if messages is None:
            raise BadRequest("'messages' is required", code="missing_field", param="messages")
        _require(messages, list, "messages")
        if not messages or not all(isinstance(m, dict) for m in messages):
            raise BadRequest("'messages' must be a non-empty list of objects", param="messages")
        route = resolve(request, principal, body)
        return await forward(request, route, "/v1/chat/completions", body)

    @app.get("/v1/models", tags=["openai"])
    async def list_models(request: Request) -> ModelList:
        """The models the caller's business unit may use."""
        principal = await authenticate(request, Scope.COMPLETIONS)
        assert principal.tenant_id is not None
        tenant = request.app.state.routes.for_tenant(principal.tenant_id)
        routes = tenant.routes if tenant is not None else ()
        return ModelList(data=[ModelCard(id=r.model, owned_by="cove") for r in routes])

    @app.get("/healthz", tags=["health"])
    async def healthz(request: Request) -> Health:
        """Liveness, with the number of cached keys."""
        return Health(status="ok", keys=len(request.app.state.keys))

    return app


def main_app() -> FastAPI:
    """Factory for `uvicorn --factory cove.gateway.app:main_app`."""
    settings = GatewaySettings()
    configure_logging(settings.log_level, json=settings.log_json)
    telemetry = setup_telemetry(settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    return create_app(settings, telemetry)
