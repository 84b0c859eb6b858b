"""A suggestion holding a credential never reaches the IDE, streamed or not, and the drop is
audited (rule, user, BU, time — never the secret).

The upstream here is a fake OpenAI-compatible server at the network boundary: the real vLLM
serving the tiny model cannot be made to write a credential on demand, and the point is a
secret split across stream events. Streaming against the real vLLM stays covered by
test_openai_e2e.py and test_streaming_abort.py (which now run through the same guard).
"""

from __future__ import annotations

import asyncio
import secrets
import string
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import openai
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cove.gateway.app import create_app
from cove.gateway.guard import FILTERED, SuggestionGuard
from cove.gateway.policy.secrets import SecretMatch
from cove.gateway.settings import GatewaySettings
from cove.platform.core.db import Database
from tests.conftest import ServerThread
from tests.gateway.conftest import add_deployment


def github_token() -> str:
    alphabet = string.ascii_letters + string.digits
    return "ghp_" + "".join(secrets.choice(alphabet) for _ in range(36))


TOKEN = github_token()
# The secret arrives in three pieces, none of which is a credential on its own.
PIECES = [
    "def connect():\n",
    '    token = "gh',
    TOKEN[2:20],
    TOKEN[20:] + '"\n',
    "    return token\n",
]
SAFE_PIECES = ["def add(a, b):\n", "    return", " a + b\n"]


def _completion_event(index: int, text: str, finish: str | None = None) -> bytes:
    body = {
        "id": "cmpl-fake",
        "object": "text_completion",
        "created": 1,
        "model": "cove-tiny",
        "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _chat_event(text: str, finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "cove-tiny",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


def fake_upstream() -> Starlette:
    """Streams PIECES (or SAFE_PIECES when the prompt says `safe`) one event at a time."""

    async def completions(request: Request) -> Response:
        body = await request.json()
        pieces = SAFE_PIECES if "safe" in body["prompt"] else PIECES
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "cmpl-fake",
                    "object": "text_completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "text": "".join(pieces),
                            "finish_reason": "stop",
                            "logprobs": {"tokens": pieces, "token_logprobs": [-0.1] * len(pieces)},
                        }
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12},
                }
            )

        async def events() -> AsyncIterator[bytes]:
            for n, piece in enumerate(pieces):
                last = n == len(pieces) - 1
                yield _completion_event(0, piece, "stop" if last else None)
                await asyncio.sleep(0.01)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def chat(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            first = {"index": 0, "delta": {"role": "assistant", "content": ""}}
            yield b"data: " + orjson.dumps({"id": "chatcmpl-fake", "choices": [first]}) + b"\n\n"
            for n, piece in enumerate(PIECES):
                yield _chat_event(piece, "stop" if n == len(PIECES) - 1 else None)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )


@pytest.fixture
async def gateway(
    db: Database, world: dict[str, Any], gateway_settings: GatewaySettings
) -> AsyncIterator[ServerThread]:
    with ServerThread(fake_upstream()) as upstream:
        await add_deployment(db, world["a"]["bu"].id, upstream.url)
        with ServerThread(create_app(gateway_settings)) as server:
            yield server


def _client(server: ServerThread, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


async def _drops(db: Database, tenant: uuid.UUID, expected: int) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + 5
    while True:
        async with db.platform() as conn:
            rows = await (
                await conn.execute(
                    "SELECT actor, target, diff, created_at FROM audit_log"
                    " WHERE action = 'policy.drop' AND tenant_id = %s ORDER BY id",
                    (tenant,),
                )
            ).fetchall()
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.2)


async def test_a_secret_split_across_stream_events_is_never_delivered(
    gateway: ServerThread, world: dict[str, Any], db: Database
) -> None:
    client = _client(gateway, world["a"]["dev_key"])
    stream = client.completions.create(
        model="cove-tiny", prompt="def connect", max_tokens=32, stream=True
    )
    chunks = list(stream)
    delivered = "".join(c.choices[0].text for c in chunks if c.choices)
    assert TOKEN not in delivered
    assert "gh" not in delivered.split("token =", 1)[-1]
    # What came before the credential was delivered; nothing of it or after it.
    assert delivered.startswith("def connect():\n    token = ")
    assert "return token" not in delivered
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == FILTERED
    assert finishes.count(FILTERED) == 1

    rows = await _drops(db, world["a"]["bu"].id, 1)
    assert len(rows) == 1
    actor, target, diff, created_at = rows[0]
    assert actor == "a-dev"
    assert target == "completion"
    assert diff["streamed"] is True
    assert diff["findings"][0]["type"] == "github_token"
    assert diff["findings"][0]["rule"]
    assert created_at is not None
    assert TOKEN[4:] not in orjson.dumps(diff).decode()


