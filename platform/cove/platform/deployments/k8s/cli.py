"""`cove deployments`: review offline what the reconciler would apply for a deployment spec."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError

from cove.platform.deployments.k8s.render import render, to_json, to_yaml
from cove.platform.deployments.k8s.spec import DeploymentSpec, describe_errors

deployments_app = typer.Typer(help="Model deployments on Kubernetes.", no_args_is_help=True)


class OutputFormat(StrEnum):
    yaml = "yaml"
    json = "json"


@deployments_app.callback()
def _group() -> None:
    """Model deployments on Kubernetes."""
    # A callback keeps `render` a subcommand even while it is the group's only command.


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


def _load(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        # JSON is YAML, so one loader reads both forms.
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail(f"{path} is not valid YAML or JSON: {exc}") from exc


@deployments_app.command("render")
def render_command(
    spec: Annotated[Path, typer.Option("--spec", help="Deployment spec file (YAML or JSON)")],
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.yaml,
) -> None:
    """Print, without a cluster, exactly the objects the reconciler would apply for SPEC."""
    data = _load(spec)
    if not isinstance(data, dict):
        raise _fail(f"{spec} must hold one mapping (a deployment spec)")
    try:
        parsed = DeploymentSpec.model_validate(data)
    except ValidationError as exc:
        lines = describe_errors([dict(error) for error in exc.errors()])
        raise _fail(
            f"invalid deployment spec in {spec}:\n" + "\n".join(f"  {line}" for line in lines)
        ) from None
    objects = render(parsed)
    typer.echo(to_json(objects) if output is OutputFormat.json else to_yaml(objects), nl=False)


if __name__ == "__main__":
    deployments_app()
