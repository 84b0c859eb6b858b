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


def _running(vllm_url: str) -> float:
    text = httpx.get(f"{vllm_url}/metrics").text
    values = [
        float(m.group(1))
        for m in re.finditer(r"^vllm:num_requests_running\{[^}]*\} ([0-9.]+)$", text, re.M)
    ]
    return sum(values)


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
            assert _running(vllm_url) >= 1
            # Leaving the block closes the client connection mid-stream.
        closed_at = time.monotonic()
        while _running(vllm_url) > 0:
            assert time.monotonic() - closed_at < 2.0, "vLLM kept generating after the disconnect"
            time.sleep(0.05)
