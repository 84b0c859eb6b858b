"""The official openai SDK through the gateway to a real vLLM serving the tiny model."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from cove.gateway.app import create_app
from cove.gateway.settings import GatewaySettings
from cove.platform.core.db import Database
from tests.conftest import ServerThread
from tests.gateway.conftest import add_deployment

pytestmark = pytest.mark.vllm


@pytest.fixture
async def served(
    db: Database, world: dict[str, Any], vllm_url: str, gateway_settings: GatewaySettings
) -> Any:
    await add_deployment(db, world["a"]["bu"].id, vllm_url)
    with ServerThread(create_app(gateway_settings)) as server:
        yield server


def _client(server: ServerThread, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def test_completion_plain(served: ServerThread, world: dict[str, Any]) -> None:
    client = _client(served, world["a"]["dev_key"])
    raw = client.completions.with_raw_response.create(
        model="cove-tiny", prompt="def add(a, b):", max_tokens=8, temperature=0
    )
    completion = raw.parse()
    assert raw.headers["x-cove-model-version"] == "cove-tiny"
    assert completion.model == "cove-tiny"
    assert len(completion.choices) == 1
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    assert isinstance(completion.choices[0].text, str)


def test_completion_fill_in_the_middle_uses_the_models_fim_tokens(
    served: ServerThread, world: dict[str, Any]
) -> None:
    client = _client(served, world["a"]["dev_key"])
    completion = client.completions.create(
        model="cove-tiny",
        prompt="def add(a, b):\n    ",
        suffix="\n\nprint(add(1, 2))\n",
        max_tokens=8,
        temperature=0,
        extra_body={"echo": True},
    )
    echoed = completion.choices[0].text
    # vLLM echoes the prompt it received: the gateway rewrote it into the FIM layout.
    assert echoed.startswith("<fim_prefix>def add(a, b):\n    <fim_suffix>\n\nprint(add(1, 2))")
    assert "<fim_middle>" in echoed


def test_completion_streaming(served: ServerThread, world: dict[str, Any]) -> None:
    client = _client(served, world["a"]["dev_key"])
    chunks = list(
        client.completions.create(
            model="cove-tiny", prompt="import os\n", max_tokens=12, temperature=0, stream=True
        )
    )
    assert len(chunks) >= 2
    assert all(c.model == "cove-tiny" for c in chunks)


def test_chat_completion_plain_and_streaming(served: ServerThread, world: dict[str, Any]) -> None:
    client = _client(served, world["a"]["dev_key"])
    chat = client.chat.completions.create(
        model="cove-tiny",
        messages=[{"role": "user", "content": "Write hello world"}],
        max_tokens=8,
    )
    assert chat.choices[0].message.role == "assistant"
    stream = client.chat.completions.create(
        model="cove-tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=8,
        stream=True,
    )
    deltas = [c.choices[0].delta for c in stream if c.choices]
    assert len(deltas) >= 2


def test_models_lists_only_the_callers_models(served: ServerThread, world: dict[str, Any]) -> None:
    assert [m.id for m in _client(served, world["a"]["dev_key"]).models.list()] == ["cove-tiny"]
    assert list(_client(served, world["b"]["dev_key"]).models.list()) == []


def test_wrong_key_gets_401_in_the_openai_envelope(served: ServerThread) -> None:
    client = _client(served, "cove_000000000000000000_wrong")
    with pytest.raises(openai.AuthenticationError) as caught:
        client.completions.create(model="cove-tiny", prompt="x", max_tokens=1)
    assert caught.value.status_code == 401
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["code"] == "invalid_api_key"
    assert body["type"] == "authentication_error"


def test_unknown_model_gets_404(served: ServerThread, world: dict[str, Any]) -> None:
    client = _client(served, world["a"]["dev_key"])
    with pytest.raises(openai.NotFoundError) as caught:
        client.completions.create(model="gpt-17", prompt="x", max_tokens=1)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "model_not_found"


def test_other_bus_model_is_not_found_for_bu_b(served: ServerThread, world: dict[str, Any]) -> None:
    client = _client(served, world["b"]["dev_key"])
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="cove-tiny", prompt="x", max_tokens=1)


def test_malformed_and_wrongly_typed_bodies_get_400(
    served: ServerThread, world: dict[str, Any]
) -> None:
    headers = {
        "Authorization": f"Bearer {world['a']['dev_key']}",
        "content-type": "application/json",
    }
    malformed = httpx.post(f"{served.url}/v1/completions", content=b'{"prompt": ', headers=headers)
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "malformed_json"
    wrong_type = httpx.post(
        f"{served.url}/v1/completions", json={"prompt": 42, "model": "cove-tiny"}, headers=headers
    )
    assert wrong_type.status_code == 400
    assert wrong_type.json()["error"]["param"] == "prompt"
    too_many = httpx.post(
        f"{served.url}/v1/completions", json={"prompt": "x", "n": 1000}, headers=headers
    )
    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == "invalid_n"
    no_messages = httpx.post(f"{served.url}/v1/chat/completions", json={}, headers=headers)
    assert no_messages.status_code == 400
    assert no_messages.json()["error"]["code"] == "missing_field"


def test_revoked_key_is_refused_within_five_seconds(
    served: ServerThread, world: dict[str, Any], settings: Any
) -> None:
    import asyncio

    client = _client(served, world["a"]["dev_key"])
    client.completions.create(model="cove-tiny", prompt="x", max_tokens=1)

    async def revoke() -> None:
        from cove.tenants.keys import service
        from cove.tenants.principal import Principal, Role, Scope

        db = Database(settings, min_size=0)
        await db.open()
        admin = Principal(
            subject="t",
            username="t",
            tenant_id=None,
            user_id=None,
            roles=frozenset({Role.PLATFORM_ADMIN}),
            scopes=frozenset({Scope.ADMIN_WRITE}),
        )
        await service.revoke(db, admin, world["a"]["bu"].id, world["a"]["dev_key_id"])
        await db.close()

    asyncio.run(revoke())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            client.completions.create(model="cove-tiny", prompt="x", max_tokens=1)
        except openai.AuthenticationError as exc:
            assert isinstance(exc.body, dict)
            assert exc.body["code"] in {"key_revoked", "invalid_api_key"}
            return
        time.sleep(0.1)
    pytest.fail("the revoked key still worked after 5 s")
