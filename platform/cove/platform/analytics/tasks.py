"""Celery tasks for analytics: the rollup (beat, every few minutes) and retention (daily)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from celery import Celery

from cove.platform.analytics import service
from cove.platform.core.db import SyncDatabase

log = logging.getLogger(__name__)

ROLLUP = "analytics.rollup"
PURGE = "analytics.purge"
ROLLUP_SECONDS = 300.0
PURGE_SECONDS = 86400.0


def rollup(
    db: SyncDatabase,
    start: str | None = None,
    end: str | None = None,
    bu_id: str | None = None,
) -> dict[str, int]:
    """Without a period: re-roll what events received since the last run touched. With an
    ISO 8601 `start` and `end` (and optionally one BU): recompute that period."""
    if start is None and end is None:
        result = service.rollup_recent(db)
    else:
        if start is None or end is None:
            raise ValueError("give both start and end, or neither")
        result = service.rollup_range(
            db,
            datetime.fromisoformat(start),
            datetime.fromisoformat(end),
            UUID(bu_id) if bu_id else None,
        )
    log.info("analytics rollup", extra=result.as_dict())
    return result.as_dict()


def purge(db: SyncDatabase, bu_id: str | None = None) -> dict[str, int]:
    """Apply each BU's retention (or one BU's, given its id)."""
    counts = service.purge(db, UUID(bu_id) if bu_id else None)
    log.info("analytics retention", extra=counts)
    return counts


def register(app: Celery, db_factory: Callable[[], SyncDatabase]) -> None:
    @app.task(name=ROLLUP, acks_late=True, ignore_result=False)
    def rollup_task(
        start: str | None = None, end: str | None = None, bu_id: str | None = None
    ) -> dict[str, int]:
        return rollup(db_factory(), start, end, bu_id)

    @app.task(name=PURGE, acks_late=True, ignore_result=False)
    def purge_task(bu_id: str | None = None) -> dict[str, int]:
        return purge(db_factory(), bu_id)


def beat_schedule(
    rollup_seconds: float = ROLLUP_SECONDS, purge_seconds: float = PURGE_SECONDS
) -> dict[str, dict[str, Any]]:
    return {
        "analytics-rollup": {"task": ROLLUP, "schedule": rollup_seconds},
        "analytics-purge": {"task": PURGE, "schedule": purge_seconds},
    }
