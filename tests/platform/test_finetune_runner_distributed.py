"""A multi-GPU attempt's command, run for real on the CPU: `torchrun` starts two runners for
one job against the real database; rank 0 runs the job and the other rank only trains. Two
gloo processes stand in for the GPUs (NCCL on real GPUs is not exercised here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from cove.platform.core.settings import CoveSettings
from cove.platform.finetuning.k8s import runner_command
from cove.platform.finetuning.settings import FinetuneSettings
from tests.factories import bearer
from tests.finetune.synthetic import write_consumers, write_sdk
from tests.platform.deployments_support import control  # noqa: F401 - a fixture
from tests.platform.test_finetune_runner import _log, _seen, finetune_settings, tiny  # noqa: F401

pytestmark = pytest.mark.usefixtures("world")


@pytest.mark.usefixtures("tiny")
async def test_torchrun_runs_one_job_with_two_ranks_and_rank_zero_reports(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    settings: CoveSettings,
    finetune_settings: FinetuneSettings,
    tmp_path: Path,
) -> None:
    sdk = write_sdk(tmp_path / "code" / "ledgerlink")
    consumers = write_consumers(tmp_path / "code" / "payments", files=20, seed=5)
    resp = await control.post(
        f"/api/v1/bus/{world['a']['bu'].id}/finetune-jobs",
        json={
            "name": "sdk-ddp",
            "repositories": [
                {"location": str(sdk), "role": "sdk"},
                {"location": str(consumers), "role": "consumer"},
            ],
            "base_model": "cove-tiny",
            "hyperparameters": {
                "rank": 4,
                "alpha": 8,
                "learning_rate": 1e-2,
                "max_steps": 6,
                "batch_size": 4,
                "context_length": 128,
                "max_middle_tokens": 48,
                "checkpoint_every": 3,
            },
            "dataset": {
                "min_train_examples": 20,
                "min_eval_examples": 2,
                "max_prefix_chars": 400,
                "max_suffix_chars": 120,
            },
            "evaluation": {"max_examples": 4, "max_new_tokens": 8},
        },
        headers=bearer(world["a"]["admin_key"]),
    )
    assert resp.status_code == 201, resp.text
    job = resp.json()
    # The command a 2-GPU Kubernetes Job runs, with this interpreter's torchrun.
    command = runner_command(job["id"], 1, 2)
    assert command[0] == "torchrun"
    command[0] = str(Path(sys.executable).with_name("torchrun"))
    completed = subprocess.run(
        command,
        env={
            **os.environ,
            "COVE_DATABASE_URL": settings.database_url,
            "COVE_REDIS_URL": settings.redis_url,
            "COVE_SECRET_KEY": settings.secret_key.get_secret_value(),
            "COVE_FINETUNE_DIR": str(finetune_settings.finetune_dir),
            "COVE_FINETUNE_CPU_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        },
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    seen = await _seen(control, world, job["id"])
    # Training ran to its end on both ranks; what the job ends as is the evaluation's verdict.
    progress = seen["progress"]
    assert progress["step"] == progress["total_steps"] == 6, (seen, completed.stderr[-4000:])
    assert seen["status"] in ("succeeded", "failed"), seen
    assert (seen["reason"] or {}).get("code") != "crashed", seen
    assert completed.returncode == (0 if seen["status"] == "succeeded" else 1)
    # Rank 0 alone wrote the job's log: one start, one training summary.
    lines = await _log(control, world, job["id"])
    assert len([line for line in lines if line.startswith("attempt 1 started")]) == 1, lines
    assert len([line for line in lines if line.startswith("trained 6 steps")]) == 1, lines
    # And the run's files: one metrics line per step, one adapter, the state of a finished run.
    (run,) = finetune_settings.finetune_dir.resolve().glob(f"*/{job['id']}")
    training = run / "training"
    metrics = (training / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in metrics]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert json.loads((training / "training.json").read_text())["state"] == "succeeded"
    assert (training / "adapter" / "adapter_model.safetensors").is_file()
