"""Celery tasks for model deployments."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from celery import Celery

from cove.platform.core.db import SyncDatabase
from cove.platform.deployments import repository
from cove.platform.deployments.health import probe_instance

log = logging.getLogger(__name__)

HEALTH_CHECK = "deployment.health_check"


def check_all(db: SyncDatabase, client: httpx.Client) -> dict[str, int]:
    """Probe every deployment and record its status; returns counts per status."""
    counts: dict[str, int] = {}
    with db.platform() as conn:
        targets = repository.health_targets(conn)
    for target in targets:
        probe = probe_instance(client, target.endpoint_url, target.served_model_name)
        counts[probe.status] = counts.get(probe.status, 0) + 1
        with db.platform() as conn:
            repository.record_health(conn, target.id, probe.status, probe.detail)
            if probe.status != target.status:
                conn.execute("SELECT pg_notify('cove_routes', %s)", (str(target.id),))
                log.info(
                    "deployment status changed",
                    extra={"deployment": str(target.id), "status": probe.status},
                )
    return counts


def register(app: Celery, db_factory: Any) -> None:
    @app.task(name=HEALTH_CHECK, acks_late=True, ignore_result=False)
    def health_check() -> dict[str, int]:
        db: SyncDatabase = db_factory()
        with httpx.Client(timeout=5.0) as client:
            return check_all(db, client)
