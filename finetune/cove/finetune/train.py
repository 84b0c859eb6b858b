"""LoRA training on a base model's fill-in-the-middle format, and generation with the result.

This is the only Cove module that imports torch, transformers and peft, and it does so inside
functions, so importing it (for its presets and types) stays cheap.

A run writes into its output directory:
- `metrics.jsonl`: one line per optimiser step (loss, learning rate, tokens/s, grad norm);
- `checkpoints/step-NNNNNNNN/`: the adapter weights and the full trainer state (optimiser,
  schedule, RNG streams, data position), so `resume` continues exactly where a crashed or
  cancelled run stopped and produces the same adapter as an uninterrupted run;
- `training.json`: the state (running, succeeded, failed, cancelled) and why;
- `adapter/`: the PEFT adapter vLLM hot-loads, which appears only when training succeeded (it
  is saved to a temporary directory and renamed), so a crash, a divergence or a cancellation
  never leaves a partial adapter behind.

Launched by `torchrun` with more than one process (WORLD_SIZE > 1), the run is data parallel:
every rank trains a DistributedDataParallel copy on its shard of each batch, losses are
averaged across ranks, and only rank 0 writes files (metrics, checkpoints, state, adapter)
and calls `on_step` / `should_cancel`; its decisions reach the other ranks by broadcast.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

from cove.finetune import fim
from cove.finetune.dataset import CARD_JSON, TRAIN_FILE, read_examples
from cove.finetune.errors import (
    FinetuneError,
    InvalidBaseModel,
    InvalidDataset,
    InvalidHyperparameters,
    JobCancelled,
    TooLittleData,
    TrainingDiverged,
)
from cove.finetune.tinymodel import is_model_dir, read_model_metadata

ADAPTER_DIR: Final = "adapter"
CHECKPOINTS_DIR: Final = "checkpoints"
METRICS_FILE: Final = "metrics.jsonl"
STATE_FILE: Final = "training.json"
ADAPTER_METADATA: Final = "cove_adapter.json"
_TRAINER_STATE: Final = "trainer_state.pt"
_KEEP_CHECKPOINTS: Final = 2

TrainingState = Literal["running", "succeeded", "failed", "cancelled"]


@dataclass(frozen=True)
class Hyperparameters:
    """What a BU admin may set; a preset fills in the rest."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    learning_rate: float = 2e-4
    epochs: float = 2.0
    # When set, the run stops after this many optimiser steps whatever `epochs` says.
    max_steps: int | None = None
    batch_size: int = 8
    gradient_accumulation: int = 1
    context_length: int = 2048
    max_middle_tokens: int = 256
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    checkpoint_every: int = 200
    # A smoothed loss this many times above the best one seen means the run has diverged.
    divergence_factor: float = 3.0

    def validate(self) -> None:
        problems = []
        if self.rank < 1:
            problems.append("rank must be at least 1")
        if self.alpha <= 0:
            problems.append("alpha must be positive")
        if not 0.0 <= self.dropout < 1.0:
            problems.append("dropout must be in [0, 1)")
        if not self.target_modules:
            problems.append("name at least one target module")
        if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            problems.append("learning_rate must be a positive number")
        if not self.epochs > 0:
            problems.append("epochs must be positive")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append("max_steps must be at least 1")
        if self.batch_size < 1 or self.gradient_accumulation < 1:
            problems.append("batch_size and gradient_accumulation must be at least 1")
        if self.context_length < 64:
            problems.append("context_length must be at least 64 tokens")
        if not 1 <= self.max_middle_tokens < self.context_length:
            problems.append("max_middle_tokens must be at least 1 and below context_length")
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append("warmup_ratio must be in [0, 1)")
        if self.checkpoint_every < 1:
            problems.append("checkpoint_every must be at least 1")
        if not self.divergence_factor > 1.0:
            problems.append("divergence_factor must be above 1")
        if problems:
            raise InvalidHyperparameters("; ".join(problems))

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["target_modules"] = list(self.target_modules)
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> Hyperparameters:
        known = {key: value for key, value in values.items() if key in cls.__dataclass_fields__}
        if "target_modules" in known:
            known["target_modules"] = tuple(known["target_modules"])
        return cls(**known)


