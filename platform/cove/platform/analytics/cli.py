"""`cove bench analytics` (mounted by the platform CLI as `analytics_app`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import orjson
import typer

# Mounted as `cove bench analytics`: the benchmark is the group's own callback, so the mount
# point runs it directly (`cove bench analytics --events 1000000`).
analytics_app = typer.Typer(invoke_without_command=True)


@analytics_app.callback()
def bench(
    events: Annotated[int, typer.Option(min=1000, help="Events to seed")] = 10_000_000,
    bus: Annotated[int, typer.Option(min=1, help="Business units")] = 4,
    users: Annotated[int, typer.Option(min=1, help="Users per business unit")] = 250,
    days: Annotated[int, typer.Option(min=2, max=30, help="Days of history")] = 28,
    batch_size: Annotated[int, typer.Option(min=1, help="Events per gateway batch")] = 5000,
    writers: Annotated[int, typer.Option(min=1, help="Gateway sinks writing at once")] = 2,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds of dashboard queries")] = 10,
    seed: Annotated[int, typer.Option(help="Random seed")] = 7,
) -> None:
    """Seed usage events through the gateway's batcher into a throw-away Postgres, roll them
    up, time the dashboard queries; prints a table and a final JSON line."""
    from cove.platform.analytics.bench import BenchConfig, ThrowawayPostgres, run, table

    config = BenchConfig(
        events=events,
        bus=bus,
        users_per_bu=users,
        days=days,
        batch_size=batch_size,
        writers=writers,
        query_rounds=rounds,
        seed=seed,
    )

    def echo(line: str) -> None:
        typer.echo(line, err=True)

    with ThrowawayPostgres() as postgres:
        echo(f"throw-away PostgreSQL at {postgres.base}")
        result = asyncio.run(run(config, echo, postgres.url))
    typer.echo(table(result))
    typer.echo(orjson.dumps(result.as_dict()).decode())
    if not result.passed:
        raise typer.Exit(1)
