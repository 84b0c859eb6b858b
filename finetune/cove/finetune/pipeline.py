"""One fine-tuning job end to end: dataset → training → evaluation → registration.

The job's state (preparing → training → evaluating → succeeded | failed | cancelled), its
progress (%, step, loss, ETA) and the reason it stopped are kept in `run.json` in the output
directory, rewritten atomically at each change, so a console or a worker can poll it. A job
that fails or is cancelled at any stage registers nothing; a job whose adapter does not pass
the promotion gate fails with the gate's reasons (its adapter stays on disk for inspection).
"""

from __future__ import annotations

import json
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from cove.finetune.dataset import DatasetConfig, DatasetResult, build_dataset
from cove.finetune.errors import FinetuneError, JobCancelled
from cove.finetune.evaluate import PromotionGate, evaluate_adapter
from cove.finetune.registry import REGISTRY_FILE, AdapterRecord, RegisterCallback, register_adapter
from cove.finetune.sources import RepoSpec, repository_name
from cove.finetune.train import (
    PRESETS,
    Hyperparameters,
    StepMetrics,
    TrainingResult,
    describe_base_model,
    train_adapter,
)

RUN_FILE: Final = "run.json"
# Where a run keeps its dataset and its training, under its output directory.
DATASET_DIR: Final = "dataset"
TRAINING_DIR: Final = "training"
RunState = Literal["preparing", "training", "evaluating", "succeeded", "failed", "cancelled"]
# Rough shares of a job's time, for a progress bar that moves evenly.
_PREPARING_SHARE: Final = 10.0
_TRAINING_SHARE: Final = 75.0


@dataclass(frozen=True)
class RunConfig:
    repos: Sequence[RepoSpec]
    base_model: Path
    out_dir: Path
    hyperparameters: Hyperparameters = field(default_factory=lambda: PRESETS["small"])
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    gate: PromotionGate = field(default_factory=PromotionGate)
    adapter_name: str | None = None
    # Default: registry.json beside the output directory, shared by the runs kept there.
    registry_path: Path | None = None
    eval_max_examples: int = 200
    eval_max_new_tokens: int = 48
    resume: bool = True
    # CPU threads for training and evaluation (None: torch's default, all cores).
    cpu_threads: int | None = None


@dataclass
class RunResult:
    state: RunState
    out_dir: Path
    reason: dict[str, Any] | None = None
    progress: float = 0.0
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    eta_seconds: float | None = None
    dataset_hash: str | None = None
    adapter_name: str | None = None
    adapter_dir: Path | None = None
    record: AdapterRecord | None = None
    evaluation: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "progress": round(self.progress, 1),
            "step": self.step,
            "total_steps": self.total_steps,
            "loss": self.loss,
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
            "dataset_hash": self.dataset_hash,
            "adapter_name": self.adapter_name,
            "adapter_dir": str(self.adapter_dir) if self.adapter_dir else None,
            "registered": self.record.to_json() if self.record else None,
            "evaluation": (
                {
                    key: self.evaluation.get(key)
                    for key in (
                        "base",
                        "adapter_scores",
                        "delta",
                        "gate",
                        "examples",
                        "sdk_examples",
                    )
                }
                if self.evaluation
                else None
            ),
            "training": self.training,
            "started_at": self.started_at,
            "history": self.history,
        }