# Sized for 1-15B code models on one GPU. Ranks above the serving instance's --max-lora-rank
# cannot be hot-loaded there (the local stack starts vLLM with 8).
PRESETS: Final[dict[str, Hyperparameters]] = {
    "small": Hyperparameters(
        rank=8, alpha=16, learning_rate=2e-4, epochs=2.0, context_length=2048, batch_size=8
    ),
    "medium": Hyperparameters(
        rank=16,
        alpha=32,
        learning_rate=1.5e-4,
        epochs=3.0,
        context_length=4096,
        batch_size=8,
        target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
    ),
    "large": Hyperparameters(
        rank=32,
        alpha=64,
        learning_rate=1e-4,
        epochs=3.0,
        context_length=8192,
        batch_size=4,
        gradient_accumulation=4,
        target_modules=(
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ),
    ),
}


def preset(name: str, **overrides: Any) -> Hyperparameters:
    """A preset with some values replaced (`None` values leave the preset's)."""
    if name not in PRESETS:
        raise InvalidHyperparameters(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    chosen = {key: value for key, value in overrides.items() if value is not None}
    unknown = sorted(set(chosen) - set(Hyperparameters.__dataclass_fields__))
    if unknown:
        raise InvalidHyperparameters(f"unknown hyperparameter(s) {', '.join(unknown)}")
    if "target_modules" in chosen:
        chosen["target_modules"] = tuple(chosen["target_modules"])
    chosen_values = replace(PRESETS[name], **chosen)
    # An explicit middle length is kept as asked (and validated); only the preset's is fitted.
    return chosen_values if "max_middle_tokens" in chosen else _fit_middle(chosen_values)


def _fit_middle(hyperparameters: Hyperparameters) -> Hyperparameters:
    # A shorter context than the preset's keeps a quarter of it for the middle.
    if hyperparameters.max_middle_tokens >= hyperparameters.context_length:
        return replace(hyperparameters, max_middle_tokens=hyperparameters.context_length // 4)
    return hyperparameters


@dataclass(frozen=True)
class StepMetrics:
    step: int
    total_steps: int
    epoch: float
    loss: float
    learning_rate: float
    grad_norm: float
    tokens_per_second: float
    elapsed_seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainingResult:
    state: TrainingState
    out_dir: Path
    adapter_dir: Path | None
    steps: int
    total_steps: int
    final_loss: float | None
    seconds: float
    hyperparameters: Hyperparameters
    base_model: dict[str, Any]
    dataset_hash: str | None
    resumed_from: int | None = None
    reason: dict[str, str] | None = None
    examples: int = 0
    skipped_examples: int = 0
    metrics: list[StepMetrics] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "adapter_dir": str(self.adapter_dir) if self.adapter_dir else None,
            "steps": self.steps,
            "total_steps": self.total_steps,
            "final_loss": self.final_loss,
            "seconds": round(self.seconds, 3),
            "resumed_from": self.resumed_from,
            "examples": self.examples,
            "skipped_examples": self.skipped_examples,
            "hyperparameters": self.hyperparameters.to_json(),
            "base_model": self.base_model,
            "dataset_hash": self.dataset_hash,
        }


# ---- loading ------------------------------------------------------------------------------------


def describe_base_model(base_model: Path) -> dict[str, Any]:
    """The base model's identity and FIM tokens, or a clear error if it cannot be trained."""
    problem = is_model_dir(base_model)
    if problem is not None:
        raise InvalidBaseModel(problem)
    metadata = read_model_metadata(base_model)
    fim.markers_for(metadata, lambda _token: 0, 0)
    return {
        "name": metadata.get("name"),
        "path": str(Path(base_model).resolve()),
        "family": metadata.get("family"),
        "fim_tokens": metadata.get("fim_tokens"),
        "context_length": metadata.get("context_length"),
    }


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call,unused-ignore]
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call,unused-ignore]
    try:
        with warnings.catch_warnings():
            # PEFT asks transformers about gradient checkpointing by a deprecated name.
            warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
            yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call,unused-ignore]


