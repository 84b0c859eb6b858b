"""Policy decisions for the audit log, written in batches off the request path.

Blocks, redactions, exclusions and limit hits are recorded with the rule, user, BU and
time — never the secret or the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from cove.gateway import repository
from cove.platform.core.db import Database
from cove.platform.core.logging import request_id_var

log = logging.getLogger(__name__)


class DecisionLog:
    def __init__(
        self,
        db: Database,
        *,
        flush_interval: float = 1.0,
        max_buffer: int = 50_000,
        on_record: Callable[[str], None] | None = None,
    ):
        self._db = db
        self._on_record = on_record
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._buffer: deque[tuple[Any, ...]] = deque()
        self._task: asyncio.Task[None] | None = None

    def record(
        self, *, tenant_id: UUID, actor: str, action: str, target: str, details: dict[str, Any]
    ) -> None:
        if self._on_record is not None:
            self._on_record(action)
        if len(self._buffer) >= self._max_buffer:
            return
        self._buffer.append(
            (
                tenant_id,
                actor,
                action,
                target,
                Jsonb(details),
                request_id_var.get(),
                datetime.now(UTC),
            )
        )

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cove-decision-log")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def flush(self) -> None:
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(500, len(self._buffer)))]
            try:
                async with self._db.platform() as conn:
                    await repository.insert_audit(conn, batch)
            except psycopg.Error:
                log.warning("could not write %d policy decisions to the audit log", len(batch))
                self._buffer.extendleft(reversed(batch))
                return

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            await self.flush()
