"""Rules for fine-tuning jobs: admission (repositories, base model, hyperparameters, GPU
quota), cancel and retry. Each change is one transaction with its audit entry and a log line;
the start task is sent only after that transaction commits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from celery import Celery

from cove.finetune.errors import FinetuneError
from cove.finetune.tinymodel import is_model_dir
from cove.finetune.train import describe_base_model, preset
from cove.platform.core.celery_app import AfterCommit
from cove.platform.core.db import Database
from cove.platform.core.errors import Conflict, NotFound, ValidationFailed
from cove.platform.deployments import repository as deployments
from cove.platform.finetuning import repository
from cove.platform.finetuning.repository import JobRow, LogRow
from cove.platform.finetuning.schemas import (
    FINISHED_STATUSES,
    Job,
    JobCreate,
    JobLogLine,
    JobLogs,
    JobProgress,
)
from cove.platform.finetuning.settings import FinetuneSettings
from cove.platform.models import repository as catalog
from cove.platform.models import service as models
from cove.platform.models.locations import location_kind
from cove.tenants import audit
from cove.tenants.principal import Principal, require_bu_admin, require_bu_visible

START = "finetune.start"
_GIT_URL = re.compile(r"^(https://|http://|ssh://|git://|git@[\w.-]+:|file://)")
_CREDENTIALS_IN_URL = re.compile(r"^[a-z+]+://[^/@\s]+@")


def _bu_admin(principal: Principal, tenant_id: UUID) -> None:
    require_bu_admin(principal, tenant_id, "run fine-tuning jobs")


def to_public(row: JobRow) -> Job:
    return Job(
        id=row.id,
        bu_id=row.tenant_id,
        name=row.name,
        status=row.status,
        cancel_requested=row.cancel_requested,
        attempt=row.attempt,
        runtime=row.runtime,
        gpus=row.gpus,
        base_model=row.base_model,
        spec=row.spec,
        progress=JobProgress(
            percent=round(row.progress, 1),
            step=row.step,
            total_steps=row.total_steps,
            loss=row.loss,
            eta_seconds=row.eta_seconds,
        ),
        reason=row.reason,
        evaluation=row.evaluation,
        dataset_hash=row.dataset_hash,
        adapter_name=row.adapter_name,
        adapter_model_id=row.adapter_model_id,
        created_by=row.created_by,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        updated_at=row.updated_at,
    )


def _check_repositories(data: JobCreate) -> None:
    roles = [repo.role for repo in data.repositories]
    if "sdk" not in roles:
        raise ValidationFailed(
            "repositories: mark at least one repository with role `sdk` (the private SDK)",
            code="sdk_repository_required",
            param="repositories",
        )
    if "consumer" not in roles:
        raise ValidationFailed(
            "repositories: add at least one repository of code that uses the SDK"
            " (role `consumer`); the examples are cut from its call sites",
            code="consumer_repository_required",
            param="repositories",
        )
    seen: set[str] = set()
    for index, repo in enumerate(data.repositories):
        where = f"repositories[{index}].location"
        location = repo.location.strip()
        if _CREDENTIALS_IN_URL.match(location):
            raise ValidationFailed(
                f"{where}: do not put credentials in the URL; store them in a secret and"
                " name it in `credentials_secret`",
                code="credentials_in_url",
                param=where,
            )
        if not (_GIT_URL.match(location) or location.startswith("/")):
            raise ValidationFailed(
                f"{where}: a git URL (https://, ssh://, git@host:path) or an absolute"
                " directory on the workers",
                code="invalid_repository",
                param=where,
            )
        if repo.credentials_secret and not location.startswith("https://"):
            raise ValidationFailed(
                f"{where}: `credentials_secret` applies to https git URLs",
                code="invalid_repository",
                param=where,
            )
        if location in seen:
            raise ValidationFailed(
                f"{where}: {location} is listed twice", code="duplicate_repository", param=where
            )
        seen.add(location)


def _hyperparameters(data: JobCreate) -> dict[str, Any]:
    overrides = data.hyperparameters.model_dump(exclude_none=True)
    try:
        chosen = preset(data.preset, **overrides)
        chosen.validate()
    except FinetuneError as exc:
        raise ValidationFailed(
            f"hyperparameters: {exc.message}", code=exc.error_code, param="hyperparameters"
        ) from None
    return chosen.to_json()


def _check_base_model(location: str, fim_tokens: dict[str, str] | None, name: str) -> None:
    """A base model must be able to fill in the middle; a local directory is asked, a volume
    or S3 location is trusted to the catalog's FIM tokens."""
    if location_kind(location) == "local" and is_model_dir(Path(location)) is None:
        try:
            describe_base_model(Path(location))
        except FinetuneError as exc:
            raise ValidationFailed(
                f"base_model: '{name}' cannot be fine-tuned: {exc.message}",
                code=exc.error_code,
                param="base_model",
            ) from None
        return
    if not fim_tokens:
        raise ValidationFailed(
            f"base_model: '{name}' has no fill-in-the-middle tokens in the catalog; choose a"
            " FIM code model (StarCoder, DeepSeek Coder, Qwen2.5-Coder, CodeLlama…)",
            code="no_fim_tokens",
            param="base_model",
        )