def _load_tokenizer(base_model: Path) -> tuple[Any, fim.FimMarkers]:
    from transformers import AutoTokenizer

    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(str(base_model))
    metadata = read_model_metadata(base_model)

    def token_id(text: str) -> int | None:
        ids = tokenizer.encode(text, add_special_tokens=False)
        return int(ids[0]) if len(ids) == 1 else None

    end = tokenizer.eos_token_id
    return tokenizer, fim.markers_for(metadata, token_id, int(end) if end is not None else None)


def _device(cpu_threads: int | None = None, local_rank: int | None = None) -> Any:
    import torch

    if torch.cuda.is_available():
        device = torch.device("cuda" if local_rank is None else f"cuda:{local_rank}")
    else:
        device = torch.device("cpu")
    if device.type == "cpu" and cpu_threads is not None:
        # On a shared CPU, OpenMP threads spin waiting for each other; one thread per job
        # is often several times faster than all cores.
        torch.set_num_threads(cpu_threads)
    return device


def _load_model(base_model: Path, device: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    # Full precision on the CPU (no fast bf16 there); bf16 on a GPU.
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with _quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=dtype)
    return model.to(device)


def _encode_examples(
    tokenizer: Any,
    markers: fim.FimMarkers,
    examples: Sequence[dict[str, Any]],
    hyperparameters: Hyperparameters,
) -> tuple[list[tuple[list[int], list[int]]], int]:
    context = hyperparameters.context_length
    # Characters beyond a generous multiple of the context cannot survive the token budget;
    # cutting them first keeps tokenisation time proportional to what is used.
    keep_chars = context * 8
    prefixes = [example["prefix"][-keep_chars:] for example in examples]
    suffixes = [example["suffix"][:keep_chars] for example in examples]
    middles = [example["middle"] for example in examples]
    encode = tokenizer(
        prefixes + suffixes + middles, add_special_tokens=False, return_attention_mask=False
    )["input_ids"]
    count = len(examples)
    encoded = []
    skipped = 0
    for index in range(count):
        middle = encode[2 * count + index]
        if not middle or len(middle) > hyperparameters.max_middle_tokens:
            skipped += 1
            continue
        built = fim.training_ids(markers, encode[index], encode[count + index], middle, context)
        if built is None:
            skipped += 1
            continue
        encoded.append(built)
    return encoded, skipped


# ---- data parallelism ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ranks:
    """This process's place in a `torchrun` launch; one process is world 1, rank 0."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _ranks() -> _Ranks:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Ranks()
    return _Ranks(
        rank=int(os.environ.get("RANK", "0")),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def _barrier(ranks: _Ranks) -> None:
    if ranks.distributed:
        import torch.distributed as dist

        dist.barrier()


def _mean_across(ranks: _Ranks, value: float, device: Any) -> float:
    """The mean of `value` over all ranks (the value itself in one process)."""
    if not ranks.distributed:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / ranks.world


def _sum_across(ranks: _Ranks, value: int, device: Any) -> int:
    if not ranks.distributed:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(tensor)
    return int(tensor.item())


def _from_main(ranks: _Ranks, flag: bool, device: Any) -> bool:
    """Rank 0's `flag` on every rank."""
    if not ranks.distributed:
        return flag
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


# ---- the training loop --------------------------------------------------------------------------


def _write_json(path: Path, value: Any) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temporary.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


def _dataset_hash(dataset_dir: Path) -> str | None:
    card = dataset_dir / CARD_JSON
    if not card.is_file():
        return None
    value = json.loads(card.read_text(encoding="utf-8")).get("dataset_hash")
    return value if isinstance(value, str) else None


def _latest_checkpoint(checkpoints: Path) -> Path | None:
    if not checkpoints.is_dir():
        return None
    complete = sorted(
        path
        for path in checkpoints.iterdir()
        if path.name.startswith("step-") and (path / _TRAINER_STATE).is_file()
    )
    return complete[-1] if complete else None


