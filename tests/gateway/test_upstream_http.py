"""The gateway's upstream HTTP client against a real local HTTP server whose behaviour each
test scripts (keep-alive, chunked streams, connections closed at awkward moments)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from cove.gateway.upstream_http import (
    HttpPool,
    UpstreamConnectError,
    UpstreamConnectionLost,
)
from cove.platform.local.procs import free_port

Handler = Callable[["Exchange"], Awaitable[None]]


class Exchange:
    """One request read off a server connection, and the writer to answer it."""

    def __init__(
        self,
        head: bytes,
        body: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.head = head
        self.body = body
        self.reader = reader
        self.writer = writer

    async def client_gone(self) -> bool:
        """Wait until the client closes its end; True if it did within 5 s."""
        try:
            async with asyncio.timeout(5):
                while await self.reader.read(1024):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    async def reply(self, body: bytes, *, extra: bytes = b"") -> None:
        self.writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\n"
            + extra
            + b"content-length: %d\r\n\r\n" % len(body)
            + body
        )
        await self.writer.drain()


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[Exchange] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1/completions"

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                exchange = Exchange(head, await reader.readexactly(length), reader, writer)
                self.requests.append(exchange)
                await self.handler(exchange)
                if writer.is_closing():
                    return
        finally:
            self.open -= 1
            writer.close()


def answer_and_close(raw: bytes) -> Handler:
    """A server that writes `raw` as its whole answer, then closes the connection."""

    async def handler(exchange: Exchange) -> None:
        exchange.writer.write(raw)
        await exchange.writer.drain()
        exchange.writer.close()

    return handler


async def settled(seen: list[bool]) -> list[bool]:
    """`seen` once a handler has appended to it (or after 5 s)."""
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.05)
    return seen


async def echo(exchange: Exchange) -> None:
    await exchange.reply(b'{"echo": ' + exchange.body + b"}")


@pytest.fixture
async def pool() -> AsyncIterator[HttpPool]:
    pool = HttpPool(connect_timeout=2.0)
    yield pool
    pool.close()


async def test_requests_reuse_one_keep_alive_connection(pool: HttpPool) -> None:
    async with Server(echo) as server:
        for i in range(20):
            resp = await pool.post(server.url, b'{"n": %d}' % i, {"x-trace": "t"})
            assert resp.status == 200
            assert resp.content_type == "application/json"
            assert await resp.read() == b'{"echo": {"n": %d}}' % i
    assert server.connections == 1
    head = server.requests[0].head.decode()
    assert head.startswith("POST /v1/completions HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{server.port}\r\n" in head
    assert "x-trace: t\r\n" in head


async def test_a_chunked_stream_arrives_piece_by_piece(pool: HttpPool) -> None:
    gate = asyncio.Event()

    async def stream(exchange: Exchange) -> None:
        w = exchange.writer
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        w.write(b"transfer-encoding: chunked\r\n\r\n")
        w.write(b"7\r\ndata: 1\r\n")
        await w.drain()
        await gate.wait()  # the second piece only after the client has the first
        w.write(b"7\r\ndata: 2\r\n0\r\n\r\n")
        await w.drain()

    async with Server(stream) as server:
        resp = await pool.post(server.url, b"{}", {})
        chunks = resp.iter_chunks()
        assert await anext(chunks) == b"data: 1"
        gate.set()
        assert [c async for c in chunks] == [b"data: 2"]
        resp.release()
        # The connection went back to the pool and carries the next request.
        gate.clear()
        second = await pool.post(server.url, b"{}", {})
        gate.set()
        assert b"".join([c async for c in second.iter_chunks()]) == b"data: 1data: 2"
        second.release()
    assert server.connections == 1


async def test_an_idle_connection_the_server_closed_is_replaced_once(pool: HttpPool) -> None:
    async def answer_then_hang_up(exchange: Exchange) -> None:
        await exchange.reply(b"{}")
        exchange.writer.close()  # keep-alive was promised; the server closes anyway

    async with Server(answer_then_hang_up) as server:
        assert (await (await pool.post(server.url, b"{}", {})).read()) == b"{}"
        await asyncio.sleep(0.05)
        # The pool may not have noticed the close yet; either way the request goes through.
        assert (await (await pool.post(server.url, b"{}", {})).read()) == b"{}"
    assert server.connections == 2
    assert len(server.requests) == 2


async def test_connections_idle_too_long_are_not_reused() -> None:
    pool = HttpPool(connect_timeout=2.0, idle_seconds=0.05)
    async with Server(echo) as server:
        await (await pool.post(server.url, b"1", {})).read()
        await asyncio.sleep(0.1)
        await (await pool.post(server.url, b"2", {})).read()
    pool.close()
    assert server.connections == 2


async def test_a_request_the_server_saw_is_not_sent_twice(pool: HttpPool) -> None:
    async def hang_up(exchange: Exchange) -> None:
        exchange.writer.close()

    async with Server(hang_up) as server:
        with pytest.raises(UpstreamConnectionLost):
            await pool.post(server.url, b"{}", {})
    assert len(server.requests) == 1


async def test_connection_close_answers_are_not_reused(pool: HttpPool) -> None:
    async def close_after(exchange: Exchange) -> None:
        await exchange.reply(b"{}", extra=b"connection: close\r\n")

    async with Server(close_after) as server:
        for _ in range(3):
            await (await pool.post(server.url, b"{}", {})).read()
    assert server.connections == 3


async def test_an_unreachable_instance_is_a_connect_error(pool: HttpPool) -> None:
    with pytest.raises(UpstreamConnectError):
        await pool.post(f"http://127.0.0.1:{free_port()}/v1/completions", b"{}", {})
    with pytest.raises(UpstreamConnectError, match="unsupported"):
        await pool.post("ftp://127.0.0.1/x", b"{}", {})


async def test_a_body_cut_short_is_an_error(pool: HttpPool) -> None:
    short = answer_and_close(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
    async with Server(short) as server:
        resp = await pool.post(server.url, b"{}", {})
        with pytest.raises(UpstreamConnectionLost):
            await resp.read()


async def test_a_malformed_answer_is_an_error(pool: HttpPool) -> None:
    async def garbage(exchange: Exchange) -> None:
        exchange.writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await exchange.writer.drain()

    async with Server(garbage) as server:
        with pytest.raises(UpstreamConnectionLost, match="malformed"):
            await pool.post(server.url, b"{}", {})


async def test_closing_a_stream_closes_the_connection(pool: HttpPool) -> None:
    gone: list[bool] = []

    async def one_chunk_then_wait(exchange: Exchange) -> None:
        w = exchange.writer
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\ntick\n\r\n")
        await w.drain()
        gone.append(await exchange.client_gone())

    async with Server(one_chunk_then_wait) as server:
        resp = await pool.post(server.url, b"{}", {})
        assert await anext(resp.iter_chunks()) == b"tick\n"
        resp.close()  # what the gateway does when the IDE goes away
        assert await settled(gone) == [True]


async def test_concurrent_requests_stay_within_the_pool_limit() -> None:
    pool = HttpPool(connect_timeout=2.0, max_per_origin=2)

    async def slow(exchange: Exchange) -> None:
        await asyncio.sleep(0.05)
        await exchange.reply(b"{}")

    async with Server(slow) as server:

        async def one() -> bytes:
            return await (await pool.post(server.url, b"{}", {})).read()

        assert await asyncio.gather(*(one() for _ in range(6))) == [b"{}"] * 6
    pool.close()
    assert server.most_open <= 2
    assert len(server.requests) == 6


async def test_a_cancelled_request_drops_its_connection(pool: HttpPool) -> None:
    gone: list[bool] = []

    async def never_answer(exchange: Exchange) -> None:
        gone.append(await exchange.client_gone())

    async with Server(never_answer) as server:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await pool.post(server.url, b"{}", {})
        assert await settled(gone) == [True]


async def test_a_body_delimited_by_the_end_of_the_connection(pool: HttpPool) -> None:
    until_close = answer_and_close(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")
    async with Server(until_close) as server:
        resp = await pool.post(server.url, b"{}", {})
        assert await resp.read() == b"all of it"
        assert await (await pool.post(server.url, b"{}", {})).read() == b"all of it"
    assert server.connections == 2
