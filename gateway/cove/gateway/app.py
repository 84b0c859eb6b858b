"""The gateway application: OpenAI- and Tabby-compatible endpoints in front of each BU's
model instances.

The hot path is deliberately lean: the body is parsed once with orjson (no model validation
layer), identity and routes come from in-memory caches, responses are relayed as bytes, and
usage events are handed to a background writer.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from opentelemetry import trace
from pydantic import BaseModel
from starlette.routing import request_response

from cove.gateway import openapi, tabby
from cove.gateway.audit import DecisionLog
from cove.gateway.breaker import CircuitBreakers
from cove.gateway.caches import CacheRefresher, KeyCache, PolicyCache, Route, RouteCache
from cove.gateway.enforce import (
    Admitted,
    drop_secret_suggestions,
    enforce_request,
    record_dropped,
)
from cove.gateway.errors import (
    ContentExcluded,
    FimNotSupported,
    MalformedJson,
    ModelNotAllowed,
    ModelNotFound,
)
from cove.gateway.events import (
    EventRejected,
    EventSink,
    UsageEvent,
    parse_client_event,
    postgres_writer,
)
from cove.gateway.guard import SuggestionGuard
from cove.gateway.limits import RateLimiter
from cove.gateway.metrics import GatewayMetrics, MetricsMiddleware
from cove.gateway.policies import GatewayPolicy
from cove.gateway.promptlog import PromptLogEntry, PromptLogSink
from cove.gateway.proxy import StreamRelay, Upstream, UpstreamReply, relay
from cove.gateway.served import Offer, SseTap, offer_from_body
from cove.gateway.settings import GatewaySettings
from cove.gateway.upstream_http import HttpPool
from cove.platform.core.db import Database
from cove.platform.core.errors import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    UpstreamUnavailable,
)
from cove.platform.core.http import (
    RequestIdMiddleware,
    TelemetryMiddleware,
    install_error_handlers,
)
from cove.platform.core.logging import configure_logging
from cove.platform.core.telemetry import Telemetry, setup_telemetry
from cove.tenants.identity.bearer import bearer_token
from cove.tenants.identity.claims import choose_bu, platform_principal, principal_for_bu
from cove.tenants.identity.oidc import TokenVerifier
from cove.tenants.principal import Principal, Scope

MODEL_VERSION_HEADER = "x-cove-model-version"
LEAN_PATHS = frozenset({"/v1/completions", "/v1/chat/completions"})
BU_HEADER = "x-cove-bu"
FILE_PATH_HEADER = "x-cove-file-path"


class Health(BaseModel):
    status: str
    keys: int
    pending_events: int


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    owned_by: str


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


class EventRejection(BaseModel):
    index: int
    code: str
    message: str


class EventsAccepted(BaseModel):
    accepted: int
    rejected: list[EventRejection]


def gateway_version() -> str:
    try:
        return version("cove")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0+unknown"


def _require(value: Any, kind: type | tuple[type, ...], name: str) -> None:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python; a JSON true is never a valid count.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise BadRequest(f"'{name}' has the wrong type", code="invalid_type", param=name)


def _ide(request: Request, *, tabby_client: bool = False) -> str | None:
    explicit = request.headers.get("x-cove-ide")
    if explicit:
        return explicit[:100]
    agent = request.headers.get("user-agent", "")
    if tabby_client and agent.startswith("node"):
        # tabby-agent sends no IDE header and Node's fetch says only "node".
        return "tabby-agent"
    return agent.split(" ", 1)[0][:100] or None


def _message_texts(
    messages: list[dict[str, Any]],
) -> list[tuple[dict[str, Any], dict[str, Any] | None, str]]:
    """Every text a chat request carries: (message, content part or None, text)."""
    found: list[tuple[dict[str, Any], dict[str, Any] | None, str]] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            found.append((message, None, content))
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    found.append((message, part, part["text"]))
    return found


def _fallback_for(route: Route) -> Route | None:
    """The deployment's fallback instance: the same version if loaded there, else its base."""
    return route.fallback


def _user_hash(principal: Principal) -> str:
    # Traces leave the BU's boundary (to the tracing backend): never the user's identity.
    return hashlib.sha256(principal.subject.encode()).hexdigest()[:16]


