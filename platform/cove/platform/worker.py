"""The Celery worker and beat entry point: `celery -A cove.platform.worker worker`."""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown

from cove.platform.analytics import tasks as analytics_tasks
from cove.platform.core.celery_app import create_celery
from cove.platform.core.db import SyncDatabase
from cove.platform.core.logging import configure_logging
from cove.platform.core.settings import CoveSettings
from cove.platform.deployments import tasks as deployment_tasks
from cove.platform.finetuning import tasks as finetune_tasks
from cove.platform.lifecycle import tasks as lifecycle_tasks
from cove.platform.promptlogs import tasks as prompt_log_tasks

ENSURE_PARTITIONS = "usage.ensure_partitions"


class WorkerSettings(CoveSettings):
    service_name: str = "cove-worker"
    health_check_seconds: float = 15.0
    analytics_rollup_seconds: float = 300.0


@functools.cache
def _database() -> SyncDatabase:
    db = SyncDatabase(WorkerSettings())
    db.open()
    return db


def build_app(settings: WorkerSettings | None = None) -> Celery:
    settings = settings or WorkerSettings()
    app = create_celery(settings)
    deployment_tasks.register(app, _database)
    analytics_tasks.register(app, _database)
    finetune_tasks.register(app, _database)
    lifecycle_tasks.register(app, _database)
    prompt_log_tasks.register(app, _database)

    @app.task(name=ENSURE_PARTITIONS, acks_late=True)
    def ensure_partitions() -> int:
        with _database().platform() as conn:
            cur = conn.execute(
                "SELECT cove_ensure_usage_partitions(current_date - 1, current_date + 30)"
            )
            row = cur.fetchone()
        return int(row[0]) if row else 0

    app.conf.beat_schedule = {
        "deployment-health": {
            "task": deployment_tasks.HEALTH_CHECK,
            "schedule": settings.health_check_seconds,
        },
        "usage-partitions": {"task": ENSURE_PARTITIONS, "schedule": 3600.0},
        **analytics_tasks.beat_schedule(settings.analytics_rollup_seconds),
        **deployment_tasks.beat_schedule(),
        **finetune_tasks.beat_schedule(),
        **lifecycle_tasks.beat_schedule(),
        **prompt_log_tasks.beat_schedule(),
    }
    return app


@worker_process_shutdown.connect
def _close_pool(**_: Any) -> None:
    if _database.cache_info().currsize:
        _database().close()


configure_logging(WorkerSettings().log_level)
app = build_app()
