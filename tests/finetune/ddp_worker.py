"""One rank of a data-parallel training run, as `torchrun` starts it in
tests/finetune/test_train_distributed.py:

    torchrun --standalone --nproc_per_node=2 -m tests.finetune.ddp_worker BASE DATASET OUT HP

Each rank trains with `train_adapter` and writes what it saw to OUT/../rank-N.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from cove.finetune.train import Hyperparameters, StepMetrics, train_adapter


def main() -> None:
    base_model, dataset, out, hyperparameters = sys.argv[1:5]
    rank = int(os.environ["RANK"])
    steps: list[StepMetrics] = []
    cancel_checks = 0

    def should_cancel() -> bool:
        nonlocal cancel_checks
        cancel_checks += 1
        return False

    result = train_adapter(
        Path(base_model),
        Path(dataset),
        Path(out),
        Hyperparameters.from_json(json.loads(hyperparameters)),
        resume=False,
        should_cancel=should_cancel,
        on_step=steps.append,
        cpu_threads=1,
    )
    report = {
        "rank": rank,
        "world": int(os.environ["WORLD_SIZE"]),
        "state": result.state,
        "steps": result.steps,
        "total_steps": result.total_steps,
        "examples": result.examples,
        "final_loss": result.final_loss,
        "losses": [metrics.loss for metrics in result.metrics],
        "on_step_calls": len(steps),
        "cancel_checks": cancel_checks,
    }
    (Path(out).parent / f"rank-{rank}.json").write_text(json.dumps(report), encoding="utf-8")


if __name__ == "__main__":
    main()
