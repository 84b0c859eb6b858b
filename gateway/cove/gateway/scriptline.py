"""One pipelined Redis connection that runs one Lua script: the rate limiter's hot path.

Every completion request runs the rate-limit script once. Through redis-py's asyncio client
that call cost ~100 µs of the gateway's CPU (connection-pool lock, pool accounting, retry
wrapper, pure-Python command packing) and the request waited for the reply before it could do
anything else. Here all requests of a gateway process share one connection: a call writes its
EVALSHA at once (packed by hiredis) and gets a future; replies are read by hiredis as they
arrive and handed to the futures in order, which is the order Redis answers one connection's
commands. So the caller can send, do other work (the secret scan) while Redis runs the
script, and only then wait.

Connection failures fail every call in flight with `ScriptUnavailable`; the next call connects
again, at most once per `retry_seconds`, so a Redis outage costs each request one quick refusal
rather than a connection attempt.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

_NOSCRIPT = "NOSCRIPT"


class ScriptUnavailable(Exception):
    """Redis could not run the script (unreachable, timed out, or answered with an error)."""


def connection_options(url: str) -> dict[str, Any]:
    """Where and how to connect, from a `redis://`, `rediss://` or `unix://` URL."""
    parts = urlsplit(url.removeprefix("async+"))
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    options: dict[str, Any] = {
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
    }
    if parts.scheme == "unix":
        options["path"] = parts.path
        options["db"] = int(query.get("db", 0))
        return options
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
    options["host"] = parts.hostname or "localhost"
    options["port"] = parts.port or 6379
    path = parts.path.strip("/")
    options["db"] = int(query.get("db", path or 0))
    if parts.scheme == "rediss":
        context = ssl.create_default_context(cafile=query.get("ssl_ca_certs"))
        if query.get("ssl_cert_reqs", "").lower() in ("none", "cert_none"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        options["ssl"] = context
    return options


class _Replies(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._reader = hiredis.Reader(replyError=ScriptUnavailable, protocolError=OSError)
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        try:
            self._reader.feed(data)
            while (reply := self._reader.gets()) is not False:
                future = self.waiting.popleft()
                if not future.done():  # a caller that timed out no longer waits
                    future.set_result(reply)
        except (OSError, IndexError) as exc:
            self._fail(exc)
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc)

    def _fail(self, exc: BaseException | None) -> None:
        self.closed = True
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(ScriptUnavailable(f"Redis connection lost: {exc}"))


class ScriptLine:
    """Runs `script` on Redis over one pipelined connection."""

    def __init__(
        self,
        url: str,
        script: str,
        *,
        connect_timeout: float = 1.0,
        reply_timeout: float = 1.0,
        retry_seconds: float = 1.0,
    ) -> None:
        self._options = connection_options(url)
        self._script = script
        self._sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
        self._connect_timeout = connect_timeout
        self._reply_timeout = reply_timeout
        self._retry_seconds = retry_seconds
        self._protocol: _Replies | None = None
        self._connecting: asyncio.Future[_Replies] | None = None
        self._retry_at = 0.0

    async def send(self, keys: list[str], args: list[int]) -> asyncio.Future[Any]:
        """Write one script call now and return the future of its reply. Does not suspend when
        the connection is up, so the caller's next statement runs while Redis works."""
        protocol = await self._connected()
        return self._write(protocol, ("EVALSHA", self._sha, len(keys), *keys, *args))

    async def call(self, keys: list[str], args: list[int]) -> Any:
        return await self.result(await self.send(keys, args), keys, args)

    async def result(self, future: asyncio.Future[Any], keys: list[str], args: list[int]) -> Any:
        """The reply of a call made with `send`; a flushed script cache is reloaded once."""
        reply = await self._wait(future)
        if isinstance(reply, ScriptUnavailable) and str(reply).startswith(_NOSCRIPT):
            protocol = await self._connected()
            retry = self._write(protocol, ("EVAL", self._script, len(keys), *keys, *args))
            reply = await self._wait(retry)
        if isinstance(reply, ScriptUnavailable):
            raise reply
        return reply

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()

    def _write(self, protocol: _Replies, command: tuple[Any, ...]) -> asyncio.Future[Any]:
        assert protocol.transport is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        protocol.waiting.append(future)
        protocol.transport.write(hiredis.pack_command(command))
        return future

    async def _wait(self, future: asyncio.Future[Any]) -> Any:
        # On a timeout the future is cancelled; its reply, when it comes, is skipped.
        try:
            async with asyncio.timeout(self._reply_timeout):
                return await future
        except TimeoutError as exc:
            raise ScriptUnavailable("Redis did not answer in time") from exc

    async def _connected(self) -> _Replies:
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            return protocol
        if self._connecting is not None:
            return await asyncio.shield(self._connecting)
        if time.monotonic() < self._retry_at:
            raise ScriptUnavailable("Redis was unreachable moments ago")
        connecting = self._connecting = asyncio.get_running_loop().create_future()
        try:
            protocol = await self._connect()
        except BaseException as exc:
            # Waiters must never be left hanging, also when this caller is cancelled (its
            # client went away) while connecting; only a failed attempt delays the next.
            if isinstance(exc, OSError | TimeoutError | ScriptUnavailable):
                self._retry_at = time.monotonic() + self._retry_seconds
            error = exc if isinstance(exc, ScriptUnavailable) else ScriptUnavailable(str(exc))
            connecting.set_exception(error)
            connecting.exception()  # retrieved: waiters get it through the shield
            self._connecting = None
            if isinstance(exc, OSError | TimeoutError):
                raise error from exc
            raise
        self._protocol = protocol
        connecting.set_result(protocol)
        self._connecting = None
        return protocol

    async def _connect(self) -> _Replies:
        loop = asyncio.get_running_loop()
        o = self._options
        protocol: _Replies | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                if "path" in o:
                    transport, protocol = await loop.create_unix_connection(_Replies, o["path"])
                else:
                    transport, protocol = await loop.create_connection(
                        _Replies, o["host"], o["port"], ssl=o.get("ssl")
                    )
                # uvloop may call connection_made only after create_connection returns.
                protocol.transport = transport
                setup: list[tuple[Any, ...]] = []
                if o["password"] is not None:
                    auth = (o["username"], o["password"]) if o["username"] else (o["password"],)
                    setup.append(("AUTH", *auth))
                if o["db"]:
                    setup.append(("SELECT", o["db"]))
                setup.append(("SCRIPT", "LOAD", self._script))
                futures = [self._write(protocol, command) for command in setup]
                for reply in await asyncio.gather(*futures):
                    if isinstance(reply, ScriptUnavailable):
                        raise reply
        except BaseException:
            if protocol is not None and protocol.transport is not None:
                protocol.transport.close()
            raise
        return protocol
