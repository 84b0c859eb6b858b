"""`cove bench analytics`: seed usage events through the gateway's batcher, roll them up, and
time the dashboard queries.

Everything runs against a throw-away PostgreSQL cluster made for the run (never the user's
database): events are generated in time order across BUs, users, languages, IDEs and model
versions with realistic funnels (served → shown, re-rendered → accepted in full or in part →
retained, or rejected; chat with applied and discarded edits), emitted into the gateway's
`EventSink` with its `postgres_writer` (COPY into a staging table, then an idempotent insert),
then `analytics.rollup` runs over the whole period and the metrics API's service functions are
called the way the console calls them.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cove.gateway.events import EventSink, UsageEvent, postgres_writer
from cove.platform.analytics import repository, service
from cove.platform.analytics.schemas import MetricsQuery
from cove.platform.core import migrate
from cove.platform.core.db import Database, SyncDatabase
from cove.platform.core.settings import CoveSettings
from cove.platform.local.postgres import LocalPostgres
from cove.tenants.principal import Principal, Role, Scope

LANGUAGES = ("python", "typescript", "java", "go", "rust", "kotlin", "csharp", "sql")
IDES = ("vscode/1.95", "jetbrains/2024.2", "neovim/0.10")
KINDS = ("full", "full", "full", "full", "full", "full", "full", "line", "line", "word")
INGEST_TARGET = 20_000.0
QUERY_P95_TARGET_MS = 150.0


@dataclass(frozen=True)
class BenchConfig:
    events: int = 10_000_000
    bus: int = 4
    users_per_bu: int = 250
    days: int = 28
    batch_size: int = 5000
    writers: int = 2
    query_rounds: int = 10
    seed: int = 7


@dataclass
class BenchResult:
    events: int = 0
    events_written: int = 0
    events_dropped: int = 0
    ingest_seconds: float = 0.0
    ingest_events_per_s: float = 0.0
    rollup_seconds: float = 0.0
    rollup_events_per_s: float = 0.0
    rollup_rows: int = 0
    queries: dict[str, dict[str, float]] = field(default_factory=dict)
    query_p50_ms: float = 0.0
    query_p95_ms: float = 0.0
    export_p95_ms: float = 0.0
    ingest_target: float = INGEST_TARGET
    query_p95_target_ms: float = QUERY_P95_TARGET_MS

    @property
    def passed(self) -> bool:
        return (
            self.ingest_events_per_s >= self.ingest_target
            and self.query_p95_ms <= self.query_p95_target_ms
            and self.events_dropped == 0
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pass": self.passed}


# ---- Synthetic traffic -----------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    tenant_id: uuid.UUID
    user_id: str
    ide: str
    model_version: str
    languages: tuple[str, ...]


def make_users(tenants: list[uuid.UUID], per_bu: int, rng: random.Random) -> list[User]:
    users = []
    for index, tenant in enumerate(tenants):
        for n in range(per_bu):
            # A canary: a fifth of each BU on each of two fine-tuned versions.
            bucket = rng.random()
            version = "base" if bucket < 0.6 else f"bu{index}-ft-1" if bucket < 0.8 else "ft-2"
            users.append(
                User(
                    tenant_id=tenant,
                    user_id=f"bu{index}-user{n}",
                    ide=rng.choice(IDES),
                    model_version=version,
                    languages=tuple(rng.sample(LANGUAGES, 3)),
                )
            )
    return users


def _id(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def generate(
    users: list[User], total: int, first: datetime, last: datetime, rng: random.Random
) -> Iterator[UsageEvent]:
    """`total` events in (roughly) time order between `first` and `last`."""
    span = (last - first).total_seconds()
    emitted = 0
    # ~2.8 events per completion session on average.
    sessions = max(1, int(total / 2.8))
    step = span / sessions
    clock = 0.0
    while emitted < total:
        clock = min(span - 700, clock + rng.expovariate(1.0 / step)) if span > 700 else 0.0
        user = rng.choice(users)
        when = first + timedelta(seconds=clock)
        language = user.languages[min(2, int(rng.expovariate(1.5)))]
        for event in _session(user, language, when, rng):
            yield event
            emitted += 1
            if emitted >= total:
                return


def _event(
    user: User,
    event_type: str,
    when: datetime,
    rng: random.Random,
    completion_id: str | None,
    language: str,
    feature: str,
    data: dict[str, Any],
) -> UsageEvent:
    return UsageEvent(
        id=_id(rng),
        tenant_id=user.tenant_id,
        event_type=event_type,
        occurred_at=when,
        user_id=user.user_id,
        completion_id=completion_id,
        model_version=user.model_version,
        feature=feature,
        language=language,
        ide=user.ide,
        data=data,
    )


def _session(user: User, language: str, when: datetime, rng: random.Random) -> list[UsageEvent]:
    if rng.random() < 0.05:
        return _chat(user, language, when, rng)
    cid = f"cmpl-{rng.getrandbits(64):016x}"
    lines = 1 + int(rng.expovariate(0.4))
    chars = lines * rng.randint(20, 60)
    ttft = int(rng.lognormvariate(4.2, 0.5))
    out = [
        _event(
            user,
            "completion.served",
            when,
            rng,
            cid,
            language,
            "completion",
            {
                "lines": lines,
                "chars": chars,
                "ttft_ms": ttft,
                "total_ms": ttft + int(rng.expovariate(1 / 150)),
                "completion_tokens": chars // 4,
            },
        )
    ]
    if rng.random() > 0.8:
        return out
    shown = {"lines": lines, "chars": chars}
    out.append(
        _event(user, "completion.shown", when + _ms(80), rng, cid, language, "completion", shown)
    )
    if rng.random() < 0.1:  # the IDE re-renders the same suggestion
        out.append(
            _event(
                user, "completion.shown", when + _ms(400), rng, cid, language, "completion", shown
            )
        )
    base_rate = 0.3 if user.model_version == "base" else 0.34
    if rng.random() < base_rate:
        kind = rng.choice(KINDS)
        got = (
            (lines, chars) if kind == "full" else (1, chars // lines) if kind == "line" else (0, 6)
        )
        out.append(
            _event(
                user,
                "completion.accepted",
                when + _ms(1500),
                rng,
                cid,
                language,
                "completion",
                {"kind": kind, "lines": got[0], "chars": got[1]},
            )
        )
        if rng.random() < 0.4:
            for seconds, window in ((30, "30s"), (120, "2m"), (600, "10m")):
                kept = int(got[1] * rng.uniform(0.6, 1.0))
                out.append(
                    _event(
                        user,
                        "code.retained",
                        when + timedelta(seconds=seconds),
                        rng,
                        cid,
                        language,
                        "completion",
                        {"window": window, "retained_chars": kept},
                    )
                )
    elif rng.random() < 0.3:
        out.append(
            _event(
                user, "completion.rejected", when + _ms(900), rng, cid, language, "completion", {}
            )
        )
    return out


def _chat(user: User, language: str, when: datetime, rng: random.Random) -> list[UsageEvent]:
    cid = f"chat-{rng.getrandbits(64):016x}"
    feature = "agent" if rng.random() < 0.3 else "chat"
    added = rng.randint(1, 40)
    ttft = int(rng.lognormvariate(5.5, 0.4))
    out = [
        _event(
            user,
            "completion.served",
            when,
            rng,
            cid,
            language,
            feature,
            {"lines": added, "chars": added * 40, "ttft_ms": ttft, "total_ms": ttft * 6},
        ),
        _event(
            user,
            "edit.proposed",
            when + _ms(5000),
            rng,
            None,
            language,
            feature,
            {"lines_added": added},
        ),
    ]
    outcome = "edit.applied" if rng.random() < 0.7 else "edit.discarded"
    out.append(
        _event(
            user,
            outcome,
            when + _ms(20000),
            rng,
            None,
            language,
            feature,
            {"lines_added": added, "lines_deleted": rng.randint(0, added)},
        )
    )
    return out


def _ms(value: int) -> timedelta:
    return timedelta(milliseconds=value)


# ---- Phases ----------------------------------------------------------------------------------


async def _create_bus(db: Database, count: int) -> list[uuid.UUID]:
    from cove.tenants.bus import repository as bu_repository

    ids = []
    async with db.platform() as conn:
        for n in range(count):
            bu = await bu_repository.insert(conn, {"slug": f"bench-{n}", "name": f"Bench {n}"})
            ids.append(bu.id)
    return ids


async def _ensure_partitions(db: Database, first: date, last: date) -> None:
    async with db.platform() as conn:
        await conn.execute("SELECT cove_ensure_usage_partitions(%s, %s)", (first, last))


async def ingest(
    db: Database,
    events: Iterator[UsageEvent],
    spool: Path,
    *,
    batch_size: int,
    writers: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int, float]:
    """Emit every event into `writers` gateway sinks (like gateway replicas) with
    backpressure; returns (written, dropped, seconds)."""
    sinks = [
        EventSink(
            postgres_writer(db),
            spool / f"sink-{n}",
            batch_size=batch_size,
            flush_interval=0.05,
            max_buffer=batch_size * 8,
        )
        for n in range(writers)
    ]
    for sink in sinks:
        await sink.start()
    started = time.perf_counter()
    turn = 0
    count = 0
    for count, event in enumerate(events, start=1):
        sinks[turn].emit(event)
        if count % batch_size == 0:
            turn = (turn + 1) % writers
            # Backpressure: a full sink would drop events (its memory limit of last resort).
            while sinks[turn].pending() >= batch_size * 2:  # noqa: ASYNC110
                await asyncio.sleep(0.002)
            if progress is not None and count % (batch_size * 100) == 0:
                progress(count)
    # EventSink.stop() cancels its flusher, which loses a batch whose write is in flight:
    # wait until every emitted event is written first.
    deadline = time.monotonic() + 300
    while sum(s.written + s.dropped for s in sinks) < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    for sink in sinks:
        await sink.stop()
    seconds = time.perf_counter() - started
    spooled = sum(len(s.spooled_files()) for s in sinks)
    if spooled:
        raise RuntimeError(f"{spooled} batches were spooled: Postgres refused writes")
    return sum(s.written for s in sinks), sum(s.dropped for s in sinks), seconds


QueryFn = Callable[[uuid.UUID], Awaitable[Any]]


def _rollup_parallel(
    db: SyncDatabase, tenants: list[uuid.UUID], start: datetime, end: datetime, workers: int
) -> int:
    """The rollup task's per-BU work, BUs side by side (as several Celery workers would)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(lambda bu: service.roll_tenant_range(db, bu, start, end), tenants))


