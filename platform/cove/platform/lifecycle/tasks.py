"""Celery tasks of the BU lifecycle.

- `bu.purge` (sent when a deletion without grace period is requested, and by the sweep):
  one step of a BU's purge; while the BU's instances and jobs stop it runs again shortly.
- `bu.purge_due` (beat): send `bu.purge` for every BU whose grace period is over.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

from celery import Celery, Task

from cove.platform.core.db import SyncDatabase
from cove.platform.core.errors import CoveError
from cove.platform.deployments.tasks import RECONCILE
from cove.platform.finetuning.settings import FinetuneSettings
from cove.platform.lifecycle import repository, service
from cove.platform.lifecycle.service import PURGE, PURGE_DUE
from cove.platform.lifecycle.settings import LifecycleSettings

log = logging.getLogger(__name__)


@functools.cache
def _settings() -> tuple[LifecycleSettings, FinetuneSettings]:
    return LifecycleSettings(), FinetuneSettings()


def register(app: Celery, db_factory: Callable[[], SyncDatabase]) -> None:
    @app.task(name=PURGE, bind=True, acks_late=True, ignore_result=False)
    def purge(self: Task[Any, Any], tenant_id: str) -> dict[str, Any]:
        try:
            wanted = UUID(tenant_id)
        except ValueError:
            return {"tenant_id": tenant_id, "action": "missing"}
        settings, finetune = _settings()
        try:
            outcome = service.purge(
                db_factory(),
                finetune.finetune_dir,
                wanted,
                lambda deployment_id: app.send_task(RECONCILE, args=[str(deployment_id)]),
            )
        except CoveError as exc:
            # Kept as it was; the sweep tries again.
            log.error("purge failed", extra={"bu": tenant_id, "error": exc.message})
            return {"tenant_id": tenant_id, "action": "failed", "detail": exc.to_json()}
        if outcome.action == "waiting":
            self.apply_async(args=(tenant_id,), countdown=settings.bu_purge_retry_seconds)
        return outcome.as_dict()

    @app.task(name=PURGE_DUE, acks_late=True, ignore_result=False)
    def purge_due() -> int:
        with db_factory().platform() as conn:
            due = repository.due(conn)
        for tenant_id in due:
            app.send_task(PURGE, args=[str(tenant_id)])
        return len(due)


def beat_schedule(seconds: float | None = None) -> dict[str, dict[str, Any]]:
    every = seconds or _settings()[0].bu_purge_check_seconds
    return {"bu-purge-due": {"task": PURGE_DUE, "schedule": every}}
