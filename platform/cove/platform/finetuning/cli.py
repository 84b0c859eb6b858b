"""`cove finetune jobs …`: a BU's fine-tuning jobs from a terminal.

The same services as the API, as a platform admin, against the database in COVE_DATABASE_URL
(or the local stack's, from `.cove/env`); the start task goes to the broker in COVE_REDIS_URL
like the API's. Output is JSON. `cove finetune run` is the other way: the whole pipeline in
this process, without the platform.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import orjson
import typer
import yaml
from pydantic import ValidationError

from cove.platform.core.celery_app import create_celery
from cove.platform.core.db import Database
from cove.platform.deployments.cli import bu_id_of, cli_principal, print_json, run_with_db
from cove.platform.finetuning import service
from cove.platform.finetuning.schemas import FINISHED_STATUSES, JobCreate, JobStatus
from cove.platform.finetuning.settings import FinetuneSettings

jobs_app = typer.Typer(
    help="Fine-tuning jobs run by the platform: submit, list, show, logs, cancel, retry.",
    no_args_is_help=True,
)

Bu = Annotated[str, typer.Option("--bu", help="BU slug")]


def _refuse(message: str) -> typer.Exit:
    typer.secho(f"error: {message} (invalid_spec)", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


def _read_spec(path: Path) -> JobCreate:
    """A job spec file: the body of POST /finetune-jobs, as YAML or JSON (exit 2 if not)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise _refuse(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise _refuse(f"{path} is not YAML or JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise _refuse(f"{path} must hold a mapping (the job), not {type(raw).__name__}")
    try:
        return JobCreate.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(job)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise _refuse(f"{path}: {problems}") from None


@jobs_app.command("submit")
def submit(
    spec: Annotated[Path, typer.Argument(help="The job as YAML or JSON (the API's body)")],
    bu: Bu,
) -> None:
    """Admit a job and send its start task; prints the job."""
    body = _read_spec(spec)

    async def work(db: Database) -> Any:
        settings = FinetuneSettings()
        tasks = create_celery(settings)
        try:
            return await service.create_job(
                db, cli_principal(), await bu_id_of(db, bu), body, tasks, settings
            )
        finally:
            tasks.close()

    print_json(run_with_db(work).model_dump(mode="json"))


@jobs_app.command("list")
def list_jobs(
    bu: Bu,
    status: Annotated[JobStatus | None, typer.Option(help="Only jobs in this state")] = None,
) -> None:
    """The BU's jobs, newest first."""

    async def work(db: Database) -> Any:
        return await service.list_jobs(
            db, cli_principal(), await bu_id_of(db, bu), status=status, limit=500
        )

    print_json([job.model_dump(mode="json") for job in run_with_db(work)])


@jobs_app.command("show")
def show(job_id: UUID, bu: Bu) -> None:
    """A job's state, progress, evaluation and registered adapter."""

    async def work(db: Database) -> Any:
        return await service.get_job(db, cli_principal(), await bu_id_of(db, bu), job_id)

    print_json(run_with_db(work).model_dump(mode="json"))


@jobs_app.command("logs")
def logs(
    job_id: UUID,
    bu: Bu,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep printing new lines until the job ends; exit 0 only if it succeeded",
        ),
    ] = False,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between polls")] = 2.0,
) -> None:
    """The job's log lines, oldest first (`<time> <level> <message>`)."""
    after = 0
    while True:

        async def work(db: Database, after: int = after) -> Any:
            tenant = await bu_id_of(db, bu)
            page = await service.job_logs(
                db, cli_principal(), tenant, job_id, after=after, limit=1000
            )
            job = await service.get_job(db, cli_principal(), tenant, job_id)
            return page, job

        page, job = run_with_db(work)
        for line in page.lines:
            typer.echo(f"{line.created_at.isoformat()} {line.level:<7} {line.message}")
        after = page.next_after
        if not follow or (job.status in FINISHED_STATUSES and not page.lines):
            break
        time.sleep(interval)
    if follow:
        typer.echo(orjson.dumps({"status": job.status, "reason": job.reason}).decode())
        if job.status != "succeeded":
            raise typer.Exit(1)


@jobs_app.command("cancel")
def cancel(job_id: UUID, bu: Bu) -> None:
    """Cancel a queued or running job."""

    async def work(db: Database) -> Any:
        return await service.cancel_job(db, cli_principal(), await bu_id_of(db, bu), job_id)

    print_json(run_with_db(work).model_dump(mode="json"))


@jobs_app.command("retry")
def retry(job_id: UUID, bu: Bu) -> None:
    """Run a failed or cancelled job again as a new attempt, from its last checkpoint."""

    async def work(db: Database) -> Any:
        tasks = create_celery(FinetuneSettings())
        try:
            return await service.retry_job(
                db, cli_principal(), await bu_id_of(db, bu), job_id, tasks
            )
        finally:
            tasks.close()

    print_json(run_with_db(work).model_dump(mode="json"))
