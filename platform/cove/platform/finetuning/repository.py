"""SQL for fine-tuning jobs and their log.

The async functions serve the API inside a BU's transaction; the sync ones serve the Celery
tasks and the job runner (a process of its own, on the worker's machine or in a Kubernetes
Job), which report progress straight into the job's row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

_COLUMNS = """
    j.id, j.tenant_id, j.name, j.status, j.spec, j.base_model_id, m.name AS base_model,
    m.location AS base_model_location, j.runtime, j.gpus, j.attempt, j.cancel_requested,
    j.progress, j.step, j.total_steps, j.loss, j.eta_seconds, j.dataset_hash, j.reason,
    j.evaluation, j.adapter_model_id, j.adapter_name, j.worker_ref, j.created_by,
    j.created_at, j.started_at, j.finished_at, j.heartbeat_at, j.updated_at
"""
_SELECT = f"SELECT {_COLUMNS} FROM finetune_jobs j JOIN models m ON m.id = j.base_model_id"  # noqa: S608
ACTIVE = ("queued", "preparing", "training", "evaluating")


@dataclass(frozen=True, slots=True)
class JobRow:
    id: UUID
    tenant_id: UUID
    name: str
    status: str
    spec: dict[str, Any]
    base_model_id: UUID
    base_model: str
    base_model_location: str
    runtime: str
    gpus: int
    attempt: int
    cancel_requested: bool
    progress: float
    step: int | None
    total_steps: int | None
    loss: float | None
    eta_seconds: float | None
    dataset_hash: str | None
    reason: dict[str, Any] | None
    evaluation: dict[str, Any] | None
    adapter_model_id: UUID | None
    adapter_name: str
    worker_ref: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    updated_at: datetime

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


@dataclass(frozen=True, slots=True)
class LogRow:
    id: int
    attempt: int
    level: str
    message: str
    created_at: datetime


# --- the API (async) ------------------------------------------------------------------------


async def insert(conn: psycopg.AsyncConnection[Any], values: dict[str, Any]) -> UUID:
    cur = await conn.execute(
        "INSERT INTO finetune_jobs (tenant_id, name, spec, base_model_id, runtime, gpus,"
        " adapter_name, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            values["tenant_id"],
            values["name"],
            Jsonb(values["spec"]),
            values["base_model_id"],
            values["runtime"],
            values["gpus"],
            values["adapter_name"],
            values["created_by"],
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def get(
    conn: psycopg.AsyncConnection[Any], job_id: UUID, *, for_update: bool = False
) -> JobRow | None:
    async with conn.cursor(row_factory=class_row(JobRow)) as cur:
        lock = " FOR UPDATE OF j" if for_update else ""
        await cur.execute(f"{_SELECT} WHERE j.id = %s{lock}", (job_id,))
        return await cur.fetchone()


async def list_for_tenant(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, *, status: str | None, limit: int
) -> list[JobRow]:
    async with conn.cursor(row_factory=class_row(JobRow)) as cur:
        await cur.execute(
            f"{_SELECT} WHERE j.tenant_id = %s AND (%s::text IS NULL OR j.status = %s)"
            " ORDER BY j.created_at DESC, j.id LIMIT %s",
            (tenant_id, status, status, limit),
        )
        return await cur.fetchall()


async def active_gpus(conn: psycopg.AsyncConnection[Any], tenant_id: UUID) -> int:
    """GPUs held by the BU's jobs that have not finished (queued ones hold theirs too: they
    were admitted against the quota)."""
    cur = await conn.execute(
        "SELECT coalesce(sum(gpus), 0) FROM finetune_jobs"
        " WHERE tenant_id = %s AND status = ANY(%s)",
        (tenant_id, list(ACTIVE)),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def request_cancel(conn: psycopg.AsyncConnection[Any], job_id: UUID) -> None:
    await conn.execute(
        "UPDATE finetune_jobs SET cancel_requested = true, updated_at = now() WHERE id = %s",
        (job_id,),
    )


async def finish_now(
    conn: psycopg.AsyncConnection[Any], job_id: UUID, status: str, reason: dict[str, Any]
) -> None:
    """End a job that never started (a queued job cancelled)."""
    await conn.execute(
        "UPDATE finetune_jobs SET status = %s, reason = %s, finished_at = now(),"
        " updated_at = now() WHERE id = %s",
        (status, Jsonb(reason), job_id),
    )


async def requeue(conn: psycopg.AsyncConnection[Any], job_id: UUID) -> None:
    """A retry: the same job, the next attempt, from its last checkpoint."""
    await conn.execute(
        "UPDATE finetune_jobs SET status = 'queued', attempt = attempt + 1,"
        " cancel_requested = false, reason = NULL, worker_ref = NULL, started_at = NULL,"
        " finished_at = NULL, heartbeat_at = NULL, eta_seconds = NULL, updated_at = now()"
        " WHERE id = %s",
        (job_id,),
    )


async def add_log_async(
    conn: psycopg.AsyncConnection[Any], job: JobRow, level: str, message: str
) -> None:
    await conn.execute(
        "INSERT INTO finetune_job_logs (tenant_id, job_id, attempt, level, message)"
        " VALUES (%s, %s, %s, %s, %s)",
        (job.tenant_id, job.id, job.attempt, level, message),
    )


async def logs(
    conn: psycopg.AsyncConnection[Any], job_id: UUID, *, after: int, limit: int
) -> list[LogRow]:
    async with conn.cursor(row_factory=class_row(LogRow)) as cur:
        await cur.execute(
            "SELECT id, attempt, level, message, created_at FROM finetune_job_logs"
            " WHERE job_id = %s AND id > %s ORDER BY id LIMIT %s",
            (job_id, after, limit),
        )
        return await cur.fetchall()


# --- the workers and the runner (sync) ------------------------------------------------------


def get_sync(conn: psycopg.Connection[Any], job_id: UUID) -> JobRow | None:
    with conn.cursor(row_factory=class_row(JobRow)) as cur:
        cur.execute(f"{_SELECT} WHERE j.id = %s", (job_id,))
        return cur.fetchone()


def active_jobs(conn: psycopg.Connection[Any]) -> list[JobRow]:
    with conn.cursor(row_factory=class_row(JobRow)) as cur:
        cur.execute(f"{_SELECT} WHERE j.status = ANY(%s) ORDER BY j.created_at", (list(ACTIVE),))
        return cur.fetchall()


def claim(conn: psycopg.Connection[Any], job_id: UUID, attempt: int, worker_ref: str) -> bool:
    """Mark a queued job as launched by `worker_ref`; False when another launcher was first,
    the job is no longer queued, or it is already at a later attempt."""
    cur = conn.execute(
        "UPDATE finetune_jobs SET worker_ref = %s, heartbeat_at = now(), updated_at = now()"
        " WHERE id = %s AND attempt = %s AND status = 'queued' AND worker_ref IS NULL",
        (worker_ref, job_id, attempt),
    )
    return cur.rowcount == 1


def release_claim(conn: psycopg.Connection[Any], job_id: UUID, attempt: int) -> None:
    conn.execute(
        "UPDATE finetune_jobs SET worker_ref = NULL WHERE id = %s AND attempt = %s"
        " AND status = 'queued'",
        (job_id, attempt),
    )


def set_worker_ref(
    conn: psycopg.Connection[Any], job_id: UUID, attempt: int, worker_ref: str
) -> None:
    conn.execute(
        "UPDATE finetune_jobs SET worker_ref = %s WHERE id = %s AND attempt = %s",
        (worker_ref, job_id, attempt),
    )


def report(
    conn: psycopg.Connection[Any], job_id: UUID, attempt: int, values: dict[str, Any]
) -> bool:
    """The runner's progress report. Only the attempt that runs may write; a finished job is
    never changed again. Returns whether the cancel flag is up."""
    # Column names come from this package's callers, never from a request.
    assignments = ", ".join(f"{column} = %({column})s" for column in values)
    params = {
        **{k: Jsonb(v) if isinstance(v, dict) else v for k, v in values.items()},
        "id": job_id,
        "attempt": attempt,
        "active": list(ACTIVE),
    }
    cur = conn.execute(
        f"UPDATE finetune_jobs SET {assignments}, heartbeat_at = now(), updated_at = now()"  # noqa: S608
        " WHERE id = %(id)s AND attempt = %(attempt)s AND status = ANY(%(active)s)"
        " RETURNING cancel_requested",
        params,
    )
    row = cur.fetchone()
    return bool(row[0]) if row else True


def cancel_requested(conn: psycopg.Connection[Any], job_id: UUID, attempt: int) -> bool:
    cur = conn.execute(
        "SELECT cancel_requested OR status <> ALL(%s) OR attempt <> %s"
        " FROM finetune_jobs WHERE id = %s",
        (list(ACTIVE), attempt, job_id),
    )
    row = cur.fetchone()
    return True if row is None else bool(row[0])


def add_log(
    conn: psycopg.Connection[Any],
    tenant_id: UUID,
    job_id: UUID,
    attempt: int,
    level: str,
    message: str,
) -> None:
    conn.execute(
        "INSERT INTO finetune_job_logs (tenant_id, job_id, attempt, level, message)"
        " VALUES (%s, %s, %s, %s, %s)",
        (tenant_id, job_id, attempt, level, message[:4000]),
    )