def dashboard_queries(
    db: Database, tenants: list[uuid.UUID], first: date, last: date
) -> dict[str, QueryFn]:
    """The console's requests, as calls of the metrics API's service functions."""
    admin = Principal(
        subject="bench",
        username="bench",
        tenant_id=None,
        user_id=None,
        roles=frozenset({Role.PLATFORM_ADMIN}),
        scopes=frozenset({Scope.ADMIN_READ}),
    )
    period = {"date_from": first, "date_to": last}

    def q(**extra: Any) -> MetricsQuery:
        return MetricsQuery.model_validate({**period, **extra})

    def bu_index(bu: uuid.UUID) -> int:
        return tenants.index(bu)

    return {
        "overview by day": lambda bu: service.metrics(db, admin, bu, q(group_by="day")),
        "by model version": lambda bu: service.metrics(db, admin, bu, q(group_by="model_version")),
        "by language": lambda bu: service.metrics(db, admin, bu, q(group_by="language")),
        "by ide": lambda bu: service.metrics(db, admin, bu, q(group_by="ide")),
        "python, by day": lambda bu: service.metrics(
            db, admin, bu, q(language="python", group_by="day")
        ),
        "one user, by day": lambda bu: service.metrics(
            db, admin, bu, q(user=f"bu{bu_index(bu)}-user7", group_by="day")
        ),
        "by user": lambda bu: service.metrics(db, admin, bu, q(group_by="user")),
        "compare versions": lambda bu: service.compare(
            db, admin, bu, "base", f"bu{bu_index(bu)}-ft-1", q()
        ),
    }