def _settle_garbage_collector() -> None:
    """After start-up, move everything loaded so far (frameworks, caches, compiled patterns:
    hundreds of thousands of objects that live as long as the process) out of the collector's
    sight, so the occasional full collection walks only what requests allocated. (A larger
    young-generation threshold was tried: fewer collections, but each long enough to show
    in the benchmark's p95.)"""
    gc.collect()
    gc.freeze()


def _annotate(span: trace.Span, offer: Offer, started: float) -> None:
    """Token counts and time to first token on the request's span (while it is open)."""
    if not span.is_recording():
        return
    attributes: dict[str, int | float] = {}
    if offer.prompt_tokens is not None:
        attributes["gen_ai.usage.input_tokens"] = offer.prompt_tokens
    if offer.completion_tokens is not None:
        attributes["gen_ai.usage.output_tokens"] = offer.completion_tokens
    if offer.first_byte_at is not None:
        attributes["cove.time_to_first_token_ms"] = round((offer.first_byte_at - started) * 1000, 2)
    span.set_attributes(attributes)


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
    cove_version = gateway_version()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Waiting long for a connection only delays spooling when Postgres is down.
        db = Database(settings, min_size=1, acquire_timeout=settings.db_acquire_timeout)
        await db.open(wait=False)
        keys = KeyCache(db, pepper, settings.negative_cache_seconds)
        routes = RouteCache(db)
        policies = PolicyCache(db)
        refresher = CacheRefresher(
            settings.database_url, keys, routes, policies, settings.cache_refresh_seconds
        )
        await refresher.start()
        decisions = DecisionLog(
            db, on_record=lambda action: metrics.policy_decisions.labels(action).inc()
        )
        await decisions.start()
        sink = EventSink(
            postgres_writer(db),
            settings.event_spool_dir,
            batch_size=settings.event_batch_size,
            flush_interval=settings.event_flush_seconds,
        )
        await sink.start()
        prompt_logs = PromptLogSink(db)
        await prompt_logs.start()
        pool = HttpPool(
            connect_timeout=settings.upstream_connect_timeout,
            max_per_origin=settings.upstream_pool_size,
            user_agent=f"cove-gateway/{cove_version}",
        )
        app.state.keys = keys
        app.state.routes = routes
        app.state.policies = policies
        app.state.decisions = decisions
        limiter = RateLimiter(settings.redis_url, fail_closed=settings.rate_limit_fail_closed)
        app.state.limiter = limiter
        app.state.events = sink
        app.state.prompt_logs = prompt_logs
        app.state.upstream = Upstream(pool, settings.upstream_read_timeout)
        app.state.breakers = CircuitBreakers()
        verifier: TokenVerifier | None = None
        if settings.oidc_issuer:
            verifier = TokenVerifier(
                settings.oidc_issuer, settings.oidc_audience, jwks_uri=settings.oidc_jwks_uri
            )
            await verifier.start()
        app.state.verifier = verifier
        _settle_garbage_collector()
        try:
            yield
        finally:
            await refresher.stop()
            pool.close()
            await limiter.close()
            if verifier is not None:
                await verifier.close()
            # Drain last: every completion served before shutdown must be recorded.
            await sink.stop()
            await prompt_logs.stop()
            await decisions.stop()
            await db.close()

    app = FastAPI(
        title="Cove gateway",
        description=(
            "OpenAI- and Tabby-compatible API for IDE plugins, in front of each business "
            "unit's models. Errors use the OpenAI error envelope."
        ),
        version=cove_version,
        lifespan=lifespan,
    )
    metrics = GatewayMetrics()
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if telemetry is not None:
        app.add_middleware(TelemetryMiddleware, telemetry=telemetry)
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app, render=lambda err: err.to_openai())

    async def authenticate(request: Request, scope: Scope) -> Principal:
        token = bearer_token(
            request.headers.get("authorization"),
            code="missing_api_key",
            message="Missing API key: send 'Authorization: Bearer <key>'",
        )
        verifier: TokenVerifier | None = request.app.state.verifier
        if verifier is not None and not token.startswith("cove_") and token.count(".") == 2:
            principal = await token_principal(request, verifier, token)
        else:
            principal = await request.app.state.keys.authenticate(token)
        if not principal.can(scope):
            raise Forbidden(f"This key lacks the '{scope}' scope", code="insufficient_scope")
        if principal.tenant_id is None:
            raise Forbidden("Use a key that belongs to a business unit", code="no_business_unit")
        return principal

    async def token_principal(request: Request, verifier: TokenVerifier, token: str) -> Principal:
        claims = await verifier.verify(token)
        slug = choose_bu(claims, request.headers.get(BU_HEADER))
        if slug is None:
            return platform_principal(claims)
        routes: RouteCache = request.app.state.routes
        found = routes.tenant_by_slug(slug)
        if found is None:
            raise Forbidden(f"You are not a member of business unit '{slug}'", code="not_a_member")
        tenant_id, status = found
        principal = principal_for_bu(claims, slug, tenant_id)
        if status != "active":
            raise Forbidden(f"This business unit is {status}", code=f"bu_{status}")
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

    def policy_for(request: Request, principal: Principal) -> GatewayPolicy:
        assert principal.tenant_id is not None
        cache: PolicyCache = request.app.state.policies
        return cache.for_tenant(principal.tenant_id)

    async def admit(
        request: Request,
        principal: Principal,
        policy: GatewayPolicy,
        *,
        texts: list[tuple[str, str]],
        path: str | None,
        model: Any,
        body: dict[str, Any] | None,
        feature: str,
        max_tokens: int | None = None,
        language: str | None = None,
    ) -> Admitted:
        task = "chat" if feature == "chat" else "completion"
        return await enforce_request(
            policy,
            principal,
            texts=texts,
            path=path,
            resolve=lambda: resolve(request, principal, model, policy, task),
            body=body,
            max_tokens=max_tokens,
            limiter=request.app.state.limiter,
            decisions=request.app.state.decisions,
            feature=feature,
            language=language,
        )

    def resolve(
        request: Request,
        principal: Principal,
        model: Any,
        policy: GatewayPolicy | None = None,
        task: str = "completion",
    ) -> Route:
        if model is not None:
            _require(model, str, "model")
        elif policy is not None:
            model = policy.routing.chat if task == "chat" else policy.routing.completion
        assert principal.tenant_id is not None
        routes: RouteCache = request.app.state.routes
        tenant = routes.for_tenant(principal.tenant_id)
        user = str(principal.user_id or principal.subject)
        route = tenant.choose(model, user, principal.groups) if tenant is not None else None
        if route is None:
            if model is None:
                raise UpstreamUnavailable(
                    "Your business unit has no model deployed", code="no_deployment"
                )
            raise ModelNotFound(f"The model '{model}' does not exist or you do not have access")
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(
                {
                    "cove.tenant_id": str(principal.tenant_id),
                    "cove.user_hash": _user_hash(principal),
                    "cove.model_version": route.model,
                }
            )
        if policy is not None and not policy.model_access.allows(
            route.model, principal.groups, frozenset(str(r) for r in principal.roles)
        ):
            raise ModelNotAllowed(f"Your policy does not allow the model '{route.model}'")
        breakers: CircuitBreakers = request.app.state.breakers
        not_ready = route.status == "unavailable" or (
            # An instance not yet seen healthy is skipped while a fallback can serve.
            route.status == "pending" and route.fallback is not None
        )
        if not_ready or breakers.is_open(route.endpoint_url):
            fallback = _fallback_for(route)
            if fallback is not None and not breakers.is_open(fallback.endpoint_url):
                return fallback
            raise UpstreamUnavailable(
                f"The model '{route.model}' is unavailable", code="model_unavailable"
            )
        return route

    def served_recorder(
        request: Request,
        principal: Principal,
        route: Route,
        feature: str,
        started: float,
        language: str | None = None,
        *,
        tabby_client: bool = False,
        log: PromptLogEntry | None = None,
    ) -> Callable[[Offer], None]:
        sink: EventSink = request.app.state.events
        prompt_logs: PromptLogSink = request.app.state.prompt_logs
        ide = _ide(request, tabby_client=tabby_client)
        span = trace.get_current_span()

        def record(offer: Offer) -> None:
            """Annotate the request's span now, while it is open, and make the usage event
            once the response is on its way (the next turn of the event loop), not while the
            client waits."""
            _annotate(span, offer, started)
            asyncio.get_running_loop().call_soon(emit, offer, time.perf_counter())

        def emit(offer: Offer, finished: float) -> None:
            lines, chars = offer.lines_and_chars()
            data: dict[str, Any] = {
                "lines": lines,
                "chars": chars,
                "total_ms": round((finished - started) * 1000, 2),
            }
            if offer.first_byte_at is not None:
                data["ttft_ms"] = round((offer.first_byte_at - started) * 1000, 2)
            if offer.completion_tokens is not None:
                data["completion_tokens"] = offer.completion_tokens
            if offer.prompt_tokens is not None:
                data["prompt_tokens"] = offer.prompt_tokens
            if offer.cancelled:
                data["cancelled"] = True
            metrics.completions.labels(str(principal.tenant_id), route.model, feature).inc()
            if offer.first_byte_at is not None:
                metrics.ttft.labels(route.model).observe(offer.first_byte_at - started)
            assert principal.tenant_id is not None
            sink.emit(
                UsageEvent(
                    id=uuid.uuid4(),
                    tenant_id=principal.tenant_id,
                    event_type="completion.served",
                    occurred_at=datetime.now(UTC),
                    user_id=str(principal.user_id) if principal.user_id else principal.subject,
                    completion_id=offer.completion_id,
                    model_version=route.model,
                    feature=feature,
                    language=language,
                    ide=ide,
                    data=data,
                )
            )
            if log is not None:
                prompt_logs.emit(log, offer)

        return record

    async def forward(
        request: Request,
        principal: Principal,
        route: Route,
        path: str,
        body: dict[str, Any],
        record: Callable[[Offer], None],
        started: float,
        log: PromptLogEntry | None = None,
    ) -> Response | StreamRelay:
        upstream: Upstream = request.app.state.upstream
        breakers: CircuitBreakers = request.app.state.breakers
        decisions: DecisionLog = request.app.state.decisions
        stream = body.get("stream") is True
        try:
            body["model"] = route.served_model_name
            if stream:
                resp, error = await upstream.open_stream(route.endpoint_url + path, body)
            else:
                reply = await upstream.post_json(route.endpoint_url + path, body)
        except UpstreamUnavailable:
            # Nothing reached the instance (the connection failed), so one retry elsewhere
            # is safe.
            breakers.failure(route.endpoint_url)
            fallback = _fallback_for(route)
            if fallback is None:
                raise
            route = fallback
            body["model"] = route.served_model_name
            if stream:
                resp, error = await upstream.open_stream(route.endpoint_url + path, body)
            else:
                reply = await upstream.post_json(route.endpoint_url + path, body)
        breakers.success(route.endpoint_url)
        if stream:
            if error is not None:
                return _reply(error, route)
            assert resp is not None
            fired = log.rules if log is not None else None
            guard = SuggestionGuard(
                lambda _, found: record_dropped(
                    principal, decisions, found, streamed=True, fired=fired
                )
            )
            return StreamRelay(
                resp,
                relay(resp, SseTap(started, record), guard),
                {MODEL_VERSION_HEADER: route.model, "cache-control": "no-cache"},
            )
        if reply.status == 200:
            filtered, dropped = drop_secret_suggestions(reply.body)
            if dropped:
                fired = log.rules if log is not None else None
                record_dropped(principal, decisions, dropped, streamed=False, fired=fired)
                reply = UpstreamReply(reply.status, filtered, reply.content_type)
            offer = offer_from_body(reply.body)
            offer.first_byte_at = time.perf_counter()
            record(offer)
        return _reply(reply, route)

    def check_common(body: dict[str, Any]) -> None:
        if "stream" in body:
            _require(body["stream"], bool, "stream")
        if body.get("max_tokens") is not None:
            _require(body["max_tokens"], int, "max_tokens")
            if body["max_tokens"] < 1:
                raise BadRequest("'max_tokens' must be at least 1", param="max_tokens")
        if body.get("n") is not None:
            _require(body["n"], int, "n")
            if not 1 <= body["n"] <= 8:
                raise BadRequest("'n' must be between 1 and 8", code="invalid_n", param="n")
        if body.get("temperature") is not None:
            _require(body["temperature"], (int, float), "temperature")

    def fim_prompt(route: Route, prefix: str, suffix: str) -> str:
        tokens = route.fim_tokens
        if not tokens:
            raise FimNotSupported(
                f"The model '{route.model}' has no fill-in-the-middle tokens", param="suffix"
            )
        return f"{tokens['prefix']}{prefix}{tokens['suffix']}{suffix}{tokens['middle']}"

    @app.post(
        "/v1/completions",
        tags=["completions"],
        openapi_extra=openapi.COMPLETIONS,
        response_model=None,
    )
    async def completions(request: Request) -> Response | StreamRelay:
        """Text completion (OpenAI shape, `suffix` for fill-in-the-middle) or a Tabby
        completion (`segments`)."""
        started = time.perf_counter()
        principal = await authenticate(request, Scope.COMPLETIONS)
        body = await read_json(request)
        if tabby.is_tabby_completion(body):
            return await tabby_completion(request, principal, body, started)
        check_common(body)
        prompt = body.get("prompt")
        if prompt is None:
            raise BadRequest("'prompt' is required", code="missing_field", param="prompt")
        _require(prompt, str, "prompt")
        suffix = body.pop("suffix", None)
        if suffix is not None:
            _require(suffix, str, "suffix")
        policy = policy_for(request, principal)
        texts = [("prompt", prompt)] if suffix is None else [("prompt", prompt), ("suffix", suffix)]
        admitted = await admit(
            request,
            principal,
            policy,
            texts=texts,
            path=request.headers.get(FILE_PATH_HEADER),
            model=body.get("model"),
            body=body,
            feature="completion",
        )
        route = admitted.route
        if suffix is not None:
            prompt, suffix = admitted.texts
            body["prompt"] = fim_prompt(route, prompt, suffix)
        else:
            prompt = body["prompt"] = admitted.texts[0]
        if admitted.log is not None:
            admitted.log.keep_text(prompt, suffix)
        record = served_recorder(request, principal, route, "completion", started, log=admitted.log)
        return await forward(
            request, principal, route, "/v1/completions", body, record, started, admitted.log
        )

    async def tabby_completion(
        request: Request, principal: Principal, body: dict[str, Any], started: float
    ) -> Response:
        prefix, suffix, filepath, language = tabby.tabby_segments(body)
        policy = policy_for(request, principal)
        try:
            admitted = await admit(
                request,
                principal,
                policy,
                texts=[("prefix", prefix), ("suffix", suffix)],
                path=filepath,
                model=None,
                body=None,
                max_tokens=tabby.DEFAULT_MAX_TOKENS,
                feature="completion",
                language=language,
            )
        except ContentExcluded:
            # Tabby's plugins show nothing for an empty answer, which is what exclusion means.
            return JSONResponse(tabby.tabby_response(None, ""))
        route = admitted.route
        prefix, suffix = admitted.texts
        if admitted.log is not None:
            admitted.log.keep_text(prefix, suffix)
        upstream_body = tabby.upstream_request(
            fim_prompt(route, prefix, suffix), body, route.served_model_name
        )
        upstream: Upstream = request.app.state.upstream
        reply = await upstream.post_json(route.endpoint_url + "/v1/completions", upstream_body)
        if reply.status != 200:
            return _reply(reply, route)
        filtered, dropped = drop_secret_suggestions(reply.body)
        if dropped:
            fired = admitted.log.rules if admitted.log is not None else None
            decisions: DecisionLog = request.app.state.decisions
            record_dropped(principal, decisions, dropped, streamed=False, fired=fired)
        offer = offer_from_body(filtered)
        offer.first_byte_at = time.perf_counter()
        served_recorder(
            request,
            principal,
            route,
            "completion",
            started,
            language,
            tabby_client=True,
            log=admitted.log,
        )(offer)
        return JSONResponse(
            tabby.tabby_response(offer.completion_id, offer.text()),
            headers={MODEL_VERSION_HEADER: route.model},
        )

    @app.post(
        "/v1/chat/completions",
        tags=["completions"],
        openapi_extra=openapi.CHAT,
        response_model=None,
    )
    async def chat_completions(request: Request) -> Response | StreamRelay:
        """Chat completion (streaming supported)."""
        started = time.perf_counter()
        principal = await authenticate(request, Scope.COMPLETIONS)
        body = await read_json(request)
        check_common(body)
        messages = body.get("messages")
        if messages is None:
            raise BadRequest("'messages' is required", code="missing_field", param="messages")
        _require(messages, list, "messages")
        if not messages or not all(isinstance(m, dict) for m in messages):
            raise BadRequest("'messages' must be a non-empty list of objects", param="messages")
        policy = policy_for(request, principal)
        found = _message_texts(messages)
        admitted = await admit(
            request,
            principal,
            policy,
            texts=[("messages", text) for _, _, text in found],
            path=request.headers.get(FILE_PATH_HEADER),
            model=body.get("model"),
            body=body,
            feature="chat",
        )
        for (message, part, text), cleaned in zip(found, admitted.texts, strict=True):
            if cleaned is not text:
                if part is None:
                    message["content"] = cleaned
                else:
                    part["text"] = cleaned
        if admitted.log is not None:
            admitted.log.keep_text(orjson.dumps(messages).decode(), None)
        route = admitted.route
        record = served_recorder(request, principal, route, "chat", started, log=admitted.log)
        return await forward(
            request, principal, route, "/v1/chat/completions", body, record, started, admitted.log
        )

    @app.post("/v1/events", tags=["events"], openapi_extra=openapi.EVENTS)
    async def events(request: Request) -> EventsAccepted:
        """Usage events from IDE clients: a Cove batch (`{"events": [...]}`, METRICS.md v1) or
        one Tabby event (`view` / `select` / `dismiss`). Idempotent by event id."""
        principal = await authenticate(request, Scope.EVENTS)
        body = await read_json(request)
        assert principal.tenant_id is not None
        sink: EventSink = request.app.state.events
        now = datetime.now(UTC)
        user = str(principal.user_id) if principal.user_id else principal.subject
        if tabby.is_tabby_event(body):
            sink.emit(
                tabby.event_from_tabby(
                    body,
                    select_kind=request.query_params.get("select_kind"),
                    tenant_id=principal.tenant_id,
                    user_id=user,
                    now=now,
                    ide=_ide(request, tabby_client=True),
                )
            )
            return EventsAccepted(accepted=1, rejected=[])
        batch = body.get("events")
        if not isinstance(batch, list):
            raise BadRequest(
                "Send {'events': [...]} or a Tabby event", code="invalid_body", param="events"
            )
        if len(batch) > settings.max_events_per_request:
            raise PayloadTooLarge(
                f"At most {settings.max_events_per_request} events per request",
                code="too_many_events",
            )
        defaults = {"ide": _ide(request)}
        rejected: list[EventRejection] = []
        accepted: list[UsageEvent] = []
        for index, raw in enumerate(batch):
            try:
                accepted.append(
                    parse_client_event(
                        raw,
                        tenant_id=principal.tenant_id,
                        user_id=user,
                        now=now,
                        defaults=defaults,
                    )
                )
            except EventRejected as exc:
                rejected.append(EventRejection(index=index, code=exc.code, message=str(exc)))
        for event in accepted:
            sink.emit(event)
        return EventsAccepted(accepted=len(accepted), rejected=rejected)

    @app.get("/v1/models", tags=["completions"])
    async def list_models(request: Request) -> ModelList:
        """The models the caller's business unit may use."""
        principal = await authenticate(request, Scope.COMPLETIONS)
        assert principal.tenant_id is not None
        tenant = request.app.state.routes.for_tenant(principal.tenant_id)
        routes = tenant.routes if tenant is not None else ()
        return ModelList(data=[ModelCard(id=r.model, owned_by="cove") for r in routes])

    @app.get("/v1/health", tags=["tabby"])
    async def tabby_health(request: Request) -> dict[str, Any]:
        """Tabby's health endpoint: the caller's default model and the server version."""
        principal = await authenticate(request, Scope.COMPLETIONS)
        assert principal.tenant_id is not None
        tenant = request.app.state.routes.for_tenant(principal.tenant_id)
        model = tenant.routes[0].model if tenant is not None and tenant.routes else None
        return tabby.tabby_health(model, cove_version)

    # The completion routes take the Request and return a Response themselves: Starlette's
    # plain handler serves them, without FastAPI's dependency solving (tens of microseconds on
    # every keystroke); they stay in the OpenAPI document.
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.path in LEAN_PATHS:
            route.app = request_response(route.endpoint)

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        metrics.events_pending.set(request.app.state.events.pending())
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/healthz", tags=["health"])
    async def healthz(request: Request) -> Health:
        """Liveness, with the number of cached keys and buffered events."""
        return Health(
            status="ok",
            keys=len(request.app.state.keys),
            pending_events=request.app.state.events.pending(),
        )

    return app


def main_app() -> FastAPI:
    """Factory for `uvicorn --factory cove.gateway.app:main_app`."""
    settings = GatewaySettings()
    configure_logging(settings.log_level, json=settings.log_json)
    telemetry = setup_telemetry(settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    return create_app(settings, telemetry)
