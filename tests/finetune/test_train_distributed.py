"""Data-parallel LoRA training for real: `torchrun` starts two processes on this CPU, which
meet over gloo (the GPU path uses NCCL, which needs GPUs and is not run here)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from cove.finetune.train import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    METRICS_FILE,
    STATE_FILE,
    Hyperparameters,
    is_adapter_dir,
)
from tests.finetune.test_train import QUICK, dataset  # noqa: F401 - the module's fixture

ROOT = Path(__file__).resolve().parents[2]


def _torchrun(base: Path, data: Path, out: Path, hp: Hyperparameters) -> list[dict[str, object]]:
    torchrun = Path(sys.executable).with_name("torchrun")
    completed = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "tests.finetune.ddp_worker",
            str(base),
            str(data),
            str(out),
            json.dumps(hp.to_json()),
        ],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return [json.loads((out.parent / f"rank-{rank}.json").read_text()) for rank in (0, 1)]


def test_two_processes_train_one_adapter_written_by_rank_zero(
    tiny_model: Path,
    dataset: Path,
    tmp_path: Path,
) -> None:
    # One epoch, no step limit: the step count shows how the data was shared out.
    hp = replace(QUICK, max_steps=None, epochs=1.0, checkpoint_every=4, learning_rate=1e-2)
    out = tmp_path / "run"
    rank0, rank1 = _torchrun(tiny_model, dataset, out, hp)

    examples = rank0["examples"]
    assert isinstance(examples, int)
    assert examples > 8
    # Each rank's shard is half the examples, in per-rank batches of half the batch size, so
    # the run takes as many optimiser steps as one device would.
    expected = math.ceil(math.ceil(examples / 2) / (hp.batch_size // 2))
    assert abs(expected - math.ceil(examples / hp.batch_size)) <= 1
    for report in (rank0, rank1):
        assert report["world"] == 2
        assert report["state"] == "succeeded"
        assert report["steps"] == report["total_steps"] == expected
    # The loss is averaged across ranks: both saw the same numbers.
    assert rank0["losses"] == rank1["losses"]
    losses = rank0["losses"]
    assert isinstance(losses, list)
    assert len(losses) == expected
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3

    # Only rank 0 reports progress and asks about cancellation.
    assert rank0["on_step_calls"] == expected
    assert rank0["cancel_checks"] == expected
    assert rank1["on_step_calls"] == 0
    assert rank1["cancel_checks"] == 0

    # One metrics line per step (two writers would double them), one adapter, no leftovers.
    lines = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, expected + 1))
    assert [line["loss"] for line in lines] == losses
    assert is_adapter_dir(out / ADAPTER_DIR)
    metadata = json.loads((out / ADAPTER_DIR / "cove_adapter.json").read_text())
    assert metadata["steps"] == expected
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [ADAPTER_DIR, CHECKPOINTS_DIR, METRICS_FILE, STATE_FILE]
    )
    state = json.loads((out / STATE_FILE).read_text())
    assert state["state"] == "succeeded"
    assert state["steps"] == expected
    # Checkpoints hold every rank's RNG stream, for an exact resume.
    import torch

    checkpoint = sorted((out / CHECKPOINTS_DIR).iterdir())[-1]
    trainer_state = torch.load(checkpoint / "trainer_state.pt", weights_only=False)
    assert len(trainer_state["torch_rng_ranks"]) == 2