def export_queries(db: Database, first: date, last: date) -> dict[str, QueryFn]:
    admin = Principal(
        subject="bench",
        username="bench",
        tenant_id=None,
        user_id=None,
        roles=frozenset({Role.PLATFORM_ADMIN}),
        scopes=frozenset({Scope.ADMIN_READ}),
    )
    query = MetricsQuery(date_from=first, date_to=last)
    return {
        "csv export": lambda bu: service.csv_export(db, admin, bu, query),
        "copilot export": lambda bu: service.copilot(db, admin, bu, query),
    }


async def time_queries(
    queries: dict[str, QueryFn], tenants: list[uuid.UUID], rounds: int
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in queries}
    for make in queries.values():  # warm-up: plans and caches
        await make(tenants[0])
    for _ in range(rounds):
        for bu in tenants:
            for name, make in queries.items():
                started = time.perf_counter()
                await make(bu)
                samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, int(q * 100) - 1)]


# ---- The run ---------------------------------------------------------------------------------


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary directory, removed afterwards."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="cove-bench-pg-"))
        # As root the cluster runs as `postgres`, which must reach the directory.
        os.chmod(self.base, 0o755)  # noqa: S103
        self.cluster = LocalPostgres(self.base / "data", database="cove_bench")
        self.url = ""

    def __enter__(self) -> ThrowawayPostgres:
        self.cluster.ensure_initialised()
        port = self.cluster.start()
        self.url = self.cluster.ensure_database(port)
        return self

    def __exit__(self, *_: object) -> None:
        self.cluster.stop()
        shutil.rmtree(self.base, ignore_errors=True)


