"""Usage events: validated at the door, buffered in memory, written to Postgres in batches.

Writes never sit on the request path. A batch that cannot be written (Postgres down) is
spooled to local disk as JSON lines and replayed when the database answers again; on
shutdown the buffer drains to Postgres or, failing that, to the spool. Event ids make every
write idempotent, so a replayed or re-sent batch never double counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from cove.gateway import repository
from cove.platform.core.db import Database

log = logging.getLogger(__name__)

EVENT_TYPES = frozenset(
    {
        "completion.served",
        "completion.shown",
        "completion.accepted",
        "completion.rejected",
        "edit.proposed",
        "edit.applied",
        "edit.discarded",
        "code.retained",
    }
)
COMPLETION_EVENTS = frozenset(t for t in EVENT_TYPES if t.startswith("completion."))
ACCEPT_KINDS = frozenset({"full", "line", "word"})
FEATURES = frozenset({"completion", "chat", "edit", "agent"})
RETENTION_WINDOWS = frozenset({"30s", "2m", "10m"})
# Counters an event may carry; anything else in the body is ignored, never stored.
NUMERIC_FIELDS = (
    "lines",
    "chars",
    "lines_added",
    "lines_deleted",
    "retained_chars",
    "ttft_ms",
    "total_ms",
    "choice_index",
)
MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_EVENT_AGE = timedelta(days=30)
MAX_TEXT = 200


@dataclass(frozen=True, slots=True)
class UsageEvent:
    id: uuid.UUID
    tenant_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    user_id: str | None
    completion_id: str | None = None
    model_version: str | None = None
    feature: str | None = None
    language: str | None = None
    ide: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def row(self) -> tuple[Any, ...]:
        return (
            self.id,
            self.tenant_id,
            self.event_type,
            self.occurred_at,
            self.user_id,
            self.completion_id,
            self.model_version,
            self.feature,
            self.language,
            self.ide,
            Jsonb(self.data),
        )

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "id": str(self.id),
                "tenant_id": str(self.tenant_id),
                "event_type": self.event_type,
                "occurred_at": self.occurred_at.isoformat(),
                "user_id": self.user_id,
                "completion_id": self.completion_id,
                "model_version": self.model_version,
                "feature": self.feature,
                "language": self.language,
                "ide": self.ide,
                "data": self.data,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> UsageEvent:
        value = orjson.loads(raw)
        return cls(
            id=uuid.UUID(value["id"]),
            tenant_id=uuid.UUID(value["tenant_id"]),
            event_type=value["event_type"],
            occurred_at=datetime.fromisoformat(value["occurred_at"]),
            user_id=value["user_id"],
            completion_id=value["completion_id"],
            model_version=value["model_version"],
            feature=value["feature"],
            language=value["language"],
            ide=value["ide"],
            data=value["data"],
        )


class EventRejected(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT or "\x00" in value:
        raise EventRejected("invalid_field", f"'{name}' must be a string of at most {MAX_TEXT}")
    return value


def parse_client_event(
    raw: Any, *, tenant_id: uuid.UUID, user_id: str | None, now: datetime, defaults: dict[str, Any]
) -> UsageEvent:
    """Validate one event sent by an IDE client (METRICS.md v1). Tenant and user come from
    the caller's credentials, never from the body."""
    if not isinstance(raw, dict):
        raise EventRejected("invalid_event", "each event must be a JSON object")
    event_type = raw.get("type")
    if event_type not in EVENT_TYPES or event_type == "completion.served":
        raise EventRejected("unknown_type", f"unknown or server-only event type {event_type!r}")
    try:
        event_id = uuid.UUID(str(raw.get("id")))
    except ValueError as exc:
        raise EventRejected("invalid_id", "'id' must be a UUID") from exc
    stamp = raw.get("timestamp")
    if not isinstance(stamp, str):
        raise EventRejected("invalid_timestamp", "'timestamp' must be an ISO 8601 string")
    try:
        occurred = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError as exc:
        raise EventRejected("invalid_timestamp", "'timestamp' is not ISO 8601") from exc
    if occurred.tzinfo is None:
        raise EventRejected("invalid_timestamp", "'timestamp' needs a time zone")
    if occurred > now + MAX_CLOCK_SKEW:
        raise EventRejected("future_timestamp", "'timestamp' is in the future")
    if occurred < now - MAX_EVENT_AGE:
        raise EventRejected("stale_timestamp", "'timestamp' is older than 30 days")
    completion_id = _text(raw.get("completion_id"), "completion_id")
    if event_type in COMPLETION_EVENTS and not completion_id:
        raise EventRejected("missing_field", f"'{event_type}' needs 'completion_id'")
    data: dict[str, Any] = {}
    for name in NUMERIC_FIELDS:
        if name in raw and raw[name] is not None:
            value = raw[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise EventRejected("invalid_field", f"'{name}' must be a non-negative integer")
            data[name] = value
    if event_type == "completion.accepted":
        kind = raw.get("kind", "full")
        if kind not in ACCEPT_KINDS:
            raise EventRejected("invalid_field", "'kind' must be full, line or word")
        data["kind"] = kind
    if event_type == "code.retained":
        window = raw.get("window")
        if window not in RETENTION_WINDOWS:
            raise EventRejected("invalid_field", "'window' must be 30s, 2m or 10m")
        data["window"] = window
    feature = raw.get("feature", defaults.get("feature"))
    if feature is not None and feature not in FEATURES:
        raise EventRejected("invalid_field", "'feature' must be completion, chat, edit or agent")
    plugin = _text(raw.get("plugin_version", defaults.get("plugin_version")), "plugin_version")
    if plugin:
        data["plugin_version"] = plugin
    return UsageEvent(
        id=event_id,
        tenant_id=tenant_id,
        event_type=event_type,
        occurred_at=occurred.astimezone(UTC),
        user_id=user_id,
        completion_id=completion_id,
        model_version=_text(
            raw.get("model_version", defaults.get("model_version")), "model_version"
        ),
        feature=feature,
        language=_text(raw.get("language", defaults.get("language")), "language"),
        ide=_text(raw.get("ide", defaults.get("ide")), "ide"),
        data=data,
    )


Writer = Callable[[list[UsageEvent]], Awaitable[None]]


def postgres_writer(db: Database) -> Writer:
    async def write(batch: list[UsageEvent]) -> None:
        async with db.platform() as conn:
            await repository.insert_events(conn, [e.row() for e in batch])

    return write


class EventSink:
    """A bounded in-memory buffer flushed in batches by one background task."""

    def __init__(
        self,
        writer: Writer,
        spool_dir: Path,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        max_buffer: int = 200_000,
    ) -> None:
        self._writer = writer
        self._spool_dir = spool_dir
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._buffer: deque[UsageEvent] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_replay = 0.0
        self.dropped = 0
        self.rejected = 0
        self.written = 0

    def emit(self, event: UsageEvent) -> None:
        if len(self._buffer) >= self._max_buffer:
            # Memory is the limit of last resort; the spool protects against outages.
            self.dropped += 1
            return
        self._buffer.append(event)
        if len(self._buffer) >= self._batch_size:
            self._wakeup.set()

    def pending(self) -> int:
        return len(self._buffer)

    async def start(self) -> None:
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._run(), name="cove-event-sink")

    async def stop(self) -> None:
        """Drain everything: to Postgres if it answers, else to the spool."""
        if self._task is not None:
            # Never cancel a write in flight: that batch would be neither written nor spooled.
            self._stopping = True
            self._wakeup.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._buffer:
            if not await self._flush_once():
                # Postgres is down: keep every remaining event on disk, in one go.
                rest = list(self._buffer)
                self._buffer.clear()
                for start in range(0, len(rest), self._batch_size):
                    self._spool(rest[start : start + self._batch_size])

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_interval):
                    await self._wakeup.wait()
            self._wakeup.clear()
            if self._stopping:
                return
            while self._buffer:
                if not await self._flush_once():
                    break
            if time.monotonic() - self._last_replay > 5.0:
                self._last_replay = time.monotonic()
                await self.replay_spool()

    async def _flush_once(self) -> bool:
        batch = [self._buffer.popleft() for _ in range(min(self._batch_size, len(self._buffer)))]
        if not batch:
            return True
        try:
            await self._writer(batch)
        except (psycopg.Error, OSError) as exc:
            log.warning(
                "event write failed; spooling %d events", len(batch), extra={"err": str(exc)}
            )
            self._spool(batch)
            return False
        self.written += len(batch)
        return True

    def _spool(self, batch: list[UsageEvent]) -> None:
        name = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        partial = self._spool_dir / (name + ".partial")
        with partial.open("wb") as out:
            for event in batch:
                out.write(event.to_json() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        partial.rename(self._spool_dir / name)

    def spooled_files(self) -> list[Path]:
        return sorted(self._spool_dir.glob("*.jsonl"))

    async def replay_spool(self) -> int:
        """Write spooled batches back; stops at the first failure. Returns events written."""
        replayed = 0
        for path in self.spooled_files():
            batch = [UsageEvent.from_json(line) for line in path.read_bytes().splitlines() if line]
            try:
                await self._writer(batch)
            except (psycopg.Error, OSError):
                return replayed
            path.unlink()
            replayed += len(batch)
            self.written += len(batch)
        return replayed
