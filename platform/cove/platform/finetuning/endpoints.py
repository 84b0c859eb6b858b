"""HTTP endpoints for a business unit's fine-tuning jobs."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, status

from cove.platform.deployments.endpoints import Tasks
from cove.platform.finetuning import service
from cove.platform.finetuning.schemas import Job, JobCreate, JobLogs, JobStatus
from cove.platform.finetuning.settings import FinetuneSettings
from cove.tenants.http import AdminReader, AdminWriter, Db

router = APIRouter(prefix="/api/v1/bus/{bu_id}", tags=["fine-tuning"])


def get_settings(request: Request) -> FinetuneSettings:
    found: FinetuneSettings | None = getattr(request.app.state, "finetune", None)
    if found is None:
        found = FinetuneSettings()
        request.app.state.finetune = found
    return found


Settings = Annotated[FinetuneSettings, Depends(get_settings)]


@router.get("/finetune-jobs")
async def list_jobs(
    bu_id: UUID,
    principal: AdminReader,
    db: Db,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[Job]:
    """The business unit's fine-tuning jobs, newest first."""
    return await service.list_jobs(db, principal, bu_id, status=status_, limit=limit)


@router.post("/finetune-jobs", status_code=status.HTTP_201_CREATED)
async def create_job(
    bu_id: UUID, body: JobCreate, principal: AdminWriter, db: Db, tasks: Tasks, settings: Settings
) -> Job:
    """Queue a job: repositories → dataset → LoRA training → evaluation → the adapter is
    registered in the catalog if it passes the promotion gate. Checked before anything runs:
    an SDK and a consumer repository, a granted base model with FIM tokens, hyperparameters,
    and the GPU quota (409 `gpu_quota_exceeded` with the arithmetic)."""
    return await service.create_job(db, principal, bu_id, body, tasks, settings)


@router.get("/finetune-jobs/{job_id}")
async def get_job(bu_id: UUID, job_id: UUID, principal: AdminReader, db: Db) -> Job:
    """A job's state, progress (%, step, loss, ETA), evaluation and, once it succeeded, its
    registered adapter."""
    return await service.get_job(db, principal, bu_id, job_id)


@router.get("/finetune-jobs/{job_id}/logs")
async def job_logs(
    bu_id: UUID,
    job_id: UUID,
    principal: AdminReader,
    db: Db,
    after: Annotated[int, Query(ge=0, description="Only lines with a larger id")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> JobLogs:
    """The job's log, oldest first; poll with `after` = the previous `next_after`."""
    return await service.job_logs(db, principal, bu_id, job_id, after=after, limit=limit)


@router.post("/finetune-jobs/{job_id}/cancel")
async def cancel_job(bu_id: UUID, job_id: UUID, principal: AdminWriter, db: Db) -> Job:
    """Cancel a job: a queued one ends at once, a running one within seconds (409
    `job_finished` when it already ended)."""
    return await service.cancel_job(db, principal, bu_id, job_id)


@router.post("/finetune-jobs/{job_id}/retry", status_code=status.HTTP_202_ACCEPTED)
async def retry_job(bu_id: UUID, job_id: UUID, principal: AdminWriter, db: Db, tasks: Tasks) -> Job:
    """Run a failed or cancelled job again from its last checkpoint (409 `job_not_retryable`
    otherwise)."""
    return await service.retry_job(db, principal, bu_id, job_id, tasks)
