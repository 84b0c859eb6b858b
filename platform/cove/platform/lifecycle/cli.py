"""`cove bu export|delete|restore`: a BU's staged deletion from a terminal.

The same services as the API, as a platform admin, against the database in COVE_DATABASE_URL
(or the local stack's, from `.cove/env`); `--now` sends the purge task to the broker in
COVE_REDIS_URL like the API. Output is JSON.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from cove.platform.core.celery_app import create_celery
from cove.platform.core.db import Database
from cove.platform.deployments.cli import bu_id_of, cli_principal, print_json, run_with_db
from cove.platform.lifecycle import service
from cove.platform.lifecycle.settings import LifecycleSettings
from cove.tenants.bus import service as bus_service
from cove.tenants.bus.schemas import DeletionRequest

Slug = Annotated[str, typer.Argument(help="BU slug")]
Directory = Annotated[
    Path,
    typer.Option(
        "--out", help="Directory the archive is written to", file_okay=False, dir_okay=True
    ),
]


async def _export_to(db: Database, slug: str, out: Path) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="cove-export-", dir=out))
    try:
        result = await service.export(db, cli_principal(), await bu_id_of(db, slug), workdir)
        target = out / result.filename
        result.path.replace(target)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"file": str(target), "sha256": result.sha256, "bytes": result.size, "rows": result.rows}


def export(slug: Slug, out: Directory = Path()) -> None:
    """Write an archive of the BU (configuration and metrics, no secrets) to a directory."""
    out.mkdir(parents=True, exist_ok=True)

    async def work(db: Database) -> dict[str, Any]:
        return await _export_to(db, slug, out)

    print_json(run_with_db(work))


def delete(
    slug: Slug,
    out: Directory = Path(),
    grace_days: Annotated[
        int | None,
        typer.Option(min=0, max=365, help="Days before the purge (default: the install's)"),
    ] = None,
    now: Annotated[bool, typer.Option("--now", help="Purge at once (no grace period)")] = False,
    reason: Annotated[str | None, typer.Option(help="Why, for the audit log")] = None,
) -> None:
    """Export the BU, then delete it after the grace period (it stops serving at once)."""
    if now and grace_days not in (None, 0):
        typer.secho("error: give --now or --grace-days, not both", err=True, fg=typer.colors.RED)
        raise typer.Exit(2)
    out.mkdir(parents=True, exist_ok=True)
    settings = LifecycleSettings()
    request = DeletionRequest(grace_days=0 if now else grace_days, reason=reason)

    async def work(db: Database) -> dict[str, Any]:
        bu_id = await bu_id_of(db, slug)
        archive = await _export_to(db, slug, out)
        bu = await bus_service.request_deletion(
            db,
            cli_principal(),
            bu_id,
            request,
            default_grace_days=settings.bu_deletion_grace_days,
            export_max_age=timedelta(hours=settings.bu_export_max_age_hours),
        )
        return {"business_unit": bu.model_dump(mode="json"), "export": archive}

    result = run_with_db(work)
    purge_after = datetime.fromisoformat(result["business_unit"]["purge_after"])
    if purge_after <= datetime.now(UTC):
        tasks = create_celery(settings)
        try:
            sent = service.send_purge(tasks, UUID(result["business_unit"]["id"]))
        finally:
            tasks.close()
        result["purge"] = "sent" if sent else "left to the worker's sweep (no broker)"
    print_json(result)


def restore(slug: Slug) -> None:
    """Cancel the BU's deletion during its grace period."""

    async def work(db: Database) -> dict[str, Any]:
        bu = await bus_service.restore(db, cli_principal(), await bu_id_of(db, slug))
        return bu.model_dump(mode="json")

    print_json(run_with_db(work))


def register(bu_app: typer.Typer) -> None:
    bu_app.command("export")(export)
    bu_app.command("delete")(delete)
    bu_app.command("restore")(restore)
