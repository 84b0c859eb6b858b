"""The Celery app factory shared by the worker, beat and anything that enqueues tasks.

Conventions every task follows: an explicit dotted name (`deployment.health_check`), ids as
arguments (never rows), JSON only, `acks_late` so a crashed worker's task runs again (tasks
are idempotent), and enqueueing only after the transaction that made the work commits.
"""

from __future__ import annotations

from datetime import timedelta

from celery import Celery

from cove.platform.core.settings import CoveSettings


def create_celery(settings: CoveSettings, *, include: list[str] | None = None) -> Celery:
    app = Celery("cove", broker=settings.redis_url, backend=settings.redis_url, include=include)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        result_expires=timedelta(hours=1),
        broker_connection_retry_on_startup=True,
        timezone="UTC",
        enable_utc=True,
    )
    return app
