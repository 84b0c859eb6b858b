"""A fixed-latency OpenAI-compatible upstream for overhead measurements.

It answers `/v1/completions` and `/v1/chat/completions` (plain and `stream: true`) after a
fixed delay, plus `/v1/models`, `/health` and `/stats` (request counts per path, so a run can
show which upstream API a proxy really called). It is a bare asyncio protocol on uvloop with
httptools parsing, not a web framework: the upstream must cost next to nothing, or its own
jitter would be charged to whatever sits in front of it. Requests on one connection must not
be pipelined (no client used here does).

Run: `python -m cove.platform.bench.responder --port 9000 --latency-ms 20`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import httptools
import orjson

_COMPLETION_TEXT = "\n    return self._cache.get(key, default)\n"
_PIECES = ("\n    return", " self._cache", ".get(key,", " default)\n")


@dataclass(frozen=True, slots=True)
class ResponderConfig:
    latency_s: float = 0.020
    # A stream sends its first chunk after `latency_s`, then one chunk every `chunk_gap_s`.
    stream_chunks: int = 4
    chunk_gap_s: float = 0.002
    prompt_tokens: int = 1536


def _status_line(status: int) -> bytes:
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"Error")
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


def _json_response(status: int, body: bytes, keep_alive: bool) -> bytes:
    head = (
        _status_line(status)
        + b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
        + (b"" if keep_alive else b"connection: close\r\n")
        + b"\r\n"
    )
    return head + body


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Responder:
    """What the server answers; shared by every connection."""

    def __init__(self, config: ResponderConfig) -> None:
        self.config = config
        self.counts: Counter[str] = Counter()
        self._serial = 0

    def _next_id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}-bench-{self._serial}"

    def completion(self, chat: bool, model: str) -> bytes:
        usage = {
            "prompt_tokens": self.config.prompt_tokens,
            "completion_tokens": 16,
            "total_tokens": self.config.prompt_tokens + 16,
        }
        choice: dict[str, object]
        if chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": _COMPLETION_TEXT},
                "finish_reason": "length",
            }
        else:
            choice = {
                "index": 0,
                "text": _COMPLETION_TEXT,
                "logprobs": None,
                "finish_reason": "length",
            }
        return orjson.dumps(
            {
                "id": self._next_id("chatcmpl" if chat else "cmpl"),
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
        )

    def stream_events(self, chat: bool, model: str) -> list[bytes]:
        ident = self._next_id("chatcmpl" if chat else "cmpl")
        created = int(time.time())
        events: list[bytes] = []
        pieces = [_PIECES[i % len(_PIECES)] for i in range(max(1, self.config.stream_chunks))]
        last = len(pieces) - 1
        for index, piece in enumerate(pieces):
            finish = "length" if index == last else None
            choice: dict[str, object]
            if chat:
                delta: dict[str, str] = {"content": piece}
                if index == 0:
                    delta["role"] = "assistant"
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish}
            payload = orjson.dumps(
                {
                    "id": ident,
                    "object": "chat.completion.chunk" if chat else "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [choice],
                }
            )
            events.append(b"data: " + payload + b"\n\n")
        events[-1] += b"data: [DONE]\n\n"
        return events


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n"
)


class _Connection(asyncio.Protocol):
    def __init__(self, responder: Responder, loop: asyncio.AbstractEventLoop) -> None:
        self._responder = responder
        self._loop = loop
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._timers: set[asyncio.TimerHandle] = set()

    # ---- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(_json_response(400, b'{"error":"bad request"}', keep_alive=False))
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._transport = None

    # ---- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        keep_alive = self._parser.should_keep_alive()
        method = self._parser.get_method()
        path = self._url.split(b"?", 1)[0].decode("latin-1")
        self._responder.counts[path] += 1
        if method == b"POST" and path.endswith("/completions"):
            self._complete(path.endswith("/chat/completions"), b"".join(self._body), keep_alive)
        elif path in ("/health", "/v1/health", "/healthz"):
            self._write(_json_response(200, b'{"status":"ok"}', keep_alive))
        elif path.endswith("/models"):
            body = orjson.dumps(
                {
                    "object": "list",
                    "data": [{"id": "bench-model", "object": "model", "owned_by": "cove-bench"}],
                }
            )
            self._write(_json_response(200, body, keep_alive))
        elif path == "/stats":
            self._write(_json_response(200, orjson.dumps(dict(self._responder.counts)), True))
        else:
            self._write(_json_response(404, b'{"error":"not found"}', keep_alive))
        if not keep_alive:
            self._later(self._responder.config.latency_s + 1.0, self._close)

    # ---- answering -------------------------------------------------------------------

    def _complete(self, chat: bool, raw: bytes, keep_alive: bool) -> None:
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._write(_json_response(400, b'{"error":"invalid json"}', keep_alive))
            return
        if not isinstance(request, dict):
            self._write(_json_response(400, b'{"error":"not an object"}', keep_alive))
            return
        model = str(request.get("model") or "bench-model")
        config = self._responder.config
        if request.get("stream") is True:
            events = self._responder.stream_events(chat, model)
            head = _STREAM_HEAD + (b"" if keep_alive else b"connection: close\r\n") + b"\r\n"
            self._later(config.latency_s, self._stream_step, head, events, 0)
        else:
            response = _json_response(200, self._responder.completion(chat, model), keep_alive)
            self._later(config.latency_s, self._write, response)

    def _stream_step(self, prefix: bytes, events: list[bytes], index: int) -> None:
        data = prefix + _chunk(events[index])
        if index == len(events) - 1:
            self._write(data + b"0\r\n\r\n")
            return
        self._write(data)
        self._later(self._responder.config.chunk_gap_s, self._stream_step, b"", events, index + 1)

    def _later(self, delay: float, callback: Callable[..., object], *args: object) -> None:
        timers = self._timers

        def fire() -> None:
            timers.discard(handle)
            callback(*args)

        handle = self._loop.call_later(delay, fire)
        timers.add(handle)

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def serve(host: str, port: int, config: ResponderConfig) -> None:
    loop = asyncio.get_running_loop()
    responder = Responder(config)
    server = await loop.create_server(
        lambda: _Connection(responder, loop), host, port, reuse_address=True, backlog=4096
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fixed-latency OpenAI-compatible responder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--stream-chunks", type=int, default=4)
    parser.add_argument("--chunk-gap-ms", type=float, default=2.0)
    args = parser.parse_args(argv)
    config = ResponderConfig(
        latency_s=args.latency_ms / 1000,
        stream_chunks=args.stream_chunks,
        chunk_gap_s=args.chunk_gap_ms / 1000,
    )
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port, config))
    except ImportError:  # pragma: no cover - uvloop is part of the gateway extra
        asyncio.run(serve(args.host, args.port, config))


if __name__ == "__main__":
    main()
