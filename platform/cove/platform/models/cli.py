"""`cove models …`: the model catalog (base models and grants) from a terminal, as a
platform admin, through the same service as the API. Output is JSON."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cove.platform.core.db import Database
from cove.platform.deployments.cli import bu_id_of, cli_principal, print_json, run_with_db

models_app = typer.Typer(help="The model catalog: base models and grants.", no_args_is_help=True)


@models_app.command("list")
def list_models() -> None:
    """Every base model in the catalog."""
    from cove.platform.models import service

    async def work(db: Database) -> Any:
        return await service.list_base_models(db, cli_principal())

    print_json([m.model_dump(mode="json") for m in run_with_db(work)])


@models_app.command("add")
def add_model(
    name: str,
    location: Annotated[str, typer.Option(help="Directory, pvc://claim/path or s3://bucket/key")],
    context_length: Annotated[int | None, typer.Option(min=16)] = None,
    family: Annotated[str | None, typer.Option()] = None,
    licence: Annotated[str | None, typer.Option()] = None,
    max_lora_rank: Annotated[int | None, typer.Option(min=1, max=512)] = None,
) -> None:
    """Register a base model (a local directory is checked and described from its files)."""
    from pydantic import ValidationError

    from cove.platform.models import service
    from cove.platform.models.schemas import BaseModelCreate

    try:
        data = BaseModelCreate(
            name=name,
            location=location,
            context_length=context_length,
            family=family,
            licence=licence,
            max_lora_rank=max_lora_rank,
        )
    except ValidationError as exc:
        typer.secho(f"error: {exc.errors()[0]['msg']}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None

    async def work(db: Database) -> Any:
        return await service.create_base_model(db, cli_principal(), data)

    print_json(run_with_db(work).model_dump(mode="json"))


def _grant(name: str, bu: str, *, revoke: bool) -> None:
    from cove.platform.models import service

    async def work(db: Database) -> Any:
        model = await service.get_model_by_name(db, cli_principal(), name)
        bu_id = await bu_id_of(db, bu)
        if revoke:
            await service.revoke(db, cli_principal(), model.id, bu_id)
            return {"model": name, "bu": bu, "granted": False}
        return (await service.grant(db, cli_principal(), model.id, bu_id)).model_dump(mode="json")

    print_json(run_with_db(work))


@models_app.command("grant")
def grant(name: str, bu: Annotated[str, typer.Option(help="BU slug")]) -> None:
    """Let a BU deploy a base model and train adapters on it."""
    _grant(name, bu, revoke=False)


@models_app.command("revoke")
def revoke(name: str, bu: Annotated[str, typer.Option(help="BU slug")]) -> None:
    """Withdraw a grant the BU no longer uses."""
    _grant(name, bu, revoke=True)
