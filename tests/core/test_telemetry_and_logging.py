"""Spans, metrics and structured logs carry what an operator needs, request id included."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cove.platform.api.app import PlatformSettings, create_app
from cove.platform.core.logging import JsonFormatter, request_id_var
from cove.platform.core.settings import CoveSettings
from cove.platform.core.telemetry import setup_telemetry


async def test_each_request_is_a_span_with_status_route_and_request_id(
    settings: CoveSettings,
) -> None:
    spans = InMemorySpanExporter()
    metrics = InMemoryMetricReader()
    telemetry = setup_telemetry("cove-test", span_exporter=spans, metric_readers=[metrics])
    app = create_app(PlatformSettings(**settings.model_dump()), telemetry)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
            ok = await client.get("/healthz", headers={"x-request-id": "req-123"})
            denied = await client.get("/api/v1/bus", headers={"traceparent": parent})
    assert ok.headers["x-request-id"] == "req-123"
    assert denied.status_code == 401
    finished = {s.name: s for s in spans.get_finished_spans()}
    health = finished["GET /healthz"]
    assert health.attributes is not None
    assert health.attributes["http.response.status_code"] == 200
    assert health.attributes["cove.request_id"] == "req-123"
    bus = finished["GET /api/v1/bus"]
    assert bus.attributes is not None
    assert bus.attributes["http.response.status_code"] == 401
    # The caller's W3C trace context continues into our span.
    assert format(bus.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    data = metrics.get_metrics_data()
    assert data is not None
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert "http.server.request.duration" in names


def test_json_logs_carry_the_request_id_and_extra_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    record = logging.LogRecord("cove.test", logging.INFO, __file__, 1, "key %s", ("revoked",), None)
    record.tenant = "payments"
    token = request_id_var.set("req-9")
    try:
        line: dict[str, Any] = orjson.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["msg"] == "key revoked"
    assert line["request_id"] == "req-9"
    assert line["tenant"] == "payments"
    assert line["level"] == "info"
