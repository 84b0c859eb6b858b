"""Schemathesis fuzzes both OpenAPI documents: whatever the input, never a 500.

Requests carry a valid admin key (platform) or developer key (gateway) so they get past
authentication and into the handlers. The gateway's upstream is a tiny recording server: the
fuzz targets Cove's own request handling, not the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cove.gateway.app import create_app as create_gateway
from cove.gateway.settings import GatewaySettings
from cove.platform.api.app import PlatformSettings
from cove.platform.api.app import create_app as create_platform
from cove.platform.core.settings import CoveSettings
from tests.conftest import ServerThread
from tests.gateway.conftest import add_deployment

FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _upstream() -> Starlette:
    async def answer(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse(
            {
                "id": "cmpl-f",
                "object": "text_completion",
                "model": "m",
                "choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}],
            }
        )

    return Starlette(
        routes=[
            Route("/v1/completions", answer, methods=["POST"]),
            Route("/v1/chat/completions", answer, methods=["POST"]),
        ]
    )


@pytest.fixture
def platform_url(settings: CoveSettings, world: dict[str, Any]) -> Iterator[str]:
    with ServerThread(create_platform(PlatformSettings(**settings.model_dump()))) as server:
        yield server.url


@pytest.fixture
async def gateway_url(settings: CoveSettings, world: dict[str, Any], db: Any) -> Any:
    with ServerThread(_upstream()) as upstream:
        await add_deployment(db, world["a"]["bu"].id, upstream.url)
        gateway_settings = GatewaySettings(**settings.model_dump())
        with ServerThread(create_gateway(gateway_settings)) as server:
            yield server.url


def _fuzz(schema_url: str, headers: dict[str, str]) -> int:
    """Run generated cases for every operation; returns how many requests were made."""
    schema = schemathesis.openapi.from_url(f"{schema_url}/openapi.json")
    schema.config.update(base_url=schema_url)
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @FUZZ
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            nonlocal calls
            calls += 1
            response = case.call(headers=headers)
            assert response.status_code < 500, (case.method, case.path, response.text[:500])

        check()
    return calls


def test_platform_api_never_answers_500(platform_url: str, world: dict[str, Any]) -> None:
    calls = _fuzz(platform_url, {"Authorization": f"Bearer {world['admin_key']}"})
    assert calls > 100


async def test_gateway_never_answers_500(gateway_url: str, world: dict[str, Any]) -> None:
    calls = _fuzz(gateway_url, {"Authorization": f"Bearer {world['a']['dev_key']}"})
    assert calls > 20
