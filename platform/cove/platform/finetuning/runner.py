"""The job runner: one attempt of one fine-tuning job, in a process of its own.

`python -m cove.platform.finetuning.runner JOB_ID ATTEMPT` runs on a worker's machine (local
runtime) or as the container of a Kubernetes Job (trainer image). It reads the job from
Postgres, runs `cove.finetune.pipeline.run_pipeline`, and writes the job's state, progress and
log into the job's row as it goes; cancellation is a flag on that row, checked every couple
of seconds. A succeeded run registers its adapter in the model catalog (with the same checks
as the API: the base, the rank limit) before the job is marked succeeded; nothing is
registered otherwise.

On a multi-GPU Kubernetes Job the container runs `torchrun --standalone --nproc_per_node=N -m
cove.platform.finetuning.runner JOB_ID ATTEMPT`: one runner per GPU. Rank 0 does all of the
above; the other ranks only wait until rank 0 starts training, train their share of each
batch with it (`cove.finetune.train` is data parallel under torchrun), and exit. They write
nothing: no job state, progress, log, checkpoint or adapter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit
from uuid import UUID

from cove.finetune.dataset import DatasetConfig
from cove.finetune.errors import FinetuneError
from cove.finetune.evaluate import PromotionGate
from cove.finetune.pipeline import (
    DATASET_DIR,
    RUN_FILE,
    TRAINING_DIR,
    RunConfig,
    RunResult,
    run_pipeline,
)
from cove.finetune.registry import AdapterRecord
from cove.finetune.sources import RepoSpec
from cove.finetune.train import Hyperparameters, train_adapter
from cove.platform.core.db import Database, SyncDatabase
from cove.platform.core.errors import CoveError
from cove.platform.core.logging import configure_logging
from cove.platform.finetuning import repository
from cove.platform.finetuning.repository import JobRow
from cove.platform.finetuning.settings import FinetuneSettings
from cove.platform.models import service as models
from cove.platform.models.schemas import AdapterCreate
from cove.tenants.principal import Principal, Role, Scope

log = logging.getLogger(__name__)

REPORT_SECONDS = 2.0
LOG_EVERY_STEPS = 50


class RunnerError(Exception):
    """The job cannot start; `code` is its machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def job_dir(settings: FinetuneSettings, job: JobRow) -> Path:
    return settings.finetune_dir.resolve() / str(job.tenant_id) / str(job.id)


def credentials_variable(secret: str) -> str:
    return "COVE_GIT_CREDENTIALS_" + "".join(c if c.isalnum() else "_" for c in secret).upper()


def _with_credentials(location: str, secret: str | None) -> str:
    if secret is None:
        return location
    value = os.environ.get(credentials_variable(secret))
    if not value or ":" not in value:
        raise RunnerError(
            "credentials_missing",
            f"the secret '{secret}' is not available to the runner (expected `user:token` in"
            f" {credentials_variable(secret)})",
        )
    user, token = value.split(":", 1)
    parts = urlsplit(location)
    netloc = f"{quote(user, safe='')}:{quote(token, safe='')}@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _base_model_path(settings: FinetuneSettings, location: str) -> Path:
    if location.startswith("/"):
        return Path(location)
    if location.startswith(("s3://", "pvc://")):
        raise RunnerError(
            "invalid_base_model",
            f"the runner reads base models from a directory or the model volume, not {location}",
        )
    return settings.model_store_dir / location


