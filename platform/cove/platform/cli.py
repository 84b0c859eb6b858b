"""The `cove` command line: the local stack, migrations and day-to-day admin tasks."""

from __future__ import annotations

import asyncio
import getpass
import importlib
import os
import shutil
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from cove.platform.core.settings import CoveSettings, Environment
from cove.platform.login import cli as login_cli

app = typer.Typer(help="Cove: an on-prem AI coding platform.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
bu_app = typer.Typer(help="Business units.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys.", no_args_is_help=True)
model_app = typer.Typer(help="Models.", no_args_is_help=True)
keycloak_app = typer.Typer(help="Keycloak realm and groups.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(bu_app, name="bu")
app.add_typer(apikey_app, name="apikey")
app.add_typer(model_app, name="model")
app.add_typer(keycloak_app, name="keycloak")


def _home() -> Path:
    return Path(os.environ.get("COVE_HOME", ".cove"))


def _load_stack_env() -> None:
    """Let admin commands reach the local stack's database when run beside `cove up`."""
    env_file = _home() / "env"
    if not env_file.exists():
        return
    for line in env_file.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("COVE_"):
            os.environ.setdefault(key, value)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _print_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@app.command()
def up() -> None:
    """Start the whole local stack in the foreground; Ctrl-C stops it."""
    from cove.platform.local.stack import Stack, StackError, StackSettings

    if os.environ.get("COVE_ENV", "").strip().lower() == Environment.PRODUCTION.value:
        raise _fail(
            "cove up runs the local development stack (a demo user, the dev login, keys written "
            "to .cove/); it refuses to run with COVE_ENV=production",
            2,
        )
    try:
        settings = StackSettings(
            external_database="COVE_DATABASE_URL" in os.environ,
            external_redis="COVE_REDIS_URL" in os.environ,
        )
    except ValueError as exc:
        raise _fail(f"invalid settings: {exc}", 2) from exc
    stack = Stack(settings, echo=lambda line: typer.echo(line, err=False))
    try:
        stack.up()
    except StackError as exc:
        raise _fail(str(exc)) from exc
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    stack.wait()


@app.command()
def down(
    purge: Annotated[bool, typer.Option(help="Also delete the local database and logs")] = False,
) -> None:
    """Stop the local stack started by `cove up`."""
    from cove.platform.local.stack import down as stop_stack

    stop_stack(_home(), echo=typer.echo)
    if purge:
        shutil.rmtree(_home(), ignore_errors=True)
        typer.echo(f"cove: removed {_home()}")


@app.command()
def version() -> None:
    """Print Cove's version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("cove"))


@db_app.command("migrate")
def db_migrate(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
) -> None:
    """Apply schema migrations (COVE_DATABASE_URL)."""
    from sqlalchemy.exc import OperationalError

    from cove.platform.core import migrate

    _load_stack_env()
    settings = CoveSettings()
    try:
        migrate.upgrade(settings.database_url, revision)
        current = migrate.current_revision(settings.database_url)
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise _fail(f"the database does not answer: {reason}") from exc
    typer.echo(f"database at revision {current}")


def _cli_principal() -> Any:
    from cove.tenants.principal import Principal, Role, Scope

    return Principal(
        subject=f"cli:{getpass.getuser()}",
        username=f"cli:{getpass.getuser()}",
        tenant_id=None,
        user_id=None,
        roles=frozenset({Role.PLATFORM_ADMIN}),
        scopes=frozenset({Scope.ADMIN_READ, Scope.ADMIN_WRITE}),
    )


def _run_with_db(work: Any) -> Any:
    from cove.platform.core.db import Database

    _load_stack_env()
    settings = CoveSettings()

    async def runner() -> Any:
        db = Database(settings, min_size=0)
        await db.open(timeout=5)
        try:
            return await work(db, settings)
        finally:
            await db.close()

    return asyncio.run(runner())


@bu_app.command("create")
def bu_create(
    slug: str,
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    gpu_quota: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Create a business unit."""
    from pydantic import ValidationError

    from cove.platform.core.errors import CoveError
    from cove.tenants.bus import service
    from cove.tenants.bus.schemas import BusinessUnitCreate

    try:
        data = BusinessUnitCreate(slug=slug, name=name or slug, gpu_quota=gpu_quota)
    except ValidationError as exc:
        raise _fail(f"invalid business unit: {exc.errors()[0]['msg']}", 2) from exc

    async def work(db: Any, _settings: Any) -> Any:
        return await service.create(db, _cli_principal(), data)

    try:
        bu = _run_with_db(work)
    except CoveError as exc:
        raise _fail(f"{exc.message} ({exc.error_code})") from exc
    _print_json(bu.model_dump(mode="json"))


@bu_app.command("list")
def bu_list() -> None:
    """List business units."""
    from cove.tenants.bus import service

    async def work(db: Any, _settings: Any) -> Any:
        return await service.list_visible(db, _cli_principal())

    _print_json([bu.model_dump(mode="json") for bu in _run_with_db(work)])


@apikey_app.command("create")
def apikey_create(
    bu: Annotated[str, typer.Option(help="Slug of the business unit")],
    name: Annotated[str, typer.Option(help="What the key is for")],
    scope: Annotated[
        list[str] | None, typer.Option(help="completions, events, admin:read, admin:write")
    ] = None,
    expires_in_days: Annotated[int | None, typer.Option(min=1)] = None,
) -> None:
    """Issue an API key for a business unit; the key is printed once."""
    from pydantic import ValidationError

    from cove.platform.core.errors import CoveError
    from cove.tenants.bus import repository as bu_repository
    from cove.tenants.keys import service
    from cove.tenants.keys.schemas import ApiKeyCreate

    try:
        data = ApiKeyCreate(
            name=name,
            scopes=scope or ["completions", "events"],
            expires_in_days=expires_in_days,
        )
    except ValidationError as exc:
        raise _fail(f"invalid key request: {exc.errors()[0]['msg']}", 2) from exc

    async def work(db: Any, settings: CoveSettings) -> Any:
        async with db.platform() as conn:
            found = await bu_repository.get_by_slug(conn, bu)
        if found is None:
            raise _fail(f"no business unit with slug '{bu}'")
        pepper = settings.secret_key.get_secret_value().encode()
        return await service.create(db, pepper, _cli_principal(), found.id, data)

    try:
        created = _run_with_db(work)
    except CoveError as exc:
        raise _fail(f"{exc.message} ({exc.error_code})") from exc
    _print_json(created.model_dump(mode="json"))


@model_app.command("build-tiny")
def model_build_tiny(
    out: Annotated[Path | None, typer.Option(help="Output directory")] = None,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
) -> None:
    """Build the tiny Llama model with FIM tokens used by the local stack and tests."""
    from cove.finetune.tinymodel import build_tiny_model
    from cove.platform.local.stack import default_cache_dir, tiny_model_dir

    target = out or tiny_model_dir(default_cache_dir())
    if seed != 0 and out is None:
        target = target.with_name(f"cove-tiny-seed{seed}")
    build_tiny_model(target, seed=seed)
    typer.echo(str(target))


def _bu_slugs_from_database() -> list[str]:
    from cove.tenants.bus import service

    async def work(db: Any, _settings: Any) -> Any:
        return await service.list_visible(db, _cli_principal())

    return [bu.slug for bu in _run_with_db(work)]


@keycloak_app.command("realm-json")
def keycloak_realm_json(
    console_url: Annotated[str, typer.Option(help="Console URL, e.g. https://cove.example.com")],
    realm: Annotated[str, typer.Option()] = "cove",
    bu: Annotated[
        list[str] | None, typer.Option(help="BU slugs (default: every BU in the database)")
    ] = None,
) -> None:
    """Print a Keycloak realm import (clients, mappers, roles, BU groups) for Cove."""
    from cove.tenants.identity.keycloak import realm_json

    slugs = bu if bu is not None else _bu_slugs_from_database()
    redirect = console_url.rstrip("/") + "/*"
    try:
        document = realm_json(realm, slugs, [redirect])
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc
    _print_json(document)


@keycloak_app.command("sync")
def keycloak_sync(
    server_url: Annotated[str, typer.Option(help="Keycloak base URL")],
    admin_user: Annotated[str, typer.Option(envvar="COVE_KEYCLOAK_ADMIN_USER")],
    admin_password: Annotated[
        str, typer.Option(envvar="COVE_KEYCLOAK_ADMIN_PASSWORD", hide_input=True)
    ],
    realm: Annotated[str, typer.Option()] = "cove",
    bu: Annotated[list[str] | None, typer.Option(help="BU slugs (default: all)")] = None,
) -> None:
    """Create each BU's groups in Keycloak (idempotent; never deletes)."""
    from keycloak import KeycloakAdmin
    from keycloak.exceptions import KeycloakError

    from cove.tenants.identity.keycloak import sync_groups

    slugs = bu if bu is not None else _bu_slugs_from_database()
    try:
        admin = KeycloakAdmin(
            server_url=server_url,
            username=admin_user,
            password=admin_password,
            realm_name=realm,
            user_realm_name="master",
        )
        report = sync_groups(admin, slugs)
    except (KeycloakError, ValueError) as exc:
        raise _fail(f"Keycloak sync failed: {exc}") from exc
    _print_json(
        {"created": report.created, "existing": report.existing, "unmanaged": report.unmanaged}
    )


def _mount_optional() -> None:
    # The policy commands live with the gateway, which an API-only install may lack.
    try:
        module = importlib.import_module("cove.gateway.policy.cli")
    except ImportError:
        return
    app.add_typer(module.policy_app, name="policy", help="Dry-run data-plane policy.")
    try:
        # The Kubernetes client is in the worker extra.
        deployments = importlib.import_module("cove.platform.deployments.cli")
        models = importlib.import_module("cove.platform.models.cli")
    except ImportError:
        return
    app.add_typer(
        deployments.deployments_app,
        name="deployments",
        help="Model deployments: list, reconcile, render.",
    )
    app.add_typer(models.models_app, name="models", help="The model catalog: base models, grants.")


def _mount_lifecycle() -> None:
    try:
        # Through the deployments' CLI helpers, which need the worker extra.
        lifecycle = importlib.import_module("cove.platform.lifecycle.cli")
    except ImportError:
        return
    lifecycle.register(bu_app)


def _mount_benchmarks() -> None:
    bench = typer.Typer(help="Benchmarks that print measured numbers and a final JSON line.")
    app.add_typer(bench, name="bench")
    try:
        finetune = importlib.import_module("cove.finetune.cli")
    except ImportError:  # the train extra is not installed
        finetune = None
    try:
        # Jobs need the control plane's worker extra (Celery, the Kubernetes client).
        jobs: Any = importlib.import_module("cove.platform.finetuning.cli")
    except ImportError:
        jobs = None
    # Without the train extra, `cove finetune` still manages the platform's jobs.
    group = finetune.finetune_app if finetune is not None else typer.Typer(no_args_is_help=True)
    if jobs is not None:
        group.add_typer(jobs.jobs_app, name="jobs")
    if finetune is not None or jobs is not None:
        app.add_typer(group, name="finetune", help="Private-SDK fine-tuning (LoRA).")
    if finetune is not None:
        bench.command("finetune", help="Dataset-builder throughput on a large code tree.")(
            finetune.bench_command
        )
    from cove.platform.analytics.cli import analytics_app

    bench.add_typer(
        analytics_app, name="analytics", help="Seed, roll up and time analytics queries."
    )
    try:
        gateway_bench = importlib.import_module("cove.platform.bench.cli")
    except ImportError:
        return
    bench.command("gateway", help="Gateway overhead vs direct and LiteLLM.")(gateway_bench.gateway)


login_cli.register(app)
_mount_optional()
_mount_lifecycle()
_mount_benchmarks()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
