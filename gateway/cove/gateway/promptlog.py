"""Prompt logs: what the gateway keeps of a request when the BU's policy asks for it.

With `logging.mode` `off` (the default) nothing here runs on the request path. With
`metadata` or `full`, a `PromptLogEntry` is started when the request passed the policy (and
collects the rules that fired), finished when the completion was delivered, and handed to
`PromptLogSink`, which writes batches off the request path like the usage events. The text kept
in `full` mode is what the model saw and what the IDE got: the prompt after redaction, the
completion after dropped suggestions.

Prompt logs are not spooled to disk when Postgres is down (they may hold code): the buffer
keeps up to `max_buffer` rows and then counts what it had to drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from cove.gateway import repository
from cove.gateway.policies import GatewayPolicy
from cove.gateway.served import Offer
from cove.platform.core.db import Database
from cove.platform.core.logging import request_id_var
from cove.tenants.principal import Principal


@dataclass(slots=True)
class PromptLogEntry:
    tenant_id: UUID
    mode: str
    user_id: str
    username: str
    feature: str
    path: str | None
    language: str | None
    prompt_chars: int
    suffix_chars: int
    request_id: str | None = None
    model_version: str = ""
    prompt: str | None = None
    suffix: str | None = None
    # Policy rules that fired: {"action", "type", "rule"} (never the matched text).
    rules: list[dict[str, str]] = field(default_factory=list)

    def keep_text(self, prompt: str, suffix: str | None) -> None:
        """Keep the text the model is sent (full mode only)."""
        if self.mode == "full":
            self.prompt, self.suffix = _storable(prompt), _storable(suffix)

    def row(self, offer: Offer) -> tuple[Any, ...]:
        completion = offer.text()
        return (
            uuid.uuid4(),
            self.tenant_id,
            datetime.now(UTC),
            self.mode,
            self.user_id,
            self.username,
            self.request_id,
            offer.completion_id,
            self.feature,
            self.model_version,
            self.path,
            self.language,
            self.prompt_chars,
            self.suffix_chars,
            len(completion),
            offer.prompt_tokens,
            offer.completion_tokens,
            Jsonb(self.rules),
            offer.cancelled,
            self.prompt if self.mode == "full" else None,
            self.suffix if self.mode == "full" else None,
            _storable(completion) if self.mode == "full" else None,
        )


def _storable(text: str | None) -> str | None:
    # Postgres text cannot hold NUL; a prompt can.
    return text.replace("\x00", "\ufffd") if text and "\x00" in text else text


def start_entry(
    policy: GatewayPolicy,
    principal: Principal,
    *,
    feature: str,
    path: str | None,
    language: str | None = None,
    prompt_chars: int,
    suffix_chars: int = 0,
) -> PromptLogEntry | None:
    """A log entry for this request, or None when the BU does not log prompts."""
    mode = policy.logging.mode
    if mode == "off":
        return None
    assert principal.tenant_id is not None
    return PromptLogEntry(
        tenant_id=principal.tenant_id,
        mode=mode,
        user_id=str(principal.user_id) if principal.user_id else principal.subject,
        username=principal.username,
        feature=feature,
        path=_storable(path[:1000]) if path else None,
        language=_storable(language[:100]) if language else None,
        prompt_chars=prompt_chars,
        suffix_chars=suffix_chars,
        request_id=request_id_var.get(),
    )


log = logging.getLogger(__name__)


class PromptLogSink:
    """A bounded in-memory buffer of finished entries, written in batches by one task."""

    def __init__(
        self,
        db: Database,
        *,
        flush_interval: float = 1.0,
        batch_size: int = 500,
        max_buffer: int = 20_000,
    ) -> None:
        self._db = db
        self._flush_interval = flush_interval
        self._batch_size = batch_size
        self._max_buffer = max_buffer
        self._buffer: deque[tuple[Any, ...]] = deque()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def emit(self, entry: PromptLogEntry, offer: Offer) -> None:
        if len(self._buffer) >= self._max_buffer:
            self.dropped += 1
            return
        self._buffer.append(entry.row(offer))

    def pending(self) -> int:
        return len(self._buffer)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cove-prompt-log")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def flush(self) -> None:
        while self._buffer:
            n = min(self._batch_size, len(self._buffer))
            batch = [self._buffer.popleft() for _ in range(n)]
            try:
                await self._write(batch)
            except psycopg.OperationalError:
                log.warning("could not write %d prompt logs; keeping them", len(batch))
                self._buffer.extendleft(reversed(batch))
                return
            except psycopg.Error:
                # One bad row must not hold back the rest: write them one by one.
                for row in batch:
                    try:
                        await self._write([row])
                    except psycopg.Error:
                        self.dropped += 1
                        log.exception("a prompt log row was refused; dropped")

    async def _write(self, rows: list[tuple[Any, ...]]) -> None:
        async with self._db.platform() as conn:
            await repository.insert_prompt_logs(conn, rows)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            await self.flush()
