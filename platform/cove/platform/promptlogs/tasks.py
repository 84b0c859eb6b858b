"""Celery task for prompt logs: retention (beat, hourly)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

from celery import Celery

from cove.platform.core.db import SyncDatabase
from cove.platform.promptlogs import service

log = logging.getLogger(__name__)

PURGE = "prompt_logs.purge"
PURGE_SECONDS = 3600.0


def purge(db: SyncDatabase, bu_id: str | None = None) -> dict[str, int]:
    """Apply each BU's prompt-log retention (or one BU's, given its id)."""
    counts = service.purge(db, UUID(bu_id) if bu_id else None)
    log.info("prompt log retention", extra=counts)
    return counts


def register(app: Celery, db_factory: Callable[[], SyncDatabase]) -> None:
    @app.task(name=PURGE, acks_late=True, ignore_result=False)
    def purge_task(bu_id: str | None = None) -> dict[str, int]:
        return purge(db_factory(), bu_id)


def beat_schedule(purge_seconds: float = PURGE_SECONDS) -> dict[str, dict[str, Any]]:
    return {"prompt-logs-purge": {"task": PURGE, "schedule": purge_seconds}}