def build_config(settings: FinetuneSettings, job: JobRow) -> RunConfig:
    spec = job.spec
    repos = [
        RepoSpec(
            location=_with_credentials(repo["location"], repo.get("credentials_secret")),
            role=repo["role"],
        )
        for repo in spec["repositories"]
    ]
    hyper = dict(spec["hyperparameters"])
    hyper["target_modules"] = tuple(hyper["target_modules"])
    dataset = spec.get("dataset") or {}
    gate = spec.get("gate") or {}
    evaluation = spec.get("evaluation") or {}
    return RunConfig(
        repos=repos,
        base_model=_base_model_path(settings, job.base_model_location),
        out_dir=job_dir(settings, job),
        hyperparameters=Hyperparameters(**hyper),
        dataset=DatasetConfig(**dataset),
        gate=PromotionGate(**gate),
        adapter_name=job.adapter_name,
        registry_path=job_dir(settings, job) / "registry.json",
        eval_max_examples=int(evaluation.get("max_examples", 200)),
        eval_max_new_tokens=int(evaluation.get("max_new_tokens", 48)),
        resume=True,
        cpu_threads=settings.finetune_cpu_threads,
    )


def adapter_location(settings: FinetuneSettings, path: str) -> str:
    """The catalog location of an adapter the runner wrote: the directory itself locally; in
    Kubernetes the same directory as vLLM pods mount it, a path on the training volume."""
    if settings.finetune_runtime != "kubernetes":
        return path
    relative = Path(path).resolve().relative_to(settings.finetune_dir.resolve())
    return f"pvc://{settings.finetune_volume_claim}/{relative.as_posix()}"


def _system_principal(job: JobRow) -> Principal:
    return Principal(
        subject=f"cove:finetune-job:{job.id}",
        username=f"finetune-job:{job.name}",
        tenant_id=job.tenant_id,
        user_id=None,
        roles=frozenset({Role.BU_ADMIN}),
        scopes=frozenset({Scope.ADMIN_READ, Scope.ADMIN_WRITE}),
    )


async def _register(settings: FinetuneSettings, job: JobRow, record: AdapterRecord) -> UUID:
    db = Database(settings, min_size=1)
    await db.open()
    try:
        created = await models.create_adapter(
            db,
            _system_principal(job),
            job.tenant_id,
            AdapterCreate(
                name=record.name,
                base_model=job.base_model,
                location=adapter_location(settings, record.adapter_path),
                rank=int(record.hyperparameters["rank"]),
                lineage={
                    "finetune_job": {"id": str(job.id), "name": job.name, "attempt": job.attempt},
                    "adapter_sha256": record.adapter_sha256,
                    "dataset": record.dataset,
                    "hyperparameters": record.hyperparameters,
                    "training": record.training,
                    "gate": record.gate,
                    "base_model": record.base_model,
                },
                scores=_flat_scores(record.scores),
            ),
        )
    finally:
        await db.close()
    return created.id


