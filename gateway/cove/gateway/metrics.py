"""Prometheus metrics of the gateway, served at `/metrics`.

Each app gets its own registry, so several gateways in one process (tests) do not collide.
Labels are bounded: the route template, status class, BU slug-free tenant id and model.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cove_gateway_requests", "HTTP requests", ["path", "status"], registry=self.registry
        )
        self.duration = Histogram(
            "cove_gateway_request_duration_seconds",
            "Time to the last byte",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "cove_gateway_time_to_first_token_seconds",
            "Time to the upstream's first byte",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.completions = Counter(
            "cove_gateway_completions",
            "Completions served",
            ["tenant", "model", "feature"],
            registry=self.registry,
        )
        self.policy_decisions = Counter(
            "cove_gateway_policy_decisions",
            "Blocks, redactions, exclusions and limit hits",
            ["action"],
            registry=self.registry,
        )
        self.events_pending = Gauge(
            "cove_gateway_events_pending",
            "Usage events waiting to be written",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


KNOWN_PATHS = frozenset(
    {"/v1/completions", "/v1/chat/completions", "/v1/events", "/v1/models", "/v1/health"}
)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        started = time.perf_counter()
        status = {"code": 500}

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            self.metrics.requests.labels(path, str(status["code"])).inc()
            self.metrics.duration.labels(path).observe(time.perf_counter() - started)
