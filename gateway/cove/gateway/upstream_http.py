"""The gateway's HTTP/1.1 client for model instances: pooled keep-alive connections, a request
written in one call, the response parsed by httptools (the parser uvicorn uses), bodies read
whole or streamed chunk by chunk.

Why not aiohttp: every completion makes one upstream call, and aiohttp spent ~120 µs of the
gateway's CPU on it (URL objects, cookie jar, header multidicts, tracing hooks, timers); this
client spends ~25 µs, measured with the benchmark's upstream. It speaks only what the gateway
needs: POST of a JSON body to an OpenAI-compatible server, over `http://` or `https://`.

Connections are reused while the server keeps them alive. An idle connection is dropped
after `idle_seconds` (below the 5 s keep-alive of uvicorn, which vLLM runs on), and a request
whose reused connection turns out closed before any byte of an answer arrived is sent once
more on a new connection: the server closed it while idle, so it never saw the request.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

# Stop reading from a streaming upstream while this much is waiting for a slow client.
_HIGH_WATER = 1 << 20


class UpstreamConnectError(Exception):
    """The model instance could not be reached; nothing was sent."""


class UpstreamConnectionLost(Exception):
    """The connection broke while a request or its answer was under way."""


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> bytes:
        default = 443 if self.scheme == "https" else 80
        text = self.host if self.port == default else f"{self.host}:{self.port}"
        return text.encode("idna")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one request at a time."""

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.content_type = ""
        self.keep_alive = True
        self.received_any = False
        # Without a length or chunked framing the body runs until the server closes.
        self._framed = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._error: Exception | None = None
        self._headers_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._data: asyncio.Future[None] | None = None
        self._paused = False

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamConnectionLost(f"malformed response from the model instance: {exc}"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._headers_done.done() and not self._framed and exc is None and self._error is None:
            # A body delimited by the end of the connection ends here.
            self.keep_alive = False
            self.on_message_complete()
        if not self._complete:
            reason = f": {exc}" if exc else ""
            self._fail(UpstreamConnectionLost(f"the model instance closed the connection{reason}"))

    # ---- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-type":
            self.content_type = value.decode("latin-1").split(";", 1)[0].strip()
        elif name in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        if not self._headers_done.done():
            self._headers_done.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._complete = True
        self._wake()

    # ---- used by the client --------------------------------------------------------------

    def send(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(head + body)

    async def headers(self) -> None:
        await self._headers_done

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body as it arrives; None at its end."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered <= _HIGH_WATER // 2:
                    self._paused = False
                    assert self.transport is not None
                    self.transport.resume_reading()
                return chunk
            if self._complete:
                return None
            if self._error is not None:
                raise self._error
            self._data = asyncio.get_running_loop().create_future()
            await self._data

    async def read_all(self) -> bytes:
        parts = []
        while (chunk := await self.next_chunk()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    @property
    def reusable(self) -> bool:
        return self._complete and self.keep_alive and not self.closed

    def ready_for_next(self) -> None:
        self._reset()
        self.idle_since = time.monotonic()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _wake(self) -> None:
        if self._data is not None and not self._data.done():
            self._data.set_result(None)

    def _fail(self, error: Exception) -> None:
        self._error = error
        if not self._headers_done.done():
            self._headers_done.set_exception(error)
            self._headers_done.exception()  # retrieved by `headers()`, if anyone waits
        self._wake()


class UpstreamResponse:
    """An answer whose headers have arrived; read the body whole or chunk by chunk, then
    `release()` it (or `close()` to drop the connection, which aborts the generation)."""

    def __init__(self, pool: HttpPool, conn: _Connection) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self.status = conn.status
        self.content_type = conn.content_type

    async def read(self) -> bytes:
        assert self._conn is not None
        try:
            return await self._conn.read_all()
        finally:
            self.release()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        assert self._conn is not None
        conn = self._conn
        while (chunk := await conn.next_chunk()) is not None:
            yield chunk

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.give_back(conn)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()
            self._pool.give_back(conn)


class HttpPool:
    def __init__(
        self,
        *,
        connect_timeout: float,
        max_per_origin: int = 256,
        idle_seconds: float = 4.0,
        user_agent: str = "cove-gateway",
    ) -> None:
        self._connect_timeout = connect_timeout
        self._max = max_per_origin
        self._idle_seconds = idle_seconds
        self._user_agent = user_agent.encode("latin-1")
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._slots: dict[_Origin, asyncio.Semaphore] = {}
        self._origins: dict[str, tuple[_Origin, bytes]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> UpstreamResponse:
        """Send a POST and wait for the answer's headers. Raises UpstreamConnectError when
        nothing could be sent, UpstreamConnectionLost when the connection broke after."""
        origin, target = self._parse(url)
        head = self._head(origin, target, len(body), headers)
        slots = self._slots.get(origin)
        if slots is None:
            slots = self._slots[origin] = asyncio.Semaphore(self._max)
        await slots.acquire()
        conn: _Connection | None = None
        try:
            conn, reused = await self._connection(origin)
            conn.send(head, body)
            try:
                await conn.headers()
            except UpstreamConnectionLost:
                if not reused or conn.received_any:
                    raise
                # Closed by the server while idle: it never saw this request.
                conn.abort()
                conn, _ = await self._connection(origin, fresh=True)
                conn.send(head, body)
                await conn.headers()
        except BaseException:
            # Timed out, cancelled (the client left) or broken: the connection is not reused,
            # and closing it makes the instance drop the request.
            if conn is not None:
                conn.abort()
            slots.release()
            raise
        return UpstreamResponse(self, conn)

    def give_back(self, conn: _Connection) -> None:
        self._slots[conn.origin].release()
        if conn.reusable:
            conn.ready_for_next()
            self._idle.setdefault(conn.origin, []).append(conn)
        else:
            conn.abort()

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.abort()
        self._idle.clear()

    # ---- internals -----------------------------------------------------------------------

    def _parse(self, url: str) -> tuple[_Origin, bytes]:
        found = self._origins.get(url)
        if found is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UpstreamConnectError(f"unsupported upstream URL {url!r}")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            found = (_Origin(parts.scheme, parts.hostname, port), target.encode("latin-1"))
            if len(self._origins) > 10_000:
                self._origins.clear()
            self._origins[url] = found
        return found

    def _head(self, origin: _Origin, target: bytes, length: int, headers: dict[str, str]) -> bytes:
        lines = [
            b"POST " + target + b" HTTP/1.1",
            b"host: " + origin.host_header,
            b"user-agent: " + self._user_agent,
            b"content-length: " + str(length).encode(),
        ]
        for name, value in headers.items():
            lines.append(name.encode("latin-1") + b": " + value.encode("latin-1"))
        return b"\r\n".join(lines) + b"\r\n\r\n"

    async def _connection(
        self, origin: _Origin, *, fresh: bool = False
    ) -> tuple[_Connection, bool]:
        if not fresh:
            idle = self._idle.get(origin)
            now = time.monotonic()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < self._idle_seconds:
                    return conn, True
                conn.abort()
        return await self._connect(origin), False

    async def _connect(self, origin: _Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if origin.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, conn = await loop.create_connection(
                    lambda: _Connection(origin),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context is not None else None,
                )
        except (OSError, TimeoutError) as exc:
            raise UpstreamConnectError(
                f"cannot connect to {origin.host}:{origin.port}: {exc or 'timed out'}"
            ) from exc
        # uvloop may call connection_made only after create_connection returns.
        conn.transport = transport
        return conn
