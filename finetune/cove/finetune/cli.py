"""`cove finetune …`: build a dataset, train, evaluate, or do all three and register.

Every command prints a JSON summary on its last line (machine-readable for scripts and CI)
and exits non-zero with a one-line reason when the job cannot go on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from cove.finetune.dataset import DatasetConfig, build_dataset
from cove.finetune.errors import FinetuneError, InvalidDataset
from cove.finetune.sources import RepoSpec, display_location, repository_name

finetune_app = typer.Typer(
    help="Fine-tune a base model on a private SDK (dataset, train, eval, run).",
    no_args_is_help=True,
)

_T = TypeVar("_T")

RepoOption = Annotated[
    list[str],
    typer.Option(
        "--repo",
        help="A repository: a local directory or a git URL. Repeat for several.",
    ),
]
SdkOption = Annotated[
    list[str],
    typer.Option(
        "--sdk",
        help="Which repository is the SDK: one of the --repo values, its name (the last part "
        "of its path or URL), or another path or URL. Repeat for several.",
    ),
]


def resolve_repos(repos: Sequence[str], sdks: Sequence[str]) -> list[RepoSpec]:
    """Repository specs from `--repo` and `--sdk` values (an SDK not among the repos is added,
    first)."""
    if not sdks:
        raise InvalidDataset("name the SDK with --sdk")
    roles: dict[str, str] = {location: "consumer" for location in repos}
    extra: list[str] = []
    for sdk in sdks:
        matches = [
            location
            for location in repos
            if sdk in (location, location.rstrip("/"), repository_name(location))
        ]
        if len(matches) > 1:
            raise InvalidDataset(
                f"--sdk {sdk} matches several repositories: "
                + ", ".join(display_location(m) for m in matches)
            )
        if matches:
            roles[matches[0]] = "sdk"
        elif Path(sdk).exists() or "://" in sdk or sdk.endswith(".git") or "@" in sdk:
            extra.append(sdk)
        else:
            raise InvalidDataset(
                f"--sdk {sdk} is neither one of the --repo values nor a path or git URL"
            )
    specs = [RepoSpec(location, "sdk") for location in extra]
    specs += [
        RepoSpec(location, "sdk" if roles[location] == "sdk" else "consumer")
        for location in dict.fromkeys(repos)
    ]
    return specs


def _emit(summary: dict[str, Any]) -> None:
    typer.echo(json.dumps(summary, default=str))


def _guarded(action: Callable[[], _T]) -> _T:
    try:
        return action()
    except FinetuneError as exc:
        typer.secho(f"error ({exc.error_code}): {exc.message}", err=True, fg=typer.colors.RED)
        _emit({"state": "failed", "reason": {"code": exc.error_code, "message": exc.message}})
        raise typer.Exit(1) from None


def _progress(message: str) -> None:
    typer.echo(message, err=True)


@finetune_app.command("dataset")
def dataset_command(
    repo: RepoOption,
    sdk: SdkOption,
    out: Annotated[Path, typer.Option(help="Output directory (replaced if it holds a dataset)")],
    base_model: Annotated[
        Path | None,
        typer.Option(help="Base model directory: checks its FIM tokens and counts tokens"),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    eval_fraction: Annotated[float, typer.Option(help="Share of files held out")] = 0.1,
    min_train_examples: Annotated[int, typer.Option(min=1)] = 50,
    min_eval_examples: Annotated[int, typer.Option(min=1)] = 10,
    workers: Annotated[int | None, typer.Option(min=1, help="Parser processes")] = None,
) -> None:
    """Build FIM examples about an SDK from its repositories and code that uses it."""
    config = DatasetConfig(
        seed=seed,
        eval_fraction=eval_fraction,
        min_train_examples=min_train_examples,
        min_eval_examples=min_eval_examples,
        workers=workers,
    )
    result = _guarded(
        lambda: build_dataset(
            resolve_repos(repo, sdk), out, config, base_model=base_model, progress=_progress
        )
    )
    card = result.card
    _emit(
        {
            "state": "succeeded",
            "out": str(result.out_dir),
            "dataset_hash": result.dataset_hash,
            "examples": card["examples"],
            "files": {key: card["files"][key] for key in ("seen", "kept", "dropped")},
            "tokens": card["tokens"],
        }
    )


def _hyperparameters(
    preset_name: str,
    *,
    rank: int | None,
    alpha: int | None,
    learning_rate: float | None,
    epochs: float | None,
    max_steps: int | None,
    batch_size: int | None,
    context_length: int | None,
    target_modules: str | None,
    seed: int | None,
) -> Any:
    from cove.finetune.train import preset

    return preset(
        preset_name,
        rank=rank,
        alpha=alpha,
        learning_rate=learning_rate,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        context_length=context_length,
        target_modules=(
            tuple(part.strip() for part in target_modules.split(",") if part.strip())
            if target_modules
            else None
        ),
        seed=seed,
    )


PresetOption = Annotated[str, typer.Option(help="small, medium or large")]
RankOption = Annotated[int | None, typer.Option(help="LoRA rank (overrides the preset)")]
AlphaOption = Annotated[int | None, typer.Option(help="LoRA alpha")]
LearningRateOption = Annotated[float | None, typer.Option("--lr", help="Peak learning rate")]
EpochsOption = Annotated[float | None, typer.Option(help="Passes over the training set")]
MaxStepsOption = Annotated[int | None, typer.Option(help="Stop after this many steps")]
BatchOption = Annotated[int | None, typer.Option(help="Examples per step")]
ContextOption = Annotated[int | None, typer.Option(help="Tokens per example")]
TargetsOption = Annotated[
    str | None, typer.Option(help="Comma-separated modules to adapt (e.g. q_proj,v_proj)")
]
SeedOption = Annotated[int | None, typer.Option(help="Training seed")]
ThreadsOption = Annotated[
    int | None, typer.Option(min=1, help="CPU threads for torch (CPU-only machines)")
]


def _step_printer(metrics: Any) -> None:
    if metrics.step == 1 or metrics.step % 10 == 0 or metrics.step == metrics.total_steps:
        typer.echo(
            f"step {metrics.step}/{metrics.total_steps} loss {metrics.loss:.4f} "
            f"lr {metrics.learning_rate:.2e} {metrics.tokens_per_second:.0f} tok/s",
            err=True,
        )


@finetune_app.command("train")
def train_command(
    base_model: Annotated[Path, typer.Option(help="Base model directory")],
    dataset: Annotated[Path, typer.Option(help="Dataset directory (from `dataset`)")],
    out: Annotated[Path, typer.Option(help="Training directory (adapter, checkpoints)")],
    preset: PresetOption = "small",
    rank: RankOption = None,
    alpha: AlphaOption = None,
    lr: LearningRateOption = None,
    epochs: EpochsOption = None,
    max_steps: MaxStepsOption = None,
    batch_size: BatchOption = None,
    context_length: ContextOption = None,
    target_modules: TargetsOption = None,
    seed: SeedOption = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint")] = True,
    cpu_threads: ThreadsOption = None,
) -> None:
    """Train a LoRA adapter on a dataset."""
    from cove.finetune.train import train_adapter

    def run() -> Any:
        hyperparameters = _hyperparameters(
            preset,
            rank=rank,
            alpha=alpha,
            learning_rate=lr,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            context_length=context_length,
            target_modules=target_modules,
            seed=seed,
        )
        return train_adapter(
            base_model,
            dataset,
            out,
            hyperparameters,
            resume=resume,
            on_step=_step_printer,
            cpu_threads=cpu_threads,
        )

    result = _guarded(run)
    _emit(result.to_json())


@finetune_app.command("eval")
def eval_command(
    base_model: Annotated[Path, typer.Option(help="Base model directory")],
    adapter: Annotated[Path, typer.Option(help="Adapter directory (from `train`)")],
    dataset: Annotated[Path, typer.Option(help="Dataset directory (its eval split is used)")],
    out: Annotated[Path, typer.Option(help="Report directory")],
    max_examples: Annotated[int, typer.Option(min=1)] = 200,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 48,
    min_recall_gain: Annotated[float, typer.Option(help="Required SDK-API recall gain")] = 0.05,
    min_edit_gain: Annotated[float, typer.Option(help="Required edit similarity gain")] = 0.0,
    max_syntax_drop: Annotated[float, typer.Option(help="Allowed syntax validity loss")] = 0.05,
    cpu_threads: ThreadsOption = None,
) -> None:
    """Compare base and adapter on held-out files; exit 3 if the promotion gate fails."""
    from cove.finetune.evaluate import PromotionGate, evaluate_adapter

    gate = PromotionGate(
        min_sdk_recall_gain=min_recall_gain,
        min_edit_similarity_gain=min_edit_gain,
        max_syntax_validity_drop=max_syntax_drop,
    )
    report = _guarded(
        lambda: evaluate_adapter(
            base_model,
            adapter,
            dataset,
            out,
            gate=gate,
            max_examples=max_examples,
            max_new_tokens=max_new_tokens,
            cpu_threads=cpu_threads,
        )
    )
    typer.echo((out / "eval_report.md").read_text(encoding="utf-8"), err=True)
    _emit({key: report[key] for key in ("base", "adapter_scores", "delta", "gate", "examples")})
    if not report["gate"]["passed"]:
        raise typer.Exit(3)


@finetune_app.command("run")
def run_command(
    repo: RepoOption,
    sdk: SdkOption,
    base_model: Annotated[Path, typer.Option(help="Base model directory")],
    out: Annotated[Path, typer.Option(help="Job directory (dataset, training, eval, run.json)")],
    name: Annotated[str | None, typer.Option(help="Adapter name in the registry")] = None,
    registry: Annotated[
        Path | None, typer.Option(help="Registry file (default: registry.json beside --out)")
    ] = None,
    preset: PresetOption = "small",
    rank: RankOption = None,
    alpha: AlphaOption = None,
    lr: LearningRateOption = None,
    epochs: EpochsOption = None,
    max_steps: MaxStepsOption = None,
    batch_size: BatchOption = None,
    context_length: ContextOption = None,
    target_modules: TargetsOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the dataset and the training")] = 0,
    min_recall_gain: Annotated[float, typer.Option(help="Required SDK-API recall gain")] = 0.05,
    min_edit_gain: Annotated[float, typer.Option(help="Required edit similarity gain")] = 0.0,
    eval_max_examples: Annotated[int, typer.Option(min=1)] = 200,
    cpu_threads: ThreadsOption = None,
) -> None:
    """Dataset → train → eval → register, in one go."""
    from cove.finetune.evaluate import PromotionGate
    from cove.finetune.pipeline import RunConfig, run_pipeline

    def run() -> Any:
        config = RunConfig(
            repos=resolve_repos(repo, sdk),
            base_model=base_model,
            out_dir=out,
            hyperparameters=_hyperparameters(
                preset,
                rank=rank,
                alpha=alpha,
                learning_rate=lr,
                epochs=epochs,
                max_steps=max_steps,
                batch_size=batch_size,
                context_length=context_length,
                target_modules=target_modules,
                seed=seed,
            ),
            dataset=DatasetConfig(seed=seed),
            gate=PromotionGate(
                min_sdk_recall_gain=min_recall_gain, min_edit_similarity_gain=min_edit_gain
            ),
            adapter_name=name,
            registry_path=registry,
            eval_max_examples=eval_max_examples,
            cpu_threads=cpu_threads,
        )
        last_state: list[str] = []

        def on_event(result: Any) -> None:
            if not last_state or last_state[-1] != result.state:
                last_state.append(result.state)
                typer.echo(f"[{result.progress:5.1f}%] {result.state}", err=True)
            elif result.step and (result.step % 10 == 0 or result.step == result.total_steps):
                typer.echo(
                    f"[{result.progress:5.1f}%] step {result.step}/{result.total_steps} "
                    f"loss {result.loss:.4f} eta {result.eta_seconds or 0:.0f}s",
                    err=True,
                )

        return run_pipeline(config, on_event=on_event)

    result = _guarded(run)
    summary = result.to_json()
    summary.pop("history", None)
    _emit(summary)
    if result.state != "succeeded":
        reason = result.reason or {}
        typer.secho(
            f"error ({reason.get('code')}): {reason.get('message')}", err=True, fg=typer.colors.RED
        )
        raise typer.Exit(1)


@finetune_app.command("bench")
def bench_command(
    files: Annotated[int, typer.Option(min=100, help="Files in the generated tree")] = 6000,
    workers: Annotated[int | None, typer.Option(min=1, help="Parser processes")] = None,
    keep: Annotated[Path | None, typer.Option(help="Keep the tree and dataset here")] = None,
) -> None:
    """Measure the dataset builder's throughput on a large generated code tree."""
    from cove.finetune.bench import run_bench

    run_bench(files=files, workers=workers, keep=keep, echo=typer.echo)


if __name__ == "__main__":
    finetune_app()