async def _admit_gpus(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, requested: int, name: str
) -> None:
    if requested == 0:
        return
    limits = await deployments.lock_tenant(conn, tenant_id)
    if limits is None:
        raise NotFound("No such business unit", code="bu_not_found")
    used = await deployments.usage(conn, tenant_id)
    if used.gpus + requested > limits.gpu_quota:
        total = used.gpus + requested
        raise Conflict(
            f"Fine-tuning job '{name}' needs {requested} GPU(s); the business unit already"
            f" uses {used.gpus} of its GPU quota of {limits.gpu_quota} (deployments and"
            f" running jobs), and {used.gpus} + {requested} = {total} > {limits.gpu_quota}",
            code="gpu_quota_exceeded",
            details={"requested": requested, "in_use": used.gpus, "quota": limits.gpu_quota},
        )


async def create_job(
    db: Database,
    principal: Principal,
    tenant_id: UUID,
    data: JobCreate,
    tasks: Celery | None,
    settings: FinetuneSettings,
) -> Job:
    _bu_admin(principal, tenant_id)
    _check_repositories(data)
    hyperparameters = _hyperparameters(data)
    runtime = settings.finetune_runtime
    gpus = data.gpus if data.gpus is not None else (1 if runtime == "kubernetes" else 0)
    if runtime == "local" and gpus:
        raise ValidationFailed(
            "gpus: this installation trains with the local runtime on the workers' CPUs;"
            " leave gpus unset or 0",
            code="gpus_not_available",
            param="gpus",
        )
    if runtime == "kubernetes" and gpus == 0:
        raise ValidationFailed(
            "gpus: training on Kubernetes needs at least one GPU",
            code="gpus_required",
            param="gpus",
        )
    outbox = AfterCommit(tasks) if tasks is not None else None
    async with db.tenant(tenant_id) as conn:
        bu = await deployments.tenant_limits(conn, tenant_id)
        if bu is None:
            raise NotFound("No such business unit", code="bu_not_found")
        base = await models.base_model_for_bu(conn, tenant_id, data.base_model)
        _check_base_model(base.location, base.fim_tokens, base.name)
        adapter_name = data.adapter_name or f"{bu.slug}-{data.name}"
        if await catalog.get_by_name(conn, adapter_name) is not None:
            raise Conflict(
                f"A model named '{adapter_name}' is in the catalog; choose another `adapter_name`",
                code="model_exists",
                param="adapter_name",
            )
        await _admit_gpus(conn, tenant_id, gpus, data.name)
        spec = {
            **data.model_dump(mode="json", exclude={"hyperparameters", "gpus"}),
            "hyperparameters": hyperparameters,
            "overrides": data.hyperparameters.model_dump(exclude_none=True),
        }
        try:
            async with conn.transaction():
                job_id = await repository.insert(
                    conn,
                    {
                        "tenant_id": tenant_id,
                        "name": data.name,
                        "spec": spec,
                        "base_model_id": base.id,
                        "runtime": runtime,
                        "gpus": gpus,
                        "adapter_name": adapter_name,
                        "created_by": principal.username,
                    },
                )
        except psycopg.errors.UniqueViolation:
            raise Conflict(
                f"A fine-tuning job named '{data.name}' exists in this business unit",
                code="job_exists",
                param="name",
            ) from None
        row = await repository.get(conn, job_id)
        assert row is not None
        await repository.add_log_async(
            conn,
            row,
            "info",
            f"queued by {principal.username}: {len(data.repositories)} repositories, base"
            f" {base.name}, preset {data.preset}, {gpus} GPU(s) on {runtime}",
        )
        await audit.record(
            conn,
            actor=principal.username,
            action="finetune_job.create",
            tenant_id=tenant_id,
            target=f"finetune_job:{data.name}",
            changes={"base_model": [None, base.name], "gpus": [None, gpus]},
        )
        if outbox is not None:
            outbox.add(START, job_id, row.attempt)
    if outbox is not None:
        outbox.send()
    return to_public(row)