def _schedule(step: int, total: int, warmup: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    # Cosine decay to a tenth of the peak: the last steps still learn a little.
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _order(count: int, seed: int, epoch: int) -> list[int]:
    indexes = list(range(count))
    random.Random(f"{seed}|epoch|{epoch}").shuffle(indexes)
    return indexes


def train_adapter(
    base_model: Path,
    dataset_dir: Path,
    out_dir: Path,
    hyperparameters: Hyperparameters | None = None,
    *,
    resume: bool = True,
    should_cancel: Callable[[], bool] | None = None,
    on_step: Callable[[StepMetrics], None] | None = None,
    min_examples: int = 1,
    cpu_threads: int | None = None,
) -> TrainingResult:
    """Train a LoRA adapter of `base_model` on the dataset in `dataset_dir`.

    Returns the succeeded result, or raises `TrainingDiverged`, `JobCancelled` or another
    `FinetuneError` after recording the failed or cancelled state in `training.json`.
    Any other exception (a crash) is recorded as failed too, and re-raised.
    """
    hyperparameters = hyperparameters or PRESETS["small"]
    hyperparameters.validate()
    base_model = Path(base_model)
    dataset_dir = Path(dataset_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    info = describe_base_model(base_model)
    context_limit = info.get("context_length")
    if isinstance(context_limit, int) and hyperparameters.context_length > context_limit:
        # The base model cannot attend further than it was built for.
        hyperparameters = _fit_middle(replace(hyperparameters, context_length=context_limit))
        hyperparameters.validate()
    dataset_hash = _dataset_hash(dataset_dir)
    ranks = _ranks()
    state_file = out_dir / STATE_FILE
    result = TrainingResult(
        state="running",
        out_dir=out_dir,
        adapter_dir=None,
        steps=0,
        total_steps=0,
        final_loss=None,
        seconds=0.0,
        hyperparameters=hyperparameters,
        base_model=info,
        dataset_hash=dataset_hash,
    )
    if ranks.main:
        _write_json(state_file, result.to_json())
    try:
        _train(
            result,
            base_model,
            dataset_dir,
            resume=resume,
            should_cancel=should_cancel,
            on_step=on_step,
            min_examples=min_examples,
            started=started,
            cpu_threads=cpu_threads,
            ranks=ranks,
        )
    except JobCancelled as exc:
        _finish(result, "cancelled", exc.error_code, exc.message, started, ranks)
        raise
    except FinetuneError as exc:
        _finish(result, "failed", exc.error_code, exc.message, started, ranks)
        raise
    except BaseException as exc:
        _finish(result, "failed", "crashed", f"{type(exc).__name__}: {exc}", started, ranks)
        raise
    result.state = "succeeded"
    result.seconds = time.monotonic() - started
    if ranks.main:
        _write_json(state_file, result.to_json())
    return result


def _finish(
    result: TrainingResult,
    state: TrainingState,
    code: str,
    message: str,
    started: float,
    ranks: _Ranks,
) -> None:
    result.state = state
    result.reason = {"code": code, "message": message}
    result.seconds = time.monotonic() - started
    result.adapter_dir = None
    if ranks.main:
        _write_json(result.out_dir / STATE_FILE, result.to_json())


def _train(
    result: TrainingResult,
    base_model: Path,
    dataset_dir: Path,
    *,
    resume: bool,
    should_cancel: Callable[[], bool] | None,
    on_step: Callable[[StepMetrics], None] | None,
    min_examples: int,
    started: float,
    cpu_threads: int | None,
    ranks: _Ranks,
) -> None:
    with _process_group(ranks):
        _train_ranks(
            result,
            base_model,
            dataset_dir,
            resume=resume,
            should_cancel=should_cancel,
            on_step=on_step,
            min_examples=min_examples,
            started=started,
            cpu_threads=cpu_threads,
            ranks=ranks,
        )


@contextlib.contextmanager
def _process_group(ranks: _Ranks) -> Iterator[None]:
    """The torch.distributed group of a multi-process run for its duration; nothing alone."""
    if not ranks.distributed:
        yield
        return
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(ranks.local_rank)
    # torchrun's environment (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE) says where to meet.
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def _train_ranks(
    result: TrainingResult,
    base_model: Path,
    dataset_dir: Path,
    *,
    resume: bool,
    should_cancel: Callable[[], bool] | None,
    on_step: Callable[[StepMetrics], None] | None,
    min_examples: int,
    started: float,
    cpu_threads: int | None,
    ranks: _Ranks,
) -> None:
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    hp = result.hyperparameters
    out_dir = result.out_dir
    train_file = dataset_dir / TRAIN_FILE
    if not train_file.is_file():
        raise InvalidDataset(f"{dataset_dir} holds no {TRAIN_FILE}; build the dataset first")
    tokenizer, markers = _load_tokenizer(base_model)
    examples = read_examples(train_file)
    encoded, skipped = _encode_examples(tokenizer, markers, examples, hp)
    result.examples = len(encoded)
    result.skipped_examples = skipped
    if len(encoded) < max(1, min_examples):
        raise TooLittleData(
            f"{len(encoded)} training examples fit the context of {hp.context_length} tokens "
            f"({skipped} skipped); at least {max(1, min_examples)} are needed",
            details={"examples": len(encoded), "skipped": skipped},
        )

    torch.manual_seed(hp.seed)
    random.seed(hp.seed)
    device = _device(cpu_threads, ranks.local_rank if ranks.distributed else None)
    model = _load_model(base_model, device)
    config = LoraConfig(
        r=hp.rank,
        lora_alpha=hp.alpha,
        lora_dropout=hp.dropout,
        target_modules=list(hp.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        with _quiet_transformers():
            model = get_peft_model(model, config)
    except ValueError as exc:
        raise InvalidHyperparameters(
            f"cannot place LoRA on {', '.join(hp.target_modules)}: {exc}"
        ) from None
    model.train()
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    batches = _Batches(encoded, hp, ranks)
    forward: Any = model
    if ranks.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # Rank 0's LoRA weights are broadcast to the others here; gradients are averaged.
        forward = DistributedDataParallel(
            model, device_ids=[ranks.local_rank] if device.type == "cuda" else None
        )
    per_step = batches.batch_size * hp.gradient_accumulation
    steps_per_epoch = max(1, math.ceil(batches.shard_size / per_step))
    total_steps = hp.max_steps or max(1, math.ceil(steps_per_epoch * hp.epochs))
    warmup = int(total_steps * hp.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _schedule(step, total_steps, warmup)
    )
    result.total_steps = total_steps

    checkpoints = out_dir / CHECKPOINTS_DIR
    metrics_file = out_dir / METRICS_FILE
    step = 0
    best_smoothed = math.inf
    smoothed: float | None = None
    latest = _latest_checkpoint(checkpoints) if resume else None
    # Every rank picks the same checkpoint before rank 0 may write or remove one.
    _barrier(ranks)
    if latest is not None:
        state = torch.load(latest / _TRAINER_STATE, weights_only=False)
        if state.get("hyperparameters") != hp.to_json() or state.get("dataset_hash") != (
            result.dataset_hash
        ):
            raise InvalidHyperparameters(
                f"checkpoint {latest.name} was made with other hyperparameters or another "
                "dataset; start a new run in another directory (or without resume)"
            )
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(latest / "adapter_model.safetensors")))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rank_rngs = state.get("torch_rng_ranks")
        if ranks.distributed and isinstance(rank_rngs, list) and len(rank_rngs) == ranks.world:
            torch.set_rng_state(rank_rngs[ranks.rank])
        else:
            torch.set_rng_state(state["torch_rng"])
        step = int(state["step"])
        best_smoothed = float(state["best_smoothed"])
        smoothed = state["smoothed"]
        result.resumed_from = step
        if ranks.main:
            _truncate_metrics(metrics_file, step)
    elif ranks.main:
        shutil.rmtree(checkpoints, ignore_errors=True)
        metrics_file.unlink(missing_ok=True)
    _barrier(ranks)

    pad = markers.end
    metrics_target = metrics_file if ranks.main else Path(os.devnull)
    with metrics_target.open("a", encoding="utf-8") as metrics_out:
        while step < total_steps:
            cancel = ranks.main and should_cancel is not None and should_cancel()
            if _from_main(ranks, cancel, device):
                _save_checkpoint(
                    model,
                    optimizer,
                    scheduler,
                    step,
                    best_smoothed,
                    smoothed,
                    result,
                    checkpoints,
                    ranks,
                )
                raise JobCancelled(
                    f"training was cancelled at step {step} of {total_steps}; "
                    "a retry resumes from there",
                    details={"step": step, "total_steps": total_steps},
                )
            step_started = time.monotonic()
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            tokens = 0
            for micro in range(hp.gradient_accumulation):
                batch = batches.batch(step, micro)
                input_ids, labels, attention = _collate(batch, pad, device)
                # Gradients are averaged across ranks once, on the last micro-batch.
                last = micro == hp.gradient_accumulation - 1
                syncing = last or not ranks.distributed
                with contextlib.nullcontext() if syncing else forward.no_sync():
                    output = forward(input_ids=input_ids, attention_mask=attention, labels=labels)
                    loss = output.loss / hp.gradient_accumulation
                    loss.backward()
                loss_sum += float(loss.detach())
                tokens += int(attention.sum())
            # Every rank sees the same mean loss, so NaN and divergence stop all of them.
            loss_sum = _mean_across(ranks, loss_sum, device)
            tokens = _sum_across(ranks, tokens, device)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, hp.max_grad_norm))
            if not math.isfinite(loss_sum) or not math.isfinite(grad_norm):
                what = "loss" if not math.isfinite(loss_sum) else "gradient norm"
                raise TrainingDiverged(
                    f"the {what} became NaN or infinite at step {step + 1}; lower the learning "
                    f"rate ({hp.learning_rate:g})",
                    details={"step": step + 1, "loss": _finite_or_none(loss_sum)},
                )
            learning_rate = float(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
            step += 1
            smoothed = loss_sum if smoothed is None else 0.9 * smoothed + 0.1 * loss_sum
            best_smoothed = min(best_smoothed, smoothed)
            if step > max(warmup, 10) and smoothed > hp.divergence_factor * best_smoothed:
                raise TrainingDiverged(
                    f"the loss diverged at step {step}: {smoothed:.3f}, more than "
                    f"{hp.divergence_factor:g} times its best {best_smoothed:.3f}; lower the "
                    f"learning rate ({hp.learning_rate:g})",
                    details={"step": step, "loss": smoothed, "best_loss": best_smoothed},
                )
            seconds = time.monotonic() - step_started
            metrics = StepMetrics(
                step=step,
                total_steps=total_steps,
                epoch=round(step / steps_per_epoch, 4),
                loss=round(loss_sum, 6),
                learning_rate=learning_rate,
                grad_norm=round(grad_norm, 6),
                tokens_per_second=round(tokens / seconds, 1) if seconds > 0 else 0.0,
                elapsed_seconds=round(time.monotonic() - started, 3),
            )
            metrics_out.write(json.dumps(metrics.to_json()) + "\n")
            metrics_out.flush()
            result.metrics.append(metrics)
            result.steps = step
            result.final_loss = metrics.loss
            if on_step is not None and ranks.main:
                on_step(metrics)
            if step % hp.checkpoint_every == 0 and step < total_steps:
                _save_checkpoint(
                    model,
                    optimizer,
                    scheduler,
                    step,
                    best_smoothed,
                    smoothed,
                    result,
                    checkpoints,
                    ranks,
                )
    if ranks.main:
        result.adapter_dir = _publish_adapter(model, result)
    _barrier(ranks)
    if not ranks.main:
        result.adapter_dir = result.out_dir / ADAPTER_DIR


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _batch(
    encoded: Sequence[tuple[list[int], list[int]]], hp: Hyperparameters, step: int, micro: int
) -> list[tuple[list[int], list[int]]]:
    # The batch is a pure function of (seed, step): resuming at a step replays the same data.
    size = hp.batch_size
    position = (step * hp.gradient_accumulation + micro) * size
    epoch, offset = divmod(position, len(encoded))
    batch: list[tuple[list[int], list[int]]] = []
    order = _order(len(encoded), hp.seed, epoch)
    while len(batch) < size:
        if offset >= len(encoded):
            epoch += 1
            offset = 0
            order = _order(len(encoded), hp.seed, epoch)
        batch.append(encoded[order[offset]])
        offset += 1
    return batch


class _Batches:
    """Which examples each optimiser step's micro-batches hold, on this rank.

    One process keeps `_batch`. Data parallel ranks each read their DistributedSampler shard
    (the same seeded shuffle on every rank, `set_epoch` per pass) with a per-rank batch of
    `batch_size / world`, so a step still covers `batch_size` examples and an epoch takes as
    many steps as on one device. Either way a batch is a pure function of (seed, step).
    """

    def __init__(
        self, encoded: Sequence[tuple[list[int], list[int]]], hp: Hyperparameters, ranks: _Ranks
    ) -> None:
        self.encoded = encoded
        self.hp = hp
        self.ranks = ranks
        self.batch_size = hp.batch_size
        self.shard_size = len(encoded)
        self._sampler: Any = None
        self._orders: dict[int, list[int]] = {}
        if ranks.distributed:
            from torch.utils.data import DistributedSampler

            # The sampler only needs the dataset's length.
            indexes: Any = range(len(encoded))
            self._sampler = DistributedSampler(
                indexes,
                num_replicas=ranks.world,
                rank=ranks.rank,
                shuffle=True,
                seed=hp.seed,
            )
            self.batch_size = max(1, math.ceil(hp.batch_size / ranks.world))
            self.shard_size = len(self._sampler)

    def _shard(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            self._sampler.set_epoch(epoch)
            self._orders = {epoch: list(self._sampler)}
        return self._orders[epoch]

    def batch(self, step: int, micro: int) -> list[tuple[list[int], list[int]]]:
        if not self.ranks.distributed:
            return _batch(self.encoded, self.hp, step, micro)
        position = (step * self.hp.gradient_accumulation + micro) * self.batch_size
        epoch, offset = divmod(position, self.shard_size)
        shard = self._shard(epoch)
        batch: list[tuple[list[int], list[int]]] = []
        while len(batch) < self.batch_size:
            if offset >= len(shard):
                epoch += 1
                offset = 0
                shard = self._shard(epoch)
            batch.append(self.encoded[shard[offset]])
            offset += 1
        return batch


def _collate(
    batch: Sequence[tuple[list[int], list[int]]], pad: int, device: Any
) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, targets) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        labels[row, : len(targets)] = torch.tensor(targets, dtype=torch.long)
        attention[row, : len(ids)] = 1
    return input_ids.to(device), labels.to(device), attention.to(device)


def _truncate_metrics(metrics_file: Path, step: int) -> None:
    if not metrics_file.is_file():
        return
    kept = [
        line
        for line in metrics_file.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= step
    ]
    metrics_file.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


def _save_checkpoint(
    model: Any,
    optimizer: Any,
    scheduler: Any,
    step: int,
    best_smoothed: float,
    smoothed: float | None,
    result: TrainingResult,
    checkpoints: Path,
    ranks: _Ranks,
) -> None:
    import torch

    # Every rank's RNG stream goes into the checkpoint, so a resumed run draws the same dropout.
    rank_rngs: list[Any] | None = None
    if ranks.distributed:
        import torch.distributed as dist

        rank_rngs = [None] * ranks.world
        dist.all_gather_object(rank_rngs, torch.get_rng_state())
    if ranks.main:
        _write_checkpoint(
            model,
            optimizer,
            scheduler,
            step,
            best_smoothed,
            smoothed,
            result,
            checkpoints,
            rank_rngs,
        )
    _barrier(ranks)


def _write_checkpoint(
    model: Any,
    optimizer: Any,
    scheduler: Any,
    step: int,
    best_smoothed: float,
    smoothed: float | None,
    result: TrainingResult,
    checkpoints: Path,
    rank_rngs: list[Any] | None,
) -> None:
    import torch

    checkpoints.mkdir(parents=True, exist_ok=True)
    target = checkpoints / f"step-{step:08d}"
    if target.exists():
        return
    staging = Path(tempfile.mkdtemp(prefix=".step-", dir=checkpoints))
    try:
        with _quiet_transformers():
            model.save_pretrained(str(staging), save_embedding_layers=False)
        torch.save(
            {
                "step": step,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "best_smoothed": best_smoothed,
                "smoothed": smoothed,
                "hyperparameters": result.hyperparameters.to_json(),
                "dataset_hash": result.dataset_hash,
                **({"torch_rng_ranks": rank_rngs} if rank_rngs is not None else {}),
            },
            staging / _TRAINER_STATE,
        )
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in sorted(p for p in checkpoints.iterdir() if p.name.startswith("step-"))[
        :-_KEEP_CHECKPOINTS
    ]:
        shutil.rmtree(old, ignore_errors=True)


def _publish_adapter(model: Any, result: TrainingResult) -> Path:
    target = result.out_dir / ADAPTER_DIR
    staging = Path(tempfile.mkdtemp(prefix=f".{ADAPTER_DIR}.saving-", dir=result.out_dir))
    try:
        with _quiet_transformers():
            model.save_pretrained(
                str(staging), safe_serialization=True, save_embedding_layers=False
            )
        for required in ("adapter_config.json", "adapter_model.safetensors"):
            if not (staging / required).is_file():
                raise RuntimeError(f"PEFT did not write {required}")
        _write_json(
            staging / ADAPTER_METADATA,
            {
                "base_model": result.base_model,
                "dataset_hash": result.dataset_hash,
                "hyperparameters": result.hyperparameters.to_json(),
                "steps": result.steps,
                "final_loss": result.final_loss,
            },
        )
        # vLLM may run as another user; mkdtemp made the directory private.
        staging.chmod(0o755)
        for written in staging.iterdir():
            written.chmod(0o644)
        if target.exists():
            retired = target.with_name(f".{ADAPTER_DIR}.retired-{uuid.uuid4().hex}")
            target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def is_adapter_dir(path: Path) -> bool:
    """A complete adapter as `train_adapter` publishes it."""
    path = Path(path)
    return all(
        (path / name).is_file()
        for name in ("adapter_config.json", "adapter_model.safetensors", ADAPTER_METADATA)
    )


# ---- generation (used by evaluation) ------------------------------------------------------------


@dataclass(frozen=True)
class Completions:
    base: list[str]
    adapter: list[str]
    seconds: float


def generate_completions(
    base_model: Path,
    adapter_dir: Path,
    prompts: Sequence[tuple[str, str]],
    *,
    context_length: int,
    max_new_tokens: int = 48,
    batch_size: int = 16,
    should_cancel: Callable[[], bool] | None = None,
    cpu_threads: int | None = None,
) -> Completions:
    """Greedy middles for (prefix, suffix) pairs, from the base model and from the adapter.

    Greedy decoding on one device is deterministic, so the same adapter always scores the same.
    """
    import torch
    from peft import PeftModel

    started = time.monotonic()
    tokenizer, markers = _load_tokenizer(base_model)
    device = _device(cpu_threads)
    base = _load_model(base_model, device)
    with _quiet_transformers():
        model = PeftModel.from_pretrained(base, str(adapter_dir))
    model.eval()
    budget = max(16, context_length - max_new_tokens)
    keep_chars = context_length * 8
    prefix_ids = tokenizer(
        [prefix[-keep_chars:] for prefix, _ in prompts], add_special_tokens=False
    )["input_ids"]
    suffix_ids = tokenizer(
        [suffix[:keep_chars] for _, suffix in prompts], add_special_tokens=False
    )["input_ids"]
    encoded = [
        fim.prompt_ids(markers, prefix, suffix, budget)
        for prefix, suffix in zip(prefix_ids, suffix_ids, strict=True)
    ]

    def run(disable: bool) -> list[str]:
        outputs: list[str] = []
        for start in range(0, len(encoded), batch_size):
            if should_cancel is not None and should_cancel():
                raise JobCancelled("evaluation was cancelled")
            chunk = encoded[start : start + batch_size]
            width = max(len(ids) for ids in chunk)
            # Left padding: every prompt ends where generation starts.
            input_ids = torch.full((len(chunk), width), markers.end, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, ids in enumerate(chunk):
                input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                attention[row, width - len(ids) :] = 1
            context = model.disable_adapter() if disable else contextlib.nullcontext()
            with torch.no_grad(), context, _quiet_transformers():
                generated = model.generate(  # type: ignore[no-untyped-call,unused-ignore]
                    input_ids=input_ids.to(device),
                    attention_mask=attention.to(device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=markers.end,
                    pad_token_id=markers.end,
                )
            for row in generated[:, width:].tolist():
                if markers.end in row:
                    row = row[: row.index(markers.end)]
                outputs.append(tokenizer.decode(row, skip_special_tokens=True))
        return outputs

    adapter_outputs = run(disable=False)
    base_outputs = run(disable=True)
    return Completions(
        base=base_outputs, adapter=adapter_outputs, seconds=time.monotonic() - started
    )
