"""Spans, trace-context forwarding and Prometheus metrics of the gateway.

The upstream here is a tiny recording OpenAI-compatible server, because the assertion is on
the HTTP headers the upstream receives, which vLLM does not expose.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cove.gateway.app import create_app
from cove.gateway.settings import GatewaySettings
from cove.platform.core.db import Database
from cove.platform.core.telemetry import setup_telemetry
from tests.conftest import ServerThread
from tests.gateway.conftest import add_deployment


def recording_upstream(seen: list[dict[str, str]]) -> Starlette:
    async def completions(request: Request) -> Response:
        seen.append(dict(request.headers))
        if (await request.json()).get("stream"):
            chunks = [
                {"id": "cmpl-s", "choices": [{"index": 0, "text": "return 2\n"}]},
                {
                    "id": "cmpl-s",
                    "choices": [],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
                },
            ]
            body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            return Response(body, media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "cmpl-rec",
                "object": "text_completion",
                "model": "m",
                "choices": [{"index": 0, "text": "return 1\n", "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
            }
        )

    return Starlette(routes=[Route("/v1/completions", completions, methods=["POST"])])


async def test_trace_context_reaches_the_upstream_and_metrics_count_the_request(
    db: Database, world: dict[str, Any], gateway_settings: GatewaySettings
) -> None:
    seen: list[dict[str, str]] = []
    spans = InMemorySpanExporter()
    telemetry = setup_telemetry("gw-test", span_exporter=spans)
    with ServerThread(recording_upstream(seen)) as upstream:
        await add_deployment(db, world["a"]["bu"].id, upstream.url)
        with ServerThread(create_app(gateway_settings, telemetry)) as gateway:
            resp = httpx.post(
                f"{gateway.url}/v1/completions",
                json={"model": "cove-tiny", "prompt": "def f():"},
                headers={"Authorization": f"Bearer {world['a']['dev_key']}"},
            )
            assert resp.status_code == 200, resp.text
            streamed = httpx.post(
                f"{gateway.url}/v1/completions",
                json={"model": "cove-tiny", "prompt": "def g():", "stream": True},
                headers={"Authorization": f"Bearer {world['a']['dev_key']}"},
            )
            assert streamed.status_code == 200, streamed.text
            assert "return 2" in streamed.text
            denied = httpx.post(f"{gateway.url}/v1/completions", json={"prompt": "x"})
            assert denied.status_code == 401
            metrics = httpx.get(f"{gateway.url}/metrics").text
    span = next(
        s
        for s in spans.get_finished_spans()
        if s.name == "POST /v1/completions"
        and s.attributes
        and s.attributes.get("http.response.status_code") == 200
    )
    assert span.attributes is not None
    assert span.attributes["cove.model_version"] == "cove-tiny"
    assert span.attributes["cove.tenant_id"] == str(world["a"]["bu"].id)
    assert "a-dev" not in str(span.attributes["cove.user_hash"])
    assert span.attributes["gen_ai.usage.input_tokens"] == 3
    assert span.attributes["gen_ai.usage.output_tokens"] == 4
    assert 0 < float(span.attributes["cove.time_to_first_token_ms"]) < 10_000  # type: ignore[arg-type]
    streamed_span = next(
        s
        for s in spans.get_finished_spans()
        if s.attributes and s.attributes.get("gen_ai.usage.output_tokens") == 6
    )
    assert streamed_span.attributes is not None
    assert streamed_span.attributes["gen_ai.usage.input_tokens"] == 5
    assert "cove.time_to_first_token_ms" in streamed_span.attributes
    traceparent = seen[0]["traceparent"]
    assert traceparent.split("-")[1] == format(span.context.trace_id, "032x")
    assert 'cove_gateway_requests_total{path="/v1/completions",status="200"} 2.0' in metrics
    assert 'cove_gateway_requests_total{path="/v1/completions",status="401"} 1.0' in metrics
    assert "cove_gateway_completions_total" in metrics
    assert "cove_gateway_time_to_first_token_seconds_bucket" in metrics