def run_pipeline(
    config: RunConfig,
    *,
    should_cancel: Callable[[], bool] | None = None,
    on_event: Callable[[RunResult], None] | None = None,
    on_register: RegisterCallback | None = None,
) -> RunResult:
    """Run one job. Returns its final result; a crash (an error that is not a
    `FinetuneError`) is recorded as failed with code `crashed` and then re-raised."""
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = RunResult(state="preparing", out_dir=out_dir)
    last_write = 0.0

    def publish(force: bool = False) -> None:
        nonlocal last_write
        now = time.monotonic()
        # Per-step updates are throttled; state changes are always written.
        if force or now - last_write >= 1.0:
            _write_json(out_dir / RUN_FILE, result.to_json())
            last_write = now
        if on_event is not None:
            on_event(result)

    def enter(state: RunState, progress: float) -> None:
        result.state = state
        result.progress = progress
        result.history.append(
            {"state": state, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        )
        publish(force=True)

    try:
        enter("preparing", 0.0)
        base = describe_base_model(config.base_model)
        dataset = build_dataset(
            config.repos,
            out_dir / DATASET_DIR,
            config.dataset,
            base_model=config.base_model,
            should_cancel=should_cancel,
        )
        result.dataset_hash = dataset.dataset_hash
        result.adapter_name = config.adapter_name or _default_name(config.repos, dataset)
        enter("training", _PREPARING_SHARE)
        training_started = time.monotonic()

        def on_step(metrics: StepMetrics) -> None:
            done = metrics.step / metrics.total_steps
            result.step = metrics.step
            result.total_steps = metrics.total_steps
            result.loss = metrics.loss
            result.progress = _PREPARING_SHARE + _TRAINING_SHARE * done
            spent = time.monotonic() - training_started
            result.eta_seconds = spent / done * (1.0 - done) if done > 0 else None
            publish()

        training = train_adapter(
            config.base_model,
            dataset.out_dir,
            out_dir / TRAINING_DIR,
            config.hyperparameters,
            resume=config.resume,
            should_cancel=should_cancel,
            on_step=on_step,
            cpu_threads=config.cpu_threads,
        )
        result.training = training.to_json()
        result.adapter_dir = training.adapter_dir
        enter("evaluating", _PREPARING_SHARE + _TRAINING_SHARE)
        if training.adapter_dir is None:
            raise FinetuneError("training succeeded without an adapter")
        evaluation = evaluate_adapter(
            config.base_model,
            training.adapter_dir,
            dataset.out_dir,
            out_dir / "eval",
            gate=config.gate,
            max_examples=config.eval_max_examples,
            max_new_tokens=config.eval_max_new_tokens,
            should_cancel=should_cancel,
            cpu_threads=config.cpu_threads,
        )
        result.evaluation = evaluation
        if should_cancel is not None and should_cancel():
            raise JobCancelled("the job was cancelled before registration")
        result.record = register_adapter(
            config.registry_path or out_dir.parent / REGISTRY_FILE,
            name=result.adapter_name,
            adapter_dir=training.adapter_dir,
            base_model=base,
            dataset=_dataset_lineage(dataset),
            hyperparameters=config.hyperparameters.to_json(),
            evaluation=evaluation,
            training=_training_lineage(training),
            on_register=on_register,
        )
    except JobCancelled as exc:
        _stop(result, "cancelled", exc)
        publish(force=True)
        return result
    except FinetuneError as exc:
        _stop(result, "failed", exc)
        publish(force=True)
        return result
    except BaseException as exc:
        result.state = "failed"
        result.reason = {
            "code": "crashed",
            "message": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=8),
        }
        result.history.append({"state": "failed", "at": datetime.now(UTC).isoformat()})
        publish(force=True)
        raise
    result.progress = 100.0
    result.eta_seconds = 0.0
    enter("succeeded", 100.0)
    return result


def _stop(result: RunResult, state: RunState, error: FinetuneError) -> None:
    result.state = state
    result.reason = {"code": error.error_code, "message": error.message, **error.details}
    result.history.append({"state": state, "at": datetime.now(UTC).isoformat(timespec="seconds")})


def _default_name(repos: Sequence[RepoSpec], dataset: DatasetResult) -> str:
    sdk = next((spec for spec in repos if spec.role == "sdk"), repos[0])
    return f"{repository_name(sdk.location)}-{dataset.dataset_hash.split(':')[-1][:8]}"


def _dataset_lineage(dataset: DatasetResult) -> dict[str, Any]:
    card = dataset.card
    return {
        "hash": dataset.dataset_hash,
        "path": str(dataset.out_dir),
        "repositories": card.get("repositories"),
        "examples": card.get("examples"),
        "tokens": card.get("tokens"),
        "seed": card.get("seed"),
        "builder_version": card.get("builder_version"),
    }


def _training_lineage(training: TrainingResult) -> dict[str, Any]:
    return {
        "steps": training.steps,
        "final_loss": training.final_loss,
        "seconds": round(training.seconds, 1),
        "examples": training.examples,
    }


def _write_json(path: Path, value: Any) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temporary.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)
