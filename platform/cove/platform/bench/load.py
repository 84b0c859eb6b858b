"""The load generator: one target, one scenario, run in its own process.

Two ways to drive a target:

- `rate` (open loop): request *i* is due at `start + i / rate`, whatever happened to the
  requests before it, and its latency counts from that due time, not from when it was sent.
  A slow target therefore cannot slow the generator down and hide its own queueing
  ("coordinated omission"). Due times come from a ticker thread sleeping with `time.sleep`
  (microsecond resolution); the event loops' own timers are millisecond-grained, which would
  add up to a millisecond of jitter to every sample.
- `concurrency` (closed loop): N workers, each sending its next request when the previous one
  finished; latency counts from the send. Optionally a fixed number of requests instead of a
  duration (the vLLM smoke run).

Latency is the full response for plain requests and the first body chunk for streams (time to
first byte; the whole stream is still read and checked for `[DONE]`). The first `warmup`
seconds (or `warmup_requests`) are sent but not counted.

Run: `python -m cove.platform.bench.load < specs.jsonl` prints one JSON result per spec.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson


@dataclass(frozen=True)
class LoadSpec:
    url: str
    body: bytes
    headers: dict[str, str]
    stream: bool = False
    mode: str = "rate"  # "rate" or "concurrency"
    rate: float = 300.0
    concurrency: int = 8
    duration: float = 15.0
    warmup: float = 2.0
    # Closed loop only: stop after this many counted requests instead of after `duration`.
    requests: int | None = None
    warmup_requests: int = 0
    timeout: float = 10.0
    max_connections: int = 512

    def to_json(self) -> bytes:
        data = asdict(self)
        data["body"] = self.body.decode()
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes) -> LoadSpec:
        data = orjson.loads(raw)
        data["body"] = data["body"].encode()
        return cls(**data)


@dataclass
class Percentiles:
    p50: float
    p90: float
    p95: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, samples_s: list[float]) -> Percentiles | None:
        """Percentiles in milliseconds of samples in seconds."""
        if not samples_s:
            return None
        ordered = sorted(samples_s)
        return cls(
            p50=_ms(percentile(ordered, 50)),
            p90=_ms(percentile(ordered, 90)),
            p95=_ms(percentile(ordered, 95)),
            p99=_ms(percentile(ordered, 99)),
            max=_ms(ordered[-1]),
            mean=_ms(sum(ordered) / len(ordered)),
        )


@dataclass
class LoadSamples:
    """The raw outcome of one run; runs of the same target and scenario add up."""

    # Counted requests (after warm-up) and their outcomes.
    sent: int = 0
    ok: int = 0
    timeouts: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    # Seconds. Plain requests: full response. Streams: first body chunk (time to first byte);
    # a timed-out request counts at the timeout, a lower bound of its latency.
    latency: list[float] = field(default_factory=list)
    # Streams only: until `[DONE]`.
    total: list[float] = field(default_factory=list)
    # Open loop: how late the generator started each request after its due time.
    lag: list[float] = field(default_factory=list)
    # Length of the counted part of the run, for the achieved rate.
    window: float = 0.0
    # Warm-up requests that succeeded (they reach the target like any other).
    warm_ok: int = 0

    @property
    def errors(self) -> int:
        return sum(self.error_kinds.values()) + self.timeouts

    def add(self, other: LoadSamples) -> None:
        self.sent += other.sent
        self.ok += other.ok
        self.timeouts += other.timeouts
        for kind, count in other.error_kinds.items():
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + count
        self.latency.extend(other.latency)
        self.total.extend(other.total)
        self.lag.extend(other.lag)
        self.window += other.window
        self.warm_ok += other.warm_ok

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> LoadSamples:
        return cls(**orjson.loads(raw))


def percentile(ordered: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks of an already sorted list."""
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class _Driver:
    def __init__(self, spec: LoadSpec, session: aiohttp.ClientSession) -> None:
        self.spec = spec
        self.session = session
        self.tally = LoadSamples()
        self.errors: Counter[str] = Counter()

    async def one(self, due: float, counted: bool) -> None:
        """One request; latency from `due` (open loop: the due time; closed loop: the send)."""
        spec = self.spec
        tally = self.tally
        if counted:
            tally.sent += 1
            tally.lag.append(time.perf_counter() - due)
        first: float | None = None
        try:
            async with asyncio.timeout(max(0.001, due + spec.timeout - time.perf_counter())):
                async with self.session.post(spec.url, data=spec.body, headers=spec.headers) as r:
                    if spec.stream:
                        chunk = await r.content.readany()
                        first = time.perf_counter()
                        tail = chunk[-64:]
                        async for chunk in r.content.iter_any():
                            tail = (tail + chunk)[-64:]
                        good = r.status == 200 and b"[DONE]" in tail
                    else:
                        body = await r.read()
                        good = r.status == 200 and b'"choices"' in body
                    done = time.perf_counter()
                    status = r.status
        except TimeoutError:
            if counted:
                tally.timeouts += 1
                # A lower bound: the request had waited this long when it was given up.
                tally.latency.append(spec.timeout)
            return
        except (aiohttp.ClientError, OSError) as exc:
            if counted:
                self.errors[type(exc).__name__] += 1
            return
        if not counted:
            if good:
                tally.warm_ok += 1
            return
        if not good:
            self.errors[f"http_{status}" if status != 200 else "bad_body"] += 1
            return
        tally.ok += 1
        if spec.stream:
            assert first is not None
            tally.latency.append(first - due)
            tally.total.append(done - due)
        else:
            tally.latency.append(done - due)

    async def open_loop(self) -> float:
        spec = self.spec
        loop = asyncio.get_running_loop()
        interval = 1.0 / spec.rate
        warm = int(spec.warmup * spec.rate)
        total = warm + int(spec.duration * spec.rate)
        tasks: set[asyncio.Task[None]] = set()
        finished = asyncio.Event()
        stop = threading.Event()

        def fire(index: int, due: float) -> None:
            task = loop.create_task(self.one(due, index >= warm))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if index == total - 1:
                finished.set()

        start = time.perf_counter() + 0.05

        def ticker() -> None:
            for index in range(total):
                due = start + index * interval
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                if stop.is_set():
                    return
                loop.call_soon_threadsafe(fire, index, due)

        thread = threading.Thread(target=ticker, name="cove-bench-ticker", daemon=True)
        thread.start()
        try:
            if total:
                await finished.wait()
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            stop.set()
            thread.join()
        return spec.duration

    async def closed_loop(self) -> float:
        spec = self.spec
        warm_until = time.perf_counter() + spec.warmup
        end = warm_until + spec.duration
        budget = spec.requests
        warm_left = spec.warmup_requests
        counted_started: list[float] = []

        async def worker() -> None:
            nonlocal budget, warm_left
            while True:
                now = time.perf_counter()
                if budget is None:
                    if now >= end:
                        return
                    counted = now >= warm_until
                elif warm_left > 0:
                    warm_left -= 1
                    counted = False
                elif budget > 0:
                    budget -= 1
                    counted = True
                else:
                    return
                if counted:
                    counted_started.append(now)
                await self.one(now, counted)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
        if spec.requests is None:
            return spec.duration
        first = counted_started[0] if counted_started else began
        return max(1e-9, time.perf_counter() - first)

    def result(self, window: float) -> LoadSamples:
        self.tally.error_kinds = dict(self.errors)
        self.tally.window = window
        return self.tally