async def run(config: BenchConfig, echo: Callable[[str], None], database_url: str) -> BenchResult:
    result = BenchResult(events=config.events)
    settings = CoveSettings(
        database_url=database_url,
        secret_key="bench-secret-key-that-is-long-enough-0123456789",
        env="test",
        db_pool_max=max(4, config.writers + 2),
    )
    migrate.upgrade(database_url)
    db = Database(settings, min_size=0)
    await db.open()
    sync_db = SyncDatabase(settings)
    sync_db.open()
    spool = Path(tempfile.mkdtemp(prefix="cove-bench-spool-"))
    try:
        rng = random.Random(config.seed)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        first = today - timedelta(days=config.days)
        last_day = (today - timedelta(days=1)).date()
        await _ensure_partitions(db, first.date(), today.date())
        tenants = await _create_bus(db, config.bus)
        users = make_users(tenants, config.users_per_bu, rng)
        echo(
            f"seeding {config.events:,} events: {config.bus} BUs x {config.users_per_bu} users,"
            f" {config.days} days, {len(LANGUAGES)} languages, {len(IDES)} IDEs"
        )

        def progress(count: int) -> None:
            echo(f"  {count:,} events emitted")

        written, dropped, seconds = await ingest(
            db,
            generate(users, config.events, first, today, rng),
            spool,
            batch_size=config.batch_size,
            writers=config.writers,
            progress=progress,
        )
        result.events_written, result.events_dropped = written, dropped
        result.ingest_seconds = seconds
        result.ingest_events_per_s = written / seconds if seconds else 0.0
        echo(f"ingested {written:,} events in {seconds:.1f} s")

        started = time.perf_counter()
        result.rollup_rows = await asyncio.to_thread(
            _rollup_parallel, sync_db, tenants, first, today, config.writers
        )
        result.rollup_seconds = time.perf_counter() - started
        result.rollup_events_per_s = written / result.rollup_seconds
        echo(f"rolled up in {result.rollup_seconds:.1f} s ({result.rollup_rows:,} daily rows)")
        # What autovacuum does in production; index-only scans need the visibility map.
        await asyncio.to_thread(repository.vacuum_analyze, database_url)

        period_first = last_day - timedelta(days=27)
        samples = await time_queries(
            dashboard_queries(db, tenants, period_first, last_day), tenants, config.query_rounds
        )
        exports = await time_queries(
            export_queries(db, period_first, last_day), tenants, max(1, config.query_rounds // 5)
        )
        everything = [v for values in samples.values() for v in values]
        result.query_p50_ms = quantile(everything, 0.5)
        result.query_p95_ms = quantile(everything, 0.95)
        result.export_p95_ms = quantile([v for vs in exports.values() for v in vs], 0.95)
        result.queries = {
            name: {"p50_ms": quantile(values, 0.5), "p95_ms": quantile(values, 0.95)}
            for name, values in {**samples, **exports}.items()
        }
        return result
    finally:
        sync_db.close()
        await db.close()
        shutil.rmtree(spool, ignore_errors=True)


def table(result: BenchResult) -> str:
    rows = [
        ("events written", f"{result.events_written:,}", ""),
        (
            "ingestion (gateway batcher → Postgres)",
            f"{result.ingest_events_per_s:,.0f} events/s",
            f"target ≥ {result.ingest_target:,.0f}",
        ),
        (
            "rollup (hourly + daily)",
            f"{result.rollup_seconds:.1f} s",
            f"{result.rollup_events_per_s:,.0f} events/s",
        ),
    ]
    for name, q in result.queries.items():
        rows.append((f"query: {name}", f"p50 {q['p50_ms']:.1f} ms", f"p95 {q['p95_ms']:.1f} ms"))
    rows.append(
        (
            "dashboard queries, all",
            f"p50 {result.query_p50_ms:.1f} ms",
            f"p95 {result.query_p95_ms:.1f} ms (target ≤ {result.query_p95_target_ms:.0f})",
        )
    )
    width = max(len(r[0]) for r in rows)
    mid = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b:>{mid}}  {c}" for a, b, c in rows)
