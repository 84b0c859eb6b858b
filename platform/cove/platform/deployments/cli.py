"""`cove deployments …`: a BU's deployments from a terminal.

Commands act as a platform admin against the database in COVE_DATABASE_URL (or the local
stack's, from `.cove/env`), through the same services as the API, so the same rules, audit
entries and notifications apply. Output is JSON.
"""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import orjson
import typer

from cove.platform.core.db import Database
from cove.platform.core.errors import CoveError
from cove.platform.core.settings import CoveSettings
from cove.platform.deployments.k8s.cli import render_command
from cove.tenants.principal import Principal, Role, Scope

T = TypeVar("T")

deployments_app = typer.Typer(help="Model deployments.", no_args_is_help=True)
deployments_app.command("render")(render_command)


def cli_principal() -> Principal:
    user = getpass.getuser()
    return Principal(
        subject=f"cli:{user}",
        username=f"cli:{user}",
        tenant_id=None,
        user_id=None,
        roles=frozenset({Role.PLATFORM_ADMIN}),
        scopes=frozenset({Scope.ADMIN_READ, Scope.ADMIN_WRITE}),
    )


def _stack_env() -> None:
    env_file = Path(os.environ.get("COVE_HOME", ".cove")) / "env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.startswith("COVE_"):
                os.environ.setdefault(key, value)


def run_with_db(work: Callable[[Database], Awaitable[T]]) -> T:
    _stack_env()
    settings = CoveSettings()

    async def runner() -> T:
        db = Database(settings, min_size=0)
        await db.open(timeout=5)
        try:
            return await work(db)
        finally:
            await db.close()

    try:
        return asyncio.run(runner())
    except CoveError as exc:
        typer.secho(f"error: {exc.message} ({exc.error_code})", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None


def print_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


async def bu_id_of(db: Database, slug: str) -> UUID:
    from cove.tenants.bus import repository as bu_repository

    async with db.platform() as conn:
        found = await bu_repository.get_by_slug(conn, slug)
    if found is None:
        raise CoveError(f"no business unit with slug '{slug}'", code="bu_not_found")
    return found.id


@deployments_app.command("list")
def list_deployments(bu: Annotated[str, typer.Option(help="BU slug")]) -> None:
    """The BU's deployments with their status, replicas and adapters."""
    from cove.platform.deployments import service

    async def work(db: Database) -> Any:
        return await service.list_deployments(db, cli_principal(), await bu_id_of(db, bu))

    print_json([d.model_dump(mode="json") for d in run_with_db(work)])


@deployments_app.command("reconcile")
def reconcile(deployment_id: UUID) -> None:
    """Reconcile one deployment now, in this process (what the worker's task does)."""
    import httpx

    from cove.platform.core.db import SyncDatabase
    from cove.platform.deployments import reconciler
    from cove.platform.deployments.runtime.factory import build_drivers
    from cove.platform.deployments.runtime.vllm_api import VllmApi
    from cove.platform.deployments.settings import RuntimeSettings

    _stack_env()
    settings = RuntimeSettings()
    db = SyncDatabase(settings)
    db.open()
    try:
        with httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0)) as client:
            outcome = reconciler.reconcile(
                db, build_drivers(settings, client), VllmApi(client), deployment_id
            )
    finally:
        db.close()
    print_json(outcome.as_dict())


shared_app = typer.Typer(
    help="Base instances the platform shares across BUs (multi-LoRA).", no_args_is_help=True
)
deployments_app.add_typer(shared_app, name="shared")


@shared_app.command("list")
def list_shared() -> None:
    """Every shared instance with the adapters of all BUs on it."""
    from cove.platform.deployments import service

    async def work(db: Database) -> Any:
        return await service.list_shared_instances(db, cli_principal())

    print_json([d.model_dump(mode="json") for d in run_with_db(work)])


@shared_app.command("create")
def create_shared(
    name: str,
    model: Annotated[str, typer.Option(help="Catalog name of the base model")],
    runtime: Annotated[str, typer.Option(help="external, local or kubernetes")] = "external",
    endpoint_url: Annotated[
        str | None, typer.Option(help="The instance you run (runtime external)")
    ] = None,
    replicas: Annotated[int | None, typer.Option()] = None,
    gpus_per_replica: Annotated[int | None, typer.Option()] = None,
    max_lora_rank: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Run a base instance BUs granted its model put their adapters on (its GPUs are the
    platform's, counted against no BU's quota). The reconcile waits for the workers."""
    from pydantic import ValidationError

    from cove.platform.deployments import service
    from cove.platform.deployments.k8s.spec import describe_errors
    from cove.platform.deployments.schemas import SharedInstanceCreate

    fields: dict[str, Any] = {"name": name, "model": model, "runtime": runtime}
    optional = {
        "endpoint_url": endpoint_url,
        "replicas": replicas,
        "gpus_per_replica": gpus_per_replica,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    if max_lora_rank is not None:
        fields["vllm"] = {"max_lora_rank": max_lora_rank}
    try:
        body = SharedInstanceCreate.model_validate(fields)
    except ValidationError as exc:
        problems = describe_errors([dict(error) for error in exc.errors()])
        typer.secho("error: " + "; ".join(problems), err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None

    async def work(db: Database) -> Any:
        return await service.create_shared_instance(db, cli_principal(), body)

    print_json(run_with_db(work).model_dump(mode="json"))


@shared_app.command("delete")
def delete_shared(name: str) -> None:
    """Stop and remove a shared instance; refused while BUs keep adapters on it."""
    from cove.platform.deployments import service

    async def work(db: Database) -> Any:
        principal = cli_principal()
        found = [d for d in await service.list_shared_instances(db, principal) if d.name == name]
        if not found:
            raise CoveError(f"no shared instance named '{name}'", code="shared_instance_not_found")
        return await service.delete_shared_instance(db, principal, found[0].id)

    print_json(run_with_db(work).model_dump(mode="json"))


@deployments_app.command("logs")
def logs(
    deployment_id: UUID,
    lines: Annotated[int, typer.Option(min=1, max=10_000, help="How many of the last lines")] = 50,
) -> None:
    """The last lines vLLM wrote for a deployment the local runtime runs on this machine
    (COVE_RUNTIME_STATE_DIR, `.cove/runtime` in the local stack)."""
    from collections import deque

    from cove.platform.deployments.runtime.local import LOG_FILE
    from cove.platform.deployments.settings import RuntimeSettings

    _stack_env()
    log = RuntimeSettings().runtime_state_dir / str(deployment_id) / LOG_FILE
    if not log.is_file():
        typer.secho(
            f"error: no vLLM log at {log}: the local runtime runs no instance of that"
            " deployment on this machine",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(1)
    with log.open(errors="replace") as handle:
        for line in deque(handle, maxlen=lines):
            typer.echo(line, nl=False)
