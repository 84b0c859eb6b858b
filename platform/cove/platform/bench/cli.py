"""`cove bench ...` commands (mounted by the main CLI; also `python -m cove.platform.bench.cli`)."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer

bench_app = typer.Typer(help="Benchmarks.", no_args_is_help=True)


@bench_app.callback()
def _group() -> None:
    """Benchmarks."""
    # Without a callback Typer would run a lone command without its name on the command line.


@bench_app.command("gateway")
def gateway(
    rate: Annotated[float, typer.Option(help="Open-loop request rate (req/s)")] = 300.0,
    low_rate: Annotated[
        float, typer.Option(help="A second, lower open-loop rate for plain requests; 0 skips")
    ] = 100.0,
    duration: Annotated[
        float, typer.Option(help="Measured seconds per target and scenario")
    ] = 15.0,
    warmup: Annotated[float, typer.Option(help="Unmeasured seconds before each slice")] = 1.0,
    rounds: Annotated[
        int, typer.Option(help="Slices per target, interleaved with the other targets", min=1)
    ] = 3,
    concurrency: Annotated[
        int, typer.Option(help="Closed-loop concurrency for the second table; 0 skips", min=0)
    ] = 8,
    upstream_latency_ms: Annotated[
        float, typer.Option(help="The responder's fixed delay before answering")
    ] = 20.0,
    timeout: Annotated[float, typer.Option(help="Per-request timeout (seconds)")] = 10.0,
    gateway_workers: Annotated[int, typer.Option(help="uvicorn workers of the gateway", min=1)] = 1,
    litellm: Annotated[bool, typer.Option(help="Also measure LiteLLM's proxy")] = True,
    vllm: Annotated[bool, typer.Option(help="Smoke run against the real vLLM")] = True,
    vllm_requests: Annotated[int, typer.Option(help="Requests per vLLM smoke row", min=1)] = 20,
    secret: Annotated[
        bool, typer.Option(help="Plant one credential in the prompt (redacted by the policy)")
    ] = False,
    pin: Annotated[
        bool,
        typer.Option(
            help="Pin the proxies to one CPU and everything else to the others (steadier on a "
            "quiet machine; on a shared one the scheduler does better unpinned)"
        ),
    ] = False,
    keep: Annotated[bool, typer.Option(help="Keep the temporary directory and its logs")] = False,
    max_generator_lag_ms: Annotated[
        float,
        typer.Option(
            help="Re-run (twice at most) a direct or Cove open-loop slice whose load generator "
            "ran later than this at p99: the host, not the target, was measured"
        ),
    ] = 10.0,
) -> None:
    """Latency the gateway adds over calling the upstream directly, beside LiteLLM's proxy.

    Prints tables, then one JSON line with the figures as the last line of stdout.
    """
    from cove.platform.bench.gateway import BenchOptions, run_benchmark
    from cove.platform.local.procs import StackError

    options = BenchOptions(
        rate=rate,
        low_rate=low_rate,
        duration=duration,
        warmup=warmup,
        rounds=rounds,
        concurrency=concurrency,
        upstream_latency_ms=upstream_latency_ms,
        timeout=timeout,
        gateway_workers=gateway_workers,
        litellm=litellm,
        vllm=vllm,
        vllm_requests=vllm_requests,
        secret=secret,
        pin=pin,
        keep=keep,
        max_generator_lag_ms=max_generator_lag_ms,
    )
    try:
        summary = run_benchmark(
            options,
            echo=lambda line: typer.echo(line, err=True),
            out=typer.echo,
        )
    except StackError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        typer.secho("interrupted; everything started was stopped", err=True)
        raise typer.Exit(130) from None
    typer.echo(orjson.dumps(summary).decode())


if __name__ == "__main__":
    bench_app()
