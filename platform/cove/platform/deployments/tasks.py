"""Celery tasks for model deployments.

- `deployment.health_check` (beat): probe every running instance, record its status and its
  load from /metrics.
- `deployment.reconcile` (enqueued after the API's transaction commits, and re-enqueued by
  itself while an instance starts): bring one deployment to its desired state.
- `deployment.reconcile_all` (beat): the sweep that notices crashed processes, drift and any
  change whose task was lost, by reconciling every deployment that may need it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
from celery import Celery, Task

from cove.platform.core.db import SyncDatabase
from cove.platform.deployments import reconciler, repository
from cove.platform.deployments.health import probe_instance
from cove.platform.deployments.metrics import capacity_from_metrics
from cove.platform.deployments.runtime.factory import Drivers, build_drivers
from cove.platform.deployments.runtime.vllm_api import VllmApi
from cove.platform.deployments.settings import RuntimeSettings

log = logging.getLogger(__name__)

HEALTH_CHECK = "deployment.health_check"
RECONCILE = "deployment.reconcile"
RECONCILE_ALL = "deployment.reconcile_all"
MANAGED_RUNTIMES = frozenset({"local", "kubernetes"})


def check_all(db: SyncDatabase, client: httpx.Client) -> dict[str, int]:
    """Probe every running deployment and record its status and load; returns counts per
    status."""
    counts: dict[str, int] = {}
    api = VllmApi(client)
    with db.platform() as conn:
        targets = repository.health_targets(conn)
    for target in targets:
        if target.runtime in MANAGED_RUNTIMES and target.status == "pending":
            # Still starting: the reconciler reports it until it first serves.
            continue
        probe = probe_instance(client, target.endpoint_url, target.served_model_name)
        counts[probe.status] = counts.get(probe.status, 0) + 1
        capacity = None
        if probe.status != "unavailable":
            text = api.metrics(target.endpoint_url.rstrip("/"))
            if text is not None:
                capacity = capacity_from_metrics(text, target.capacity)
        with db.platform() as conn:
            repository.record_health(conn, target.id, probe.status, probe.detail)
            if capacity is not None:
                repository.record_capacity(conn, target.id, capacity)
            if probe.status != target.status:
                repository.notify_routes_sync(conn, target.tenant_id)
                log.info(
                    "deployment status changed",
                    extra={"deployment": str(target.id), "status": probe.status},
                )
    return counts


def deployments_to_reconcile(db: SyncDatabase) -> list[UUID]:
    with db.platform() as conn:
        return repository.needing_reconcile(conn)


@functools.cache
def _runtime() -> tuple[RuntimeSettings, Drivers, VllmApi]:
    # Built once per worker process, after the fork.
    settings = RuntimeSettings()
    client = httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0))
    return settings, build_drivers(settings, client), VllmApi(client)


def register(app: Celery, db_factory: Callable[[], SyncDatabase]) -> None:
    @app.task(name=HEALTH_CHECK, acks_late=True, ignore_result=False)
    def health_check() -> dict[str, int]:
        with httpx.Client(timeout=5.0) as client:
            return check_all(db_factory(), client)

    @app.task(name=RECONCILE, bind=True, acks_late=True, ignore_result=False)
    def reconcile(self: Task[Any, Any], deployment_id: str) -> dict[str, Any]:
        try:
            wanted = UUID(deployment_id)
        except ValueError:
            return {"deployment_id": deployment_id, "action": "missing"}
        settings, drivers, api = _runtime()
        outcome = reconciler.reconcile(db_factory(), drivers, api, wanted)
        if outcome.requeue:
            self.apply_async(args=(deployment_id,), countdown=settings.requeue_seconds)
        return outcome.as_dict()

    @app.task(name=RECONCILE_ALL, acks_late=True, ignore_result=False)
    def reconcile_all() -> int:
        ids = deployments_to_reconcile(db_factory())
        for deployment_id in ids:
            app.send_task(RECONCILE, args=[str(deployment_id)])
        return len(ids)


def beat_schedule(reconcile_seconds: float | None = None) -> dict[str, dict[str, Any]]:
    seconds = reconcile_seconds or RuntimeSettings().reconcile_seconds
    return {"deployment-reconcile": {"task": RECONCILE_ALL, "schedule": seconds}}