def _flat_scores(scores: dict[str, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for group, values in scores.items():
        if isinstance(values, dict):
            for name, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    flat[f"{group}.{name}"] = float(value)
        elif isinstance(values, int | float) and not isinstance(values, bool):
            flat[group] = float(values)
    return flat


@dataclass
class _Reporter:
    """Writes what the pipeline reports into the job's row, throttled, and answers whether
    the job was cancelled."""

    db: SyncDatabase
    job: JobRow
    state: str = "queued"
    last_report: float = 0.0
    last_logged_step: int = 0
    cancelled: bool = False

    def log(self, level: str, message: str) -> None:
        with self.db.tenant(self.job.tenant_id) as conn:
            repository.add_log(
                conn, self.job.tenant_id, self.job.id, self.job.attempt, level, message
            )

    def write(self, values: dict[str, Any]) -> None:
        with self.db.tenant(self.job.tenant_id) as conn:
            self.cancelled = repository.report(conn, self.job.id, self.job.attempt, values)
        self.last_report = time.monotonic()

    def on_event(self, result: RunResult) -> None:
        progress = {
            "progress": round(result.progress, 1),
            "step": result.step,
            "total_steps": result.total_steps,
            "loss": result.loss,
            "eta_seconds": result.eta_seconds,
            "dataset_hash": result.dataset_hash,
        }
        if result.state in ("preparing", "training", "evaluating") and result.state != self.state:
            self.state = result.state
            self.write({**progress, "status": result.state})
            if result.state == "evaluating" and result.training:
                self.log("info", _trained(result.training))
            self.log("info", _STATE_MESSAGES[result.state])
            return
        if result.step and result.step - self.last_logged_step >= LOG_EVERY_STEPS:
            self.last_logged_step = result.step
            self.log(
                "info",
                f"step {result.step}/{result.total_steps} loss {result.loss:.4f}"
                if result.loss is not None
                else f"step {result.step}/{result.total_steps}",
            )
        if time.monotonic() - self.last_report >= REPORT_SECONDS:
            self.write(progress)

    def should_cancel(self) -> bool:
        if time.monotonic() - self.last_report >= REPORT_SECONDS:
            with self.db.tenant(self.job.tenant_id) as conn:
                self.cancelled = repository.cancel_requested(conn, self.job.id, self.job.attempt)
            self.last_report = time.monotonic()
        return self.cancelled


_STATE_MESSAGES = {
    "preparing": "preparing: reading the repositories and building the dataset",
    "training": "training the LoRA adapter",
    "evaluating": "evaluating base and adapter on the held-out files",
}


def _trained(training: dict[str, Any]) -> str:
    message = f"trained {training.get('steps')} steps on {training.get('examples')} examples"
    if training.get("final_loss") is not None:
        message += f", final loss {training['final_loss']:.4f}"
    if training.get("resumed_from"):
        message += f", resumed from the checkpoint at step {training['resumed_from']}"
    return message


def _finish(reporter: _Reporter, status: str, values: dict[str, Any]) -> None:
    """The final write; retried for a while, since a lost final state would leave the job to
    the sweep's heartbeat timeout."""
    for attempt in range(10):
        try:
            with reporter.db.tenant(reporter.job.tenant_id) as conn:
                repository.report(
                    conn,
                    reporter.job.id,
                    reporter.job.attempt,
                    {**values, "status": status, "finished_at": _now_sql()},
                )
            return
        except Exception:  # Postgres away: try again, then give up loudly
            log.warning("could not record the job's final state", exc_info=True)
            time.sleep(min(30.0, 2.0**attempt))
    raise RuntimeError("the job's final state could not be recorded")


def _now_sql() -> datetime:
    return datetime.now(UTC)


def execute(settings: FinetuneSettings, db: SyncDatabase, job_id: UUID, attempt: int) -> str:
    """Run one attempt; returns the job's final status (or 'skipped' when the attempt is not
    the job's current one, or the job already ran)."""
    with db.platform() as conn:
        job = repository.get_sync(conn, job_id)
    if job is None or job.attempt != attempt or job.status != "queued":
        log.info("nothing to run", extra={"job": str(job_id), "attempt": attempt})
        return "skipped"
    reporter = _Reporter(db, job)
    reporter.write({"status": "preparing", "started_at": _now_sql(), "progress": 0.0})
    reporter.state = "preparing"
    reporter.log("info", f"attempt {attempt} started on {os.uname().nodename} (pid {os.getpid()})")
    if reporter.cancelled:
        _finish(reporter, "cancelled", {"reason": {"code": "cancelled", "message": "cancelled"}})
        reporter.log("warning", "cancelled before it started")
        return "cancelled"
    try:
        config = build_config(settings, job)
    except RunnerError as exc:
        _finish(reporter, "failed", {"reason": {"code": exc.code, "message": exc.message}})
        reporter.log("error", f"failed ({exc.code}): {exc.message}")
        return "failed"
    registered: list[UUID] = []

    def on_register(record: AdapterRecord) -> None:
        try:
            registered.append(asyncio.run(_register(settings, job, record)))
        except CoveError as exc:
            raise _CatalogRefused(exc) from None

    try:
        result = run_pipeline(
            config,
            should_cancel=reporter.should_cancel,
            on_event=reporter.on_event,
            on_register=on_register,
        )
    except _CatalogRefused as refused:
        _finish(
            reporter,
            "failed",
            {
                "reason": {"code": refused.error.error_code, "message": refused.error.message},
                "eta_seconds": None,
                # What the run reached, so the job shows the evaluation it was refused after.
                **_last_run(config),
            },
        )
        reporter.log(
            "error",
            f"failed ({refused.error.error_code}): the catalog refused the adapter:"
            f" {refused.error.message}",
        )
        return "failed"
    except Exception as exc:  # a crash ends the job with its reason
        _finish(
            reporter,
            "failed",
            {
                "reason": {"code": "crashed", "message": f"{type(exc).__name__}: {exc}"},
                "eta_seconds": None,
            },
        )
        reporter.log("error", f"failed (crashed): {type(exc).__name__}: {exc}")
        return "failed"
    final: dict[str, Any] = {
        "progress": round(result.progress, 1),
        "step": result.step,
        "total_steps": result.total_steps,
        "loss": result.loss,
        "eta_seconds": result.eta_seconds if result.state == "succeeded" else None,
        "dataset_hash": result.dataset_hash,
        "reason": result.reason,
        "evaluation": result.to_json()["evaluation"],
    }
    if result.state == "succeeded" and registered:
        final["adapter_model_id"] = registered[0]
    _finish(reporter, result.state, final)
    if result.state == "succeeded":
        reporter.log("info", f"succeeded: adapter {job.adapter_name} registered in the catalog")
    else:
        reason = result.reason or {}
        reporter.log(
            "warning" if result.state == "cancelled" else "error",
            f"{result.state} ({reason.get('code')}): {reason.get('message')}",
        )
    return result.state


def follow(settings: FinetuneSettings, db: SyncDatabase, job_id: UUID, attempt: int) -> str:
    """A rank other than 0 of a multi-GPU attempt: wait for rank 0 to start training, then
    train beside it. Returns 'trained', or 'skipped' when the attempt ended before training."""
    while True:
        with db.platform() as conn:
            job = repository.get_sync(conn, job_id)
        if job is None or job.attempt != attempt:
            return "skipped"
        if job.status == "training":
            break
        if job.status not in ("queued", "preparing"):
            return "skipped"
        time.sleep(REPORT_SECONDS)
    try:
        config = build_config(settings, job)
        train_adapter(
            config.base_model,
            config.out_dir / DATASET_DIR,
            config.out_dir / TRAINING_DIR,
            config.hyperparameters,
            resume=config.resume,
            cpu_threads=config.cpu_threads,
        )
    except (RunnerError, FinetuneError) as exc:
        # Rank 0 meets the same end (divergence, cancellation, ...) and records it; exiting
        # with an error here would make torchrun stop rank 0 before it could.
        log.info("training ended on this rank", extra={"job": str(job_id), "reason": str(exc)})
        return "skipped"
    return "trained"


def _last_run(config: RunConfig) -> dict[str, Any]:
    """The evaluation and dataset hash the pipeline last wrote to its run file, if any."""
    try:
        run = json.loads((config.out_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(run, dict):
        return {}
    return {key: run[key] for key in ("evaluation", "dataset_hash") if run.get(key) is not None}


class _CatalogRefused(Exception):
    def __init__(self, error: CoveError) -> None:
        super().__init__(error.message)
        self.error = error


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: python -m cove.platform.finetuning.runner JOB_ID ATTEMPT", file=sys.stderr)
        return 2
    settings = FinetuneSettings()
    configure_logging(settings.log_level)
    db = SyncDatabase(settings, max_size=2)
    db.open()
    try:
        if int(os.environ.get("RANK", "0")) > 0:
            status = follow(settings, db, UUID(args[0]), int(args[1]))
        else:
            status = execute(settings, db, UUID(args[0]), int(args[1]))
    finally:
        db.close()
    print(status)
    return 0 if status in ("succeeded", "skipped", "trained") else 1


if __name__ == "__main__":
    raise SystemExit(main())
