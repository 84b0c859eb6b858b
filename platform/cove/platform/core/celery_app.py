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


class AfterCommit:
    """Tasks to send only once the transaction that made their work has committed.

    A worker must never pick up an id whose row it cannot see yet, nor one whose transaction
    rolled back. Use it around a scoped transaction:

        outbox = AfterCommit(celery)
        async with db.tenant(bu_id) as conn:
            ...
            outbox.add("deployment.reconcile", deployment_id)
        outbox.send()        # only reached when the block committed
    """

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._pending: list[tuple[str, list[str]]] = []

    def add(self, task_name: str, *ids: object) -> None:
        self._pending.append((task_name, [str(i) for i in ids]))

    def send(self) -> int:
        sent = 0
        for name, args in self._pending:
            self._app.send_task(name, args=args)
            sent += 1
        self._pending.clear()
        return sent

    def discard(self) -> None:
        self._pending.clear()
