"""IDEs cancel constantly: a client that goes away must stop the generation upstream."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from cove.gateway.app import create_app
from cove.gateway.settings import GatewaySettings
from cove.platform.core.db import Database
from tests.conftest import ServerThread
from tests.gateway.conftest import add_deployment

pytestmark = pytest.mark.vllm


def _metric(vllm_url: str, name: str) -> float:
    text = httpx.get(f"{vllm_url}/metrics").text
    pattern = rf"^{re.escape(name)}\{{[^}}]*\}} ([0-9.e+]+)$"
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.M))


def _running(vllm_url: str) -> float:
    return _metric(vllm_url, "vllm:num_requests_running")


async def test_client_disconnect_aborts_the_vllm_request(
    db: Database, world: dict[str, Any], vllm_url: str, gateway_settings: GatewaySettings
) -> None:
    await add_deployment(db, world["a"]["bu"].id, vllm_url)
    body = {
        "model": "cove-tiny",
        "prompt": "def main():",
        "max_tokens": 1000,
        "stream": True,
        "ignore_eos": True,
        "temperature": 0,
    }
    headers = {"Authorization": f"Bearer {world['a']['dev_key']}"}
    generated_before = _metric(vllm_url, "vllm:generation_tokens_total")
    with ServerThread(create_app(gateway_settings)) as gateway:
        with (
            httpx.Client(timeout=30) as client,
            client.stream(
                "POST", f"{gateway.url}/v1/completions", json=body, headers=headers
            ) as resp,
        ):
            assert resp.status_code == 200
            chunks = resp.iter_raw()
            first = next(chunks)
            assert first.startswith(b"data: ")
            # Leaving the block closes the client connection mid-stream.
        # Wait until vLLM's token counter stops moving: the request has ended, one way or
        # the other.
        settled_at = time.monotonic()
        last = -1.0
        while (now := _metric(vllm_url, "vllm:generation_tokens_total")) != last:
            assert time.monotonic() - settled_at < 60, "vLLM never settled"
            last = now
            time.sleep(1.0)
    # Speed varies with machine load; the token count does not: an aborted request stops
    # far short of the 1000 tokens it asked for.
    generated = _metric(vllm_url, "vllm:generation_tokens_total") - generated_before
    assert 0 < generated < 800, f"vLLM generated {generated:.0f} of 1000 tokens"
