"""Celery tasks for fine-tuning jobs.

- `finetune.start` (sent after the API's transaction commits): launch one attempt of a job —
  a runner process on this worker's machine (local runtime), or a Kubernetes Job on GPU
  nodes. The task returns at once: training runs for hours and must not hold a worker slot.
- `finetune.sweep` (beat): notice what no runner reported — a runner process that died, a
  Kubernetes Job that failed or vanished, a job silent past the heartbeat timeout, a start
  task that was lost — and end or restart those jobs with the reason.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from celery import Celery

from cove.platform.core.db import SyncDatabase
from cove.platform.deployments.k8s.render import bu_namespace
from cove.platform.finetuning import k8s, repository
from cove.platform.finetuning.repository import JobRow
from cove.platform.finetuning.runner import job_dir
from cove.platform.finetuning.settings import FinetuneSettings
from cove.platform.local.procs import pid_alive, spawn

log = logging.getLogger(__name__)

START = "finetune.start"
SWEEP = "finetune.sweep"
# Runner processes this worker started, so that their exit is collected (no zombies) and
# seen at once.
_children: dict[int, subprocess.Popen[bytes]] = {}


@functools.cache
def _settings() -> FinetuneSettings:
    return FinetuneSettings()


def _local_ref(pid: int) -> str:
    return f"local:{socket.gethostname()}:{pid}"


def _local_pid(ref: str) -> int | None:
    """The pid of a runner started on this machine, else None."""
    kind, _, rest = ref.partition(":")
    host, _, pid = rest.rpartition(":")
    if kind != "local" or host != socket.gethostname() or not pid.isdigit():
        return None
    return int(pid)


def _running(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    if not pid_alive(pid):
        return False
    try:  # a zombie is not running
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _end(db: SyncDatabase, job: JobRow, status: str, code: str, message: str) -> None:
    with db.tenant(job.tenant_id) as conn:
        repository.report(
            conn,
            job.id,
            job.attempt,
            {
                "status": status,
                "reason": {"code": code, "message": message},
                "finished_at": datetime.now(UTC),
                "eta_seconds": None,
            },
        )
        repository.add_log(
            conn,
            job.tenant_id,
            job.id,
            job.attempt,
            "warning" if status == "cancelled" else "error",
            f"{status} ({code}): {message}",
        )
    log.warning("fine-tuning job ended by the sweep", extra={"job": str(job.id), "code": code})


def launch(db: SyncDatabase, settings: FinetuneSettings, job_id: UUID, attempt: int) -> str:
    """Start one attempt; returns what happened (`started`, `skipped`, `failed`)."""
    with db.platform() as conn:
        job = repository.get_sync(conn, job_id)
    if job is None or job.attempt != attempt or job.status != "queued" or job.worker_ref:
        return "skipped"
    if job.cancel_requested:
        _end(db, job, "cancelled", "cancelled", "cancelled before it started")
        return "skipped"
    if job.runtime == "kubernetes":
        return _launch_kubernetes(db, settings, job)
    return _launch_local(db, settings, job)


def _launch_local(db: SyncDatabase, settings: FinetuneSettings, job: JobRow) -> str:
    with db.tenant(job.tenant_id) as conn:
        if not repository.claim(conn, job.id, job.attempt, "local:starting"):
            return "skipped"
    directory = job_dir(settings, job)
    python = str(settings.finetune_python or sys.executable)
    try:
        proc = spawn(
            [python, "-m", "cove.platform.finetuning.runner", str(job.id), str(job.attempt)],
            env={**os.environ, "COVE_FINETUNE_DIR": str(settings.finetune_dir.resolve())},
            log_file=directory / f"runner-{job.attempt}.log",
        )
    except OSError as exc:
        _end(db, job, "failed", "launch_failed", f"the runner could not be started: {exc}")
        return "failed"
    _children[proc.pid] = proc
    with db.tenant(job.tenant_id) as conn:
        repository.set_worker_ref(conn, job.id, job.attempt, _local_ref(proc.pid))
    log.info("fine-tuning runner started", extra={"job": str(job.id), "pid": proc.pid})
    return "started"


@functools.cache
def _applier() -> Any:
    from cove.platform.deployments.k8s.client import KubernetesApplier
    from cove.platform.deployments.runtime.kubernetes import kube_configuration
    from cove.platform.deployments.settings import RuntimeSettings

    runtime = RuntimeSettings()
    return KubernetesApplier.from_configuration(
        kube_configuration(runtime), timeout_seconds=runtime.kube_timeout_seconds
    )


def _job_key(job: JobRow, slug: str) -> tuple[str, str, str, str]:
    return ("batch/v1", "Job", bu_namespace(slug), k8s.job_name(str(job.id), job.attempt))


def _slug(db: SyncDatabase, job: JobRow) -> str:
    with db.tenant(job.tenant_id) as conn:
        row = conn.execute("SELECT slug FROM tenants WHERE id = %s", (job.tenant_id,)).fetchone()
    return str(row[0]) if row else "unknown"


def _launch_kubernetes(db: SyncDatabase, settings: FinetuneSettings, job: JobRow) -> str:
    from cove.platform.deployments.k8s.client import KubernetesError

    slug = _slug(db, job)
    manifest = k8s.render_job(
        settings, bu=slug, job_id=str(job.id), job=job.name, attempt=job.attempt, gpus=job.gpus
    )
    ref = f"k8s:{manifest['metadata']['namespace']}/{manifest['metadata']['name']}"
    with db.tenant(job.tenant_id) as conn:
        if not repository.claim(conn, job.id, job.attempt, ref):
            return "skipped"
    try:
        _applier().apply_objects([k8s.render_namespace(slug), manifest])
    except KubernetesError as exc:
        if exc.status == 0:
            # The API server is away: give the claim back; the sweep tries again.
            with db.tenant(job.tenant_id) as conn:
                repository.release_claim(conn, job.id, job.attempt)
            return "skipped"
        _end(db, job, "failed", "launch_failed", f"Kubernetes refused the Job: {exc}")
        return "failed"
    log.info("fine-tuning Job submitted", extra={"job": str(job.id), "ref": ref})
    return "started"


def sweep(
    db: SyncDatabase,
    settings: FinetuneSettings,
    send_start: Callable[[UUID, int], None],
    *,
    now: datetime | None = None,
) -> dict[str, int]:
    """One pass over every job that has not finished; returns counts of what it did."""
    now = now or datetime.now(UTC)
    counts: dict[str, int] = {}

    def count(what: str) -> None:
        counts[what] = counts.get(what, 0) + 1

    with db.platform() as conn:
        jobs = repository.active_jobs(conn)
    for job in jobs:
        if job.status == "queued" and job.worker_ref is None:
            if now - job.updated_at > timedelta(seconds=settings.finetune_start_grace_seconds):
                send_start(job.id, job.attempt)
                count("restarted")
            continue
        if job.runtime == "local" and job.worker_ref:
            pid = _local_pid(job.worker_ref)
            if pid is not None and not _running(pid):
                if job.cancel_requested:
                    _end(db, job, "cancelled", "cancelled", "cancelled; the runner has stopped")
                    count("cancelled")
                else:
                    _end(
                        db,
                        job,
                        "failed",
                        "crashed",
                        "the training process exited without reporting a result (out of"
                        " memory, or killed); retry to resume from the last checkpoint",
                    )
                    count("crashed")
                continue
        kubernetes = job.runtime == "kubernetes" and (job.worker_ref or "").startswith("k8s:")
        if kubernetes and _sweep_kubernetes(db, settings, job, now):
            count("ended")
            continue
        if kubernetes and job.status == "queued":
            continue  # its pod has not started the runner yet: the start timeout applies
        heartbeat = job.heartbeat_at or job.updated_at
        if now - heartbeat > timedelta(seconds=settings.finetune_heartbeat_timeout_seconds):
            _end(
                db,
                job,
                "failed",
                "lost",
                f"no report from the job for {settings.finetune_heartbeat_timeout_seconds:.0f}"
                " s; retry to resume from the last checkpoint",
            )
            count("lost")
    return counts


def _sweep_kubernetes(
    db: SyncDatabase, settings: FinetuneSettings, job: JobRow, now: datetime
) -> bool:
    from cove.platform.deployments.k8s.client import KubernetesError

    key = _job_key(job, _slug(db, job))
    timeout = settings.finetune_start_timeout_seconds
    try:
        outcome, detail = k8s.job_outcome(_applier().read_object(key))
        if job.cancel_requested and job.status == "queued" and outcome == "running":
            # Never started (no GPU free, say): the runner cannot see the flag.
            _applier().delete_object(key)
            _end(db, job, "cancelled", "cancelled", "cancelled before the training pod started")
            return True
        launched = job.heartbeat_at or job.updated_at
        if (
            job.status == "queued"
            and outcome == "running"
            and now - launched > timedelta(seconds=timeout)
        ):
            _applier().delete_object(key)
            _end(
                db,
                job,
                "failed",
                "not_started",
                f"the training pod did not start within {timeout:.0f} s of its launch: no node"
                f" with {job.gpus} free {settings.finetune_gpu_resource} took it, or its image"
                " cannot be pulled; its GPUs are given back, retry when GPUs are free",
            )
            return True
    except KubernetesError:
        return False  # the API server is away; look again at the next sweep
    if outcome == "failed":
        _end(db, job, "failed", "crashed", detail or "the training pod failed")
        return True
    if outcome in ("missing", "succeeded"):
        _end(db, job, "failed", "lost", detail or "the training pod ended without a result")
        return True
    return False


def register(app: Celery, db_factory: Callable[[], SyncDatabase]) -> None:
    @app.task(name=START, acks_late=True, ignore_result=False)
    def start(job_id: str, attempt: str) -> str:
        try:
            wanted = UUID(job_id)
        except ValueError:
            return "skipped"
        return launch(db_factory(), _settings(), wanted, int(attempt))

    @app.task(name=SWEEP, acks_late=True, ignore_result=False)
    def sweep_jobs() -> dict[str, int]:
        def send_start(job_id: UUID, attempt: int) -> None:
            app.send_task(START, args=[str(job_id), str(attempt)])

        return sweep(db_factory(), _settings(), send_start)


def beat_schedule(sweep_seconds: float | None = None) -> dict[str, dict[str, Any]]:
    seconds = sweep_seconds or _settings().finetune_sweep_seconds
    return {"finetune-sweep": {"task": SWEEP, "schedule": seconds}}
