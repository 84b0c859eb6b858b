"""The rate limiter's pipelined script connection, against a real Redis server."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
import redis

from cove.gateway.scriptline import ScriptLine, ScriptUnavailable, connection_options
from cove.platform.local.procs import free_port

# Echoes its call back, so a reply shows which call it answers; counts calls in a key.
ECHO = "redis.call('incr', KEYS[1]) return ARGV[1] .. ':' .. redis.call('get', KEYS[1])"


def _db_url(redis_url: str, db: int) -> str:
    return redis_url.rsplit("/", 1)[0] + f"/{db}"


@pytest.fixture
def line_url(redis_url: str) -> Iterator[str]:
    url = _db_url(redis_url, 7)
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


async def test_concurrent_calls_get_their_own_replies_in_order(line_url: str) -> None:
    line = ScriptLine(line_url, ECHO)
    try:
        replies = await asyncio.gather(*(line.call(["calls"], [i]) for i in range(500)))
    finally:
        await line.close()
    # Each call got the reply to its own argument, and Redis ran them in the order sent.
    assert [r.decode() for r in replies] == [f"{i}:{i + 1}" for i in range(500)]
    assert redis.Redis.from_url(line_url).get("calls") == b"500"


async def test_send_returns_before_the_reply_and_the_reply_comes_later(line_url: str) -> None:
    line = ScriptLine(line_url, ECHO)
    try:
        await line.call(["calls"], [0])  # connected
        future = await line.send(["calls"], [1])
        assert not future.done()
        assert (await line.result(future, ["calls"], [1])) == b"1:2"
    finally:
        await line.close()


async def test_the_url_database_is_used(line_url: str, redis_url: str) -> None:
    line = ScriptLine(line_url, ECHO)
    try:
        await line.call(["only-in-7"], [1])
    finally:
        await line.close()
    assert redis.Redis.from_url(line_url).get("only-in-7") == b"1"
    assert redis.Redis.from_url(_db_url(redis_url, 0)).get("only-in-7") is None


async def test_a_flushed_script_cache_is_reloaded(line_url: str) -> None:
    line = ScriptLine(line_url, ECHO)
    try:
        await line.call(["calls"], [1])
        redis.Redis.from_url(line_url).script_flush()
        assert (await line.call(["calls"], [2])) == b"2:2"
        assert (await line.call(["calls"], [3])) == b"3:3"
    finally:
        await line.close()


async def test_a_script_error_is_raised_not_returned(line_url: str) -> None:
    line = ScriptLine(line_url, "return redis.call('incr', KEYS[1])")
    redis.Redis.from_url(line_url).set("text", "not a number")
    try:
        with pytest.raises(ScriptUnavailable, match="not an integer"):
            await line.call(["text"], [])
        # The connection stays usable after an error reply.
        assert await line.call(["n"], []) == 1
    finally:
        await line.close()


async def _first_failure(line: ScriptLine) -> ScriptUnavailable | None:
    # The loss is seen on the next read or write.
    for i in range(50):
        try:
            await line.call(["calls"], [i])
        except ScriptUnavailable as exc:
            return exc
        await asyncio.sleep(0.01)
    return None


async def test_a_killed_connection_fails_calls_in_flight_and_reconnects(line_url: str) -> None:
    line = ScriptLine(line_url, ECHO)
    admin = redis.Redis.from_url(line_url)
    try:
        await line.call(["calls"], [0])
        # Kill our connection (not the admin's) from the server side.
        killed = admin.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        assert await _first_failure(line) is not None
        assert (await line.call(["calls"], [2])).decode().startswith("2:")
    finally:
        await line.close()
        admin.close()


async def test_unreachable_redis_fails_fast_and_is_retried_after_a_pause() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    line = ScriptLine(url, ECHO, retry_seconds=0.3)
    started = time.perf_counter()
    with pytest.raises(ScriptUnavailable):
        await line.call(["k"], [1])
    # Within the pause no new connection is tried: the refusal is immediate.
    with pytest.raises(ScriptUnavailable, match="moments ago"):
        await line.call(["k"], [1])
    assert time.perf_counter() - started < 0.3
    await asyncio.sleep(0.35)
    with pytest.raises(ScriptUnavailable) as tried:
        await line.call(["k"], [1])
    assert "moments ago" not in str(tried.value)


async def test_a_server_that_never_answers_times_out() -> None:
    # A listening socket that accepts and stays silent: a hung Redis, at the network boundary.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    line = ScriptLine(f"redis://127.0.0.1:{port}/0", ECHO, connect_timeout=0.2, reply_timeout=0.2)
    try:
        started = time.perf_counter()
        with pytest.raises(ScriptUnavailable):
            await line.call(["k"], [1])
        assert time.perf_counter() - started < 2
    finally:
        server.close()
        await line.close()


def test_connection_options_from_urls() -> None:
    assert connection_options("redis://:s3cret@cache:6380/2") == {
        "username": None,
        "password": "s3cret",
        "host": "cache",
        "port": 6380,
        "db": 2,
    }
    assert connection_options("async+redis://u:p%40ss@cache")["password"] == "p@ss"
    assert connection_options("unix:///run/redis.sock?db=3") == {
        "username": None,
        "password": None,
        "path": "/run/redis.sock",
        "db": 3,
    }
    assert "ssl" in connection_options("rediss://cache:6379/0")
    with pytest.raises(ValueError, match="unsupported"):
        connection_options("memcached://cache")


async def test_a_caller_cancelled_while_connecting_does_not_strand_the_others() -> None:
    # A silent server keeps the first caller connecting; it is cancelled (its client left).
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    line = ScriptLine(f"redis://127.0.0.1:{port}/0", ECHO, connect_timeout=5)
    try:
        first = asyncio.ensure_future(line.call(["k"], [1]))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(line.call(["k"], [2]))
        await asyncio.sleep(0.05)
        first.cancel()
        with pytest.raises(ScriptUnavailable):
            await asyncio.wait_for(second, 2)
        with pytest.raises(asyncio.CancelledError):
            await first
    finally:
        server.close()
        await line.close()