async def _job(conn: psycopg.AsyncConnection[Any], tenant_id: UUID, job_id: UUID) -> JobRow:
    row = await repository.get(conn, job_id, for_update=True)
    if row is None or row.tenant_id != tenant_id:
        raise NotFound("No such fine-tuning job", code="job_not_found")
    return row


async def list_jobs(
    db: Database, principal: Principal, tenant_id: UUID, *, status: str | None, limit: int
) -> list[Job]:
    require_bu_visible(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        rows = await repository.list_for_tenant(conn, tenant_id, status=status, limit=limit)
    return [to_public(row) for row in rows]


async def get_job(db: Database, principal: Principal, tenant_id: UUID, job_id: UUID) -> Job:
    require_bu_visible(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        row = await repository.get(conn, job_id)
    if row is None or row.tenant_id != tenant_id:
        raise NotFound("No such fine-tuning job", code="job_not_found")
    return to_public(row)


def _line(row: LogRow) -> JobLogLine:
    return JobLogLine(
        id=row.id,
        attempt=row.attempt,
        level=row.level,
        message=row.message,
        created_at=row.created_at,
    )


async def job_logs(
    db: Database, principal: Principal, tenant_id: UUID, job_id: UUID, *, after: int, limit: int
) -> JobLogs:
    require_bu_visible(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        row = await repository.get(conn, job_id)
        if row is None or row.tenant_id != tenant_id:
            raise NotFound("No such fine-tuning job", code="job_not_found")
        lines = await repository.logs(conn, job_id, after=after, limit=limit)
    return JobLogs(
        job_id=job_id,
        lines=[_line(line) for line in lines],
        next_after=lines[-1].id if lines else after,
    )


async def cancel_job(db: Database, principal: Principal, tenant_id: UUID, job_id: UUID) -> Job:
    """A job nobody has started ends at once; a running one is asked to stop and ends as
    `cancelled` at its next check (within seconds), keeping its checkpoints for a retry."""
    _bu_admin(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        row = await _job(conn, tenant_id, job_id)
        if row.status in FINISHED_STATUSES:
            raise Conflict(
                f"The job has already {row.status}",
                code="job_finished",
                details={"status": row.status},
            )
        if row.status == "queued" and row.worker_ref is None:
            await repository.finish_now(
                conn,
                job_id,
                "cancelled",
                {
                    "code": "cancelled",
                    "message": f"cancelled by {principal.username} before it started",
                },
            )
        else:
            await repository.request_cancel(conn, job_id)
        await repository.add_log_async(
            conn, row, "warning", f"cancel requested by {principal.username}"
        )
        await audit.record(
            conn,
            actor=principal.username,
            action="finetune_job.cancel",
            tenant_id=tenant_id,
            target=f"finetune_job:{row.name}",
            changes={"status": [row.status, "cancelled"]},
        )
        updated = await repository.get(conn, job_id)
    assert updated is not None
    return to_public(updated)


async def retry_job(
    db: Database, principal: Principal, tenant_id: UUID, job_id: UUID, tasks: Celery | None
) -> Job:
    """Run a failed or cancelled job again: the next attempt resumes from its last checkpoint
    and is admitted against the GPU quota again."""
    _bu_admin(principal, tenant_id)
    outbox = AfterCommit(tasks) if tasks is not None else None
    async with db.tenant(tenant_id) as conn:
        row = await _job(conn, tenant_id, job_id)
        if row.status not in ("failed", "cancelled"):
            raise Conflict(
                f"Only a failed or cancelled job can be retried; this one is {row.status}",
                code="job_not_retryable",
                details={"status": row.status},
            )
        await _admit_gpus(conn, tenant_id, row.gpus, row.name)
        await repository.requeue(conn, job_id)
        updated = await repository.get(conn, job_id)
        assert updated is not None
        await repository.add_log_async(
            conn, updated, "info", f"attempt {updated.attempt} queued by {principal.username}"
        )
        await audit.record(
            conn,
            actor=principal.username,
            action="finetune_job.retry",
            tenant_id=tenant_id,
            target=f"finetune_job:{row.name}",
            changes={"status": [row.status, "queued"], "attempt": [row.attempt, updated.attempt]},
        )
        if outbox is not None:
            outbox.add(START, job_id, updated.attempt)
    if outbox is not None:
        outbox.send()
    return to_public(updated)