async def test_a_clean_stream_passes_whole(gateway: ServerThread, world: dict[str, Any]) -> None:
    client = _client(gateway, world["a"]["dev_key"])
    stream = client.completions.create(model="cove-tiny", prompt="safe", stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "".join(SAFE_PIECES)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


async def test_streamed_chat_and_plain_completions_drop_the_secret_too(
    gateway: ServerThread, world: dict[str, Any], db: Database
) -> None:
    client = _client(gateway, world["a"]["dev_key"])
    chat = list(
        client.chat.completions.create(
            model="cove-tiny", messages=[{"role": "user", "content": "connect"}], stream=True
        )
    )
    said = "".join(c.choices[0].delta.content or "" for c in chat if c.choices)
    assert TOKEN[4:] not in said
    assert said.startswith("def connect():")
    assert chat[-1].choices[0].finish_reason == FILTERED

    plain = client.completions.create(model="cove-tiny", prompt="def connect", max_tokens=32)
    assert plain.choices[0].text == ""
    assert plain.choices[0].finish_reason == FILTERED
    assert plain.choices[0].logprobs is None, "the tokens would give the secret away"

    rows = await _drops(db, world["a"]["bu"].id, 2)
    assert [r[2]["streamed"] for r in rows] == [True, False]
    assert all(TOKEN[4:] not in orjson.dumps(r[2]).decode() for r in rows)


# ---- The guard on its own: how a stream is cut ---------------------------------------------


@pytest.fixture
def guard() -> tuple[SuggestionGuard, list[tuple[int, list[SecretMatch]]]]:
    dropped: list[tuple[int, list[SecretMatch]]] = []
    return SuggestionGuard(lambda index, found: dropped.append((index, found))), dropped


def _texts(raw: bytes) -> list[tuple[str, str | None]]:
    out = []
    for line in raw.split(b"\n"):
        if line.startswith(b"data: {"):
            for choice in orjson.loads(line[6:])["choices"]:
                out.append((choice["text"], choice["finish_reason"]))
    return out


def test_the_first_event_passes_at_once_and_words_wait_for_whitespace(
    guard: tuple[SuggestionGuard, list[Any]],
) -> None:
    g, dropped = guard
    first = g.feed(_completion_event(0, "retur"))
    assert _texts(first) == [("", None)], "the first byte must not wait for the word"
    assert _texts(g.feed(_completion_event(0, "n a"))) == [("return ", None)]
    assert _texts(g.feed(_completion_event(0, " + b", "stop"))) == [("a + b", "stop")]
    assert g.feed(b"data: [DONE]\n\n") == b"data: [DONE]\n\n"
    assert dropped == []


def test_events_split_mid_line_and_a_key_block_are_held_until_judged(
    guard: tuple[SuggestionGuard, list[Any]],
) -> None:
    g, dropped = guard
    body = "".join(
        secrets.choice(string.ascii_letters + string.digits + "+/") for _ in range(40 * 4)
    )
    lines = [body[i : i + 40] for i in range(0, len(body), 40)]
    key = "KEY = '''\n-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(lines) + "\n"
    event = _completion_event(0, key[:30]) + _completion_event(0, key[30:])
    out = g.feed(event[:50]) + g.feed(event[50:])
    delivered = "".join(t for t, _ in _texts(out))
    assert "BEGIN" not in delivered
    assert not any(line in delivered for line in lines)
    assert _texts(out)[-1] == ("", FILTERED)
    assert dropped[0][1][0].type == "private_key"
    # Later events of the dropped choice are left out; [DONE] still ends the stream.
    assert b"data:" not in g.feed(_completion_event(0, "more\n"))
    assert g.feed(b"data: [DONE]\n\n").endswith(b"data: [DONE]\n\n")


def test_text_still_held_at_done_is_judged_and_sent_before_it(
    guard: tuple[SuggestionGuard, list[Any]],
) -> None:
    g, _ = guard
    assert _texts(g.feed(_completion_event(1, "x = compute"))) == [("x = ", None)]
    tail = g.feed(b"data: [DONE]\n\n")
    assert _texts(tail) == [("compute", None)]
    assert tail.endswith(b"data: [DONE]\n\n")


def test_an_event_whose_text_is_held_loses_its_logprobs(
    guard: tuple[SuggestionGuard, list[Any]],
) -> None:
    g, _ = guard

    def with_logprobs(text: str) -> bytes:
        body = orjson.loads(_completion_event(0, text)[6:])
        body["choices"][0]["logprobs"] = {"tokens": [text], "token_logprobs": [-0.5]}
        return b"data: " + orjson.dumps(body) + b"\n\n"

    whole = orjson.loads(g.feed(with_logprobs("x = 1\n")).split(b"\n")[0][6:])
    assert whole["choices"][0]["logprobs"]["tokens"] == ["x = 1\n"]
    held = orjson.loads(g.feed(with_logprobs("tok")).split(b"\n")[0][6:])
    assert held["choices"][0]["text"] == ""
    assert held["choices"][0]["logprobs"] is None
