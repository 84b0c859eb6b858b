"""Forwarding to model instances: pooled connections, streaming without buffering, and
aborting the upstream request as soon as the client goes away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
from opentelemetry import propagate
from starlette.types import Receive, Scope, Send

from cove.gateway.guard import SuggestionGuard
from cove.gateway.served import SseTap
from cove.gateway.upstream_http import (
    HttpPool,
    UpstreamConnectError,
    UpstreamConnectionLost,
    UpstreamResponse,
)
from cove.platform.core.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable

_JSON_HEADERS = {"content-type": "application/json"}


def _headers() -> dict[str, str]:
    # W3C trace context, so vLLM's spans (when it traces) join the gateway's trace.
    carrier = dict(_JSON_HEADERS)
    propagate.inject(carrier)
    return carrier


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    status: int
    body: bytes
    content_type: str


class Upstream:
    def __init__(self, pool: HttpPool, first_byte_timeout: float) -> None:
        self._pool = pool
        self._first_byte_timeout = first_byte_timeout

    async def post_json(self, url: str, payload: dict[str, object]) -> UpstreamReply:
        _, reply = await self._post(url, payload, stream=False)
        assert reply is not None
        return reply

    async def open_stream(
        self, url: str, payload: dict[str, object]
    ) -> tuple[UpstreamResponse | None, UpstreamReply | None]:
        """Open a streaming request. Returns the live response, or the upstream's error reply."""
        return await self._post(url, payload, stream=True)

    async def _post(
        self, url: str, payload: dict[str, object], *, stream: bool
    ) -> tuple[UpstreamResponse | None, UpstreamReply | None]:
        """POST `payload`; a successful streamed answer is returned live, any other read whole.
        The first-byte timeout covers everything up to that point."""
        try:
            async with asyncio.timeout(self._first_byte_timeout):
                resp = await self._pool.post(url, orjson.dumps(payload), _headers())
                if stream and resp.status == 200:
                    return resp, None
                body = await resp.read()
                return None, UpstreamReply(resp.status, body, resp.content_type)
        except TimeoutError as exc:
            raise UpstreamTimeout("The model instance did not answer in time") from exc
        except (UpstreamConnectError, UpstreamConnectionLost) as exc:
            raise UpstreamUnavailable(
                "The model instance is unreachable", code="upstream_unavailable"
            ) from exc


class StreamRelay:
    """The ASGI response of a streamed completion: the upstream's bytes (through `chunks`, see
    `relay`) go out as they arrive, after headers sent at once.

    A client that disconnects is noticed by one watcher task reading the ASGI `receive`
    channel; it closes the upstream response, which ends `chunks` and makes the instance abort
    the generation. (Starlette's StreamingResponse does the same with an anyio task group per
    response, which costs more than the rest of a streamed request's set-up.)"""

    def __init__(
        self,
        upstream: UpstreamResponse,
        chunks: AsyncIterator[bytes],
        headers: dict[str, str],
    ) -> None:
        self._upstream = upstream
        self._chunks = chunks
        self._headers = [
            (b"content-type", b"text/event-stream"),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self._headers})
        watcher = asyncio.get_running_loop().create_task(self._close_on_disconnect(receive))
        try:
            async for chunk in self._chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            # Ends the generator (and its bookkeeping) if the loop above was interrupted, and
            # drops the upstream connection if the generator never got to release it.
            await self._chunks.aclose()  # type: ignore[attr-defined]
            self._upstream.close()

    async def _close_on_disconnect(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._upstream.close()
                return


async def relay(
    resp: UpstreamResponse,
    tap: SseTap | None = None,
    guard: SuggestionGuard | None = None,
) -> AsyncIterator[bytes]:
    """Yield upstream bytes as they arrive (through `guard`, which holds back what could still
    become a credential). If the client disconnects, this generator is cancelled and the
    upstream connection is closed (not returned to the pool), which makes vLLM abort the
    generation."""
    finished = False
    try:
        async for chunk in resp.iter_chunks():
            if guard is not None:
                chunk = guard.feed(chunk)
                if not chunk:
                    continue
            if tap is not None:
                tap.feed(chunk)
            yield chunk
        if guard is not None:
            rest = guard.finish()
            if rest:
                if tap is not None:
                    tap.feed(rest)
                yield rest
        finished = True
    except UpstreamConnectionLost as exc:
        err = UpstreamError("The model instance failed mid-stream", code="upstream_stream_error")
        del exc
        yield b"data: " + orjson.dumps(err.to_openai()) + b"\n\n"
        yield b"data: [DONE]\n\n"
    finally:
        if tap is not None:
            tap.finish(cancelled=not finished)
        if finished:
            resp.release()
        else:
            resp.close()
