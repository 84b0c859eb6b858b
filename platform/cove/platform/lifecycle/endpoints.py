"""HTTP endpoints of the BU lifecycle: export, deletion request, restore."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, status
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from cove.platform.lifecycle import service
from cove.platform.lifecycle.settings import LifecycleSettings
from cove.tenants.bus import service as bus_service
from cove.tenants.bus.schemas import BusinessUnit, DeletionRequest
from cove.tenants.http import AdminReader, AdminWriter, Db

router = APIRouter(prefix="/api/v1/bus", tags=["business units"])

_ARCHIVE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/gzip": {}},
        "description": "The archive (`.tar.gz`); `X-Cove-Export-Sha256` is its SHA-256.",
    }
}


@router.get("/{bu_id}/export", response_class=FileResponse, responses=_ARCHIVE)
async def export_business_unit(bu_id: UUID, principal: AdminReader, db: Db) -> FileResponse:
    """Download an archive of the BU: its record, members, configuration (policy, API keys
    without secrets, deployments, releases, adapters, grants, fine-tuning jobs) and metrics
    (usage events and rollups) as JSON lines, with a manifest. Platform admins, or the BU's
    admins. Deleting a BU needs an export from the last 24 hours (by default)."""
    workdir = Path(tempfile.mkdtemp(prefix="cove-export-"))
    try:
        result = await service.export(db, principal, bu_id, workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return FileResponse(
        result.path,
        media_type="application/gzip",
        filename=result.filename,
        headers={"X-Cove-Export-Sha256": result.sha256},
        background=BackgroundTask(shutil.rmtree, workdir, True),
    )


@router.post("/{bu_id}/deletion", status_code=status.HTTP_202_ACCEPTED)
async def request_business_unit_deletion(
    bu_id: UUID,
    principal: AdminWriter,
    db: Db,
    request: Request,
    body: DeletionRequest | None = None,
) -> BusinessUnit:
    """Delete the BU after a grace period (platform admins only). It stops serving at once
    (`deleting`); a platform admin may restore it until `purge_after`, when everything of it is
    purged. `grace_days: 0` purges at once. Needs a recent export (`export_required`)."""
    settings: LifecycleSettings = request.app.state.lifecycle
    bu = await bus_service.request_deletion(
        db,
        principal,
        bu_id,
        body or DeletionRequest(),
        default_grace_days=settings.bu_deletion_grace_days,
        export_max_age=timedelta(hours=settings.bu_export_max_age_hours),
    )
    if bu.purge_after is not None and bu.purge_after <= datetime.now(UTC):
        service.send_purge(request.app.state.celery, bu_id)
    return bu


@router.post("/{bu_id}/restore")
async def restore_business_unit(bu_id: UUID, principal: AdminWriter, db: Db) -> BusinessUnit:
    """Cancel the BU's deletion during its grace period (platform admins only): it gets back
    the status it had before."""
    return await bus_service.restore(db, principal, bu_id)