async def run_load(spec: LoadSpec) -> LoadSamples:
    if spec.mode not in ("rate", "concurrency"):
        raise ValueError(f"unknown mode {spec.mode!r}")
    connector = aiohttp.TCPConnector(
        limit=spec.max_connections, limit_per_host=0, keepalive_timeout=60
    )
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=False,
    ) as session:
        driver = _Driver(spec, session)
        window = await (driver.open_loop() if spec.mode == "rate" else driver.closed_loop())
        return driver.result(window)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main() -> None:
    """One spec per line on stdin, one result per line on stdout, until stdin closes: one
    process serves a whole benchmark, so slices do not pay for interpreter start-up. The pipes
    are read and written unbuffered, so a line is never left half in a buffer."""
    # The ticker thread needs the GIL promptly when it wakes; the default 5 ms switch interval
    # would let a busy event loop delay due requests by that much.
    sys.setswitchinterval(0.0005)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is part of the gateway extra
        runner: Any = asyncio.run
    else:
        runner = uvloop.run
    pending = b""
    while chunk := os.read(0, 1 << 16):
        pending += chunk
        while b"\n" in pending:
            line, _, pending = pending.partition(b"\n")
            if line.strip():
                result: LoadSamples = runner(run_load(LoadSpec.from_json(line)))
                _write_all(1, result.to_json() + b"\n")


if __name__ == "__main__":
    main()
