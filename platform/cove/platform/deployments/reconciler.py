"""The control plane's core loop for one deployment: desired state in Postgres -> the runtime.

`reconcile` is idempotent and safe to run at any time, any number of times, from any worker:
a transaction-scoped advisory lock lets one run per deployment at a time, it reads the
desired state fresh, asks the deployment's runtime driver to match it, brings the adapters
in line (load pending ones, restore lost ones, unload removed ones) and writes what it
observed back (status, ready replicas, observed generation, conditions, load). Any change the
gateway routes by is announced on `cove_routes` in the same transaction that records it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Literal
from uuid import UUID

from cove.platform.core.db import SyncDatabase
from cove.platform.deployments import repository
from cove.platform.deployments.metrics import capacity_from_metrics
from cove.platform.deployments.repository import AdapterTarget, ReconcileTarget
from cove.platform.deployments.runtime.base import (
    AdapterFailure,
    AdapterRef,
    Observed,
    Phase,
    RuntimeDriver,
    RuntimeFailure,
    Target,
)
from cove.platform.deployments.runtime.factory import Drivers
from cove.platform.deployments.runtime.vllm_api import VllmApi
from cove.platform.deployments.schemas import InstanceSpec

log = logging.getLogger(__name__)

Action = Literal["missing", "busy", "deleted", "reconciled", "delete_failed"]


@dataclass(frozen=True, slots=True)
class Outcome:
    deployment_id: str
    action: Action
    status: str | None = None
    detail: str | None = None
    # Look again soon: the instance is still starting, or another run held the lock.
    requeue: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def status_for(phase: Phase, current: str) -> str:
    """The deployment status the gateway and the API show for what the driver observed.

    An instance that has never served stays `pending` while it starts; one that served before
    and is (re)starting is `unavailable`, so the gateway uses its fallback meanwhile."""
    if phase == "ready":
        return "ready"
    if phase == "degraded":
        return "degraded"
    if phase in ("starting", "absent") and current == "pending":
        return "pending"
    return "unavailable"


def target_of(row: ReconcileTarget, adapters: list[AdapterTarget]) -> Target:
    return Target(
        deployment_id=row.id,
        tenant_id=row.tenant_id,
        bu_slug=row.bu_slug,
        gpu_quota=row.gpu_quota,
        name=row.name,
        mode=row.mode,
        model=row.model,
        model_location=row.model_location,
        context_length=row.context_length,
        served_model_name=row.served_model_name,
        endpoint_url=row.endpoint_url,
        generation=row.generation,
        spec=InstanceSpec.model_validate(row.spec),
        max_lora_rank=row.max_lora_rank,
        adapters=tuple(
            AdapterRef(a.name, a.location) for a in adapters if a.state in ("pending", "loaded")
        ),
    )


def reconcile(db: SyncDatabase, drivers: Drivers, api: VllmApi, deployment_id: UUID) -> Outcome:
    with db.platform() as lock:
        if not repository.try_lock(lock, deployment_id):
            return Outcome(str(deployment_id), "busy", requeue=True)
        return _reconcile_locked(db, drivers, api, deployment_id)


def _reconcile_locked(
    db: SyncDatabase, drivers: Drivers, api: VllmApi, deployment_id: UUID
) -> Outcome:
    with db.platform() as conn:
        row = repository.reconcile_target(conn, deployment_id)
        adapters = repository.adapter_targets(conn, deployment_id) if row else []
    if row is None:
        return Outcome(str(deployment_id), "missing")
    try:
        driver = drivers.get(row.runtime)
        target = target_of(row, adapters)
    except (RuntimeFailure, ValueError) as exc:
        return _record_failure(db, row, f"cannot reconcile: {exc}")
    if row.desired_state == "deleted":
        return _delete(db, driver, row, target)

    try:
        observed = driver.ensure(target)
    except RuntimeFailure as exc:
        observed = Observed("failed", row.endpoint_url, target.spec.replicas, 0, str(exc))
    routes_changed = False
    if observed.restarted:
        with db.platform() as conn:
            reset = repository.reset_loaded_adapters(
                conn, row.id, "restoring after the instance restarted"
            )
        if reset:
            routes_changed = True
            with db.platform() as conn:
                adapters = repository.adapter_targets(conn, row.id)
    routes_changed |= _sync_adapters(db, driver, target, adapters, observed)
    capacity = None
    if observed.phase in ("ready", "degraded"):
        text = api.metrics(observed.endpoint_url)
        if text is not None:
            capacity = capacity_from_metrics(text, row.capacity)
    status = status_for(observed.phase, row.status)
    if observed.restarted and status == "pending":
        # It ran and stopped: not "still coming up for the first time".
        status = "unavailable"
    with db.platform() as conn:
        repository.record_observed(
            conn,
            row.id,
            generation=row.generation,
            status=status,
            detail=observed.detail,
            endpoint_url=observed.endpoint_url,
            replicas_ready=observed.replicas_ready,
            conditions=[dict(c) for c in observed.conditions],
            capacity=capacity,
            events=[dict(e) for e in observed.events] if observed.events is not None else None,
        )
        if routes_changed or status != row.status or observed.endpoint_url != row.endpoint_url:
            repository.notify_routes_sync(conn, row.tenant_id)
    if status != row.status:
        log.info(
            "deployment status changed",
            extra={"deployment": str(row.id), "status": status, "was": row.status},
        )
    return Outcome(
        str(row.id),
        "reconciled",
        status=status,
        detail=observed.detail,
        requeue=observed.phase == "starting",
    )


def _sync_adapters(
    db: SyncDatabase,
    driver: RuntimeDriver,
    target: Target,
    adapters: list[AdapterTarget],
    observed: Observed,
) -> bool:
    """Load what should be loaded, unload what should go; True when routes changed."""
    changed = False
    served = observed.served
    for adapter in adapters:
        if adapter.state == "unloading":
            try:
                driver.unload_adapter(target, adapter.name)
            except AdapterFailure as exc:
                _adapter_state(db, target, adapter, "unloading", f"unload failed: {exc}")
                continue
            with db.platform() as conn:
                repository.forget_adapter(conn, target.deployment_id, adapter.model_id)
            continue
        if served is None or observed.phase not in ("ready", "degraded"):
            continue
        lost = adapter.state == "loaded" and adapter.name not in served
        if adapter.state == "pending" or lost:
            try:
                driver.load_adapter(target, AdapterRef(adapter.name, adapter.location))
            except AdapterFailure as exc:
                _adapter_state(db, target, adapter, "failed", str(exc)[:1000])
                changed |= adapter.state == "loaded"
                continue
            _adapter_state(db, target, adapter, "loaded", None)
            changed = True
    return changed


def _adapter_state(
    db: SyncDatabase, target: Target, adapter: AdapterTarget, state: str, detail: str | None
) -> None:
    with db.platform() as conn:
        repository.set_adapter_state(conn, target.deployment_id, adapter.model_id, state, detail)


def _delete(
    db: SyncDatabase, driver: RuntimeDriver, row: ReconcileTarget, target: Target
) -> Outcome:
    try:
        driver.stop(target)
    except RuntimeFailure as exc:
        detail = f"deletion is waiting for the runtime: {exc}"
        with db.platform() as conn:
            repository.record_health(conn, row.id, row.status, detail[:2000])
        return Outcome(str(row.id), "delete_failed", row.status, detail, requeue=True)
    with db.platform() as conn:
        repository.delete_row(conn, row.id)
        repository.notify_routes_sync(conn, row.tenant_id)
    log.info("deployment deleted", extra={"deployment": str(row.id)})
    return Outcome(str(row.id), "deleted")


def _record_failure(db: SyncDatabase, row: ReconcileTarget, detail: str) -> Outcome:
    with db.platform() as conn:
        repository.record_health(conn, row.id, "unavailable", detail[:2000])
        if row.status != "unavailable":
            repository.notify_routes_sync(conn, row.tenant_id)
    return Outcome(str(row.id), "reconciled", "unavailable", detail)
