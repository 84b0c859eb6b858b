"""Every way a fine-tuning job goes wrong, as a BU admin sees it through the jobs API: no SDK
symbols, consumers that never call the SDK, too little data, a base model without FIM tokens,
divergence, a runner killed mid-training, cancellation while it trains, an adapter that does
not beat the base. Each ends in `failed` or `cancelled` with a stable reason code and a
message, and the catalog never gains an adapter.

The runner is the real one, on the CPU with the tiny model: in this process where that is
enough, as the worker's own child process where the process matters (killed, cancelled).
Unreachable and empty repositories and lost jobs are in test_finetune_runner.py, admission
(GPU quota, bad specs) in test_finetune_jobs_api.py, the successful path in
tests/finetune/test_finetune_job_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from cove.platform.core.db import SyncDatabase
from cove.platform.core.settings import CoveSettings
from cove.platform.finetuning import repository, runner, tasks
from cove.platform.finetuning.settings import FinetuneSettings
from tests.factories import bearer
from tests.finetune.synthetic import write_consumers, write_sdk
from tests.platform.deployments_support import (
    control,  # noqa: F401 - a fixture
    register_base,
    sync_db,  # noqa: F401 - a fixture
)

pytestmark = pytest.mark.usefixtures("world")

# Small enough to train in seconds on one core; the dataset floors match the data written.
QUICK = {
    "rank": 4,
    "alpha": 8,
    "dropout": 0.0,
    "max_steps": 60,
    "batch_size": 4,
    "context_length": 128,
    "max_middle_tokens": 48,
    "warmup_ratio": 0.0,
    "checkpoint_every": 5,
    "seed": 3,
}
DATASET = {
    "min_train_examples": 20,
    "min_eval_examples": 2,
    "max_prefix_chars": 400,
    "max_suffix_chars": 120,
}
EVALUATION = {"max_examples": 6, "max_new_tokens": 8}


@pytest.fixture
def finetune_settings(settings: CoveSettings, tmp_path: Path) -> FinetuneSettings:
    return FinetuneSettings(
        **{**settings.model_dump(), "finetune_dir": tmp_path / "finetune"},
        finetune_cpu_threads=1,
    )


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    return {
        "sdk": write_sdk(tmp_path / "code" / "ledgerlink"),
        "consumers": write_consumers(tmp_path / "code" / "payments", files=20, seed=5),
    }


@pytest.fixture
def runner_env(settings: CoveSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner process reads its settings from the environment the worker hands it."""
    monkeypatch.setenv("COVE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("COVE_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("COVE_SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv("COVE_FINETUNE_CPU_THREADS", "1")


def _jobs(world: dict[str, Any], rest: str = "") -> str:
    return f"/api/v1/bus/{world['a']['bu'].id}/finetune-jobs{rest}"


async def _queue(
    api: httpx.AsyncClient,
    world: dict[str, Any],
    sdk: Path,
    consumers: Path,
    *,
    base_model: str = "cove-tiny",
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "name": "sdk-v1",
        "repositories": [
            {"location": str(sdk), "role": "sdk"},
            {"location": str(consumers), "role": "consumer"},
        ],
        "base_model": base_model,
        "hyperparameters": QUICK,
        "dataset": DATASET,
        "evaluation": EVALUATION,
        **extra,
    }
    resp = await api.post(_jobs(world), json=body, headers=bearer(world["a"]["admin_key"]))
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def _seen(api: httpx.AsyncClient, world: dict[str, Any], job_id: str) -> dict[str, Any]:
    resp = await api.get(_jobs(world, f"/{job_id}"), headers=bearer(world["a"]["admin_key"]))
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def _log(api: httpx.AsyncClient, world: dict[str, Any], job_id: str) -> list[str]:
    resp = await api.get(_jobs(world, f"/{job_id}/logs"), headers=bearer(world["a"]["admin_key"]))
    assert resp.status_code == 200, resp.text
    return [line["message"] for line in resp.json()["lines"]]


async def _adapters(api: httpx.AsyncClient, world: dict[str, Any]) -> list[str]:
    """The BU's adapters in the catalog (the BU's models list holds its bases and adapters)."""
    resp = await api.get(
        f"/api/v1/bus/{world['a']['bu'].id}/models", headers=bearer(world["a"]["admin_key"])
    )
    assert resp.status_code == 200, resp.text
    assert any(model["kind"] == "base" for model in resp.json())
    return [model["name"] for model in resp.json() if model["kind"] == "adapter"]


async def _until(
    what: str, check: Callable[[], Awaitable[Any]], timeout: float = 180, interval: float = 0.5
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what}: not reached in {timeout:.0f} s (last: {last!r})")


async def _ended_without_adapter(
    api: httpx.AsyncClient, world: dict[str, Any], job_id: str, status: str, code: str
) -> dict[str, Any]:
    """The job's state as the API shows it, and the catalog unchanged."""
    seen = await _seen(api, world, job_id)
    assert (seen["status"], seen["reason"]["code"]) == (status, code), seen
    assert seen["reason"]["message"]
    assert seen["finished_at"] is not None
    assert seen["progress"]["eta_seconds"] is None
    assert seen["adapter_model_id"] is None
    assert seen["cancel_requested"] is (status == "cancelled")
    assert await _adapters(api, world) == []
    log = await _log(api, world, job_id)
    assert log[-1].startswith(f"{status} ({code})"), log
    return seen


def _no_public_names(root: Path) -> Path:
    (root / "ledgerlink").mkdir(parents=True)
    (root / "ledgerlink" / "_impl.py").write_text("def _hidden():\n    return 1\n")
    return root


def _never_calls_it(root: Path) -> Path:
    (root / "app").mkdir(parents=True)
    for index in range(5):
        (root / "app" / f"m{index}.py").write_text(
            f"import json\n\n\ndef load_{index}(path):\n    return json.loads(path)\n"
        )
    return root


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("no_public_sdk_names", "no_sdk_symbols", "public"),
        ("consumers_never_call_it", "no_sdk_call_sites", "no code that calls them"),
        ("two_files_of_consumers", "too_little_data", "at least"),
    ],
)
async def test_a_dataset_that_cannot_be_built_fails_the_job_with_its_reason(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    sync_db: SyncDatabase,
    finetune_settings: FinetuneSettings,
    tiny_model: Path,
    sources: dict[str, Path],
    tmp_path: Path,
    case: str,
    code: str,
    words: str,
) -> None:
    await register_base(control, world, location=str(tiny_model))
    sdk, consumers = sources["sdk"], sources["consumers"]
    dataset = DATASET
    if case == "no_public_sdk_names":
        sdk = _no_public_names(tmp_path / "private-sdk")
    elif case == "consumers_never_call_it":
        # An SDK that does not call itself either (the synthetic one does).
        sdk = tmp_path / "sdk-only-defs"
        (sdk / "ledgerlink").mkdir(parents=True)
        (sdk / "ledgerlink" / "__init__.py").write_text(
            "def post_entry(account, amount):\n    return (account, amount)\n"
        )
        consumers = _never_calls_it(tmp_path / "unrelated")
    else:
        consumers = write_consumers(tmp_path / "few", files=2, seed=1)
        dataset = {**DATASET, "min_train_examples": 50, "min_eval_examples": 10}
    job = await _queue(control, world, sdk, consumers, dataset=dataset)
    status = await asyncio.to_thread(runner.execute, finetune_settings, sync_db, UUID(job["id"]), 1)
    assert status == "failed"
    seen = await _ended_without_adapter(control, world, job["id"], "failed", code)
    assert words in seen["reason"]["message"], seen["reason"]
    # It stopped while preparing: no step was trained, nothing was evaluated.
    assert seen["progress"]["step"] is None
    assert seen["evaluation"] is None
    assert not list((finetune_settings.finetune_dir).rglob("adapter_model.safetensors"))


def _strip_fim(model: Path) -> None:
    metadata = json.loads((model / "cove_model.json").read_text())
    metadata["fim_tokens"] = None
    (model / "cove_model.json").write_text(json.dumps(metadata))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        text = (model / name).read_text()
        (model / name).write_text(text.replace("<fim_", "<xfim_"))


async def test_a_base_model_without_fim_tokens_is_refused_or_fails_the_job(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    sync_db: SyncDatabase,
    finetune_settings: FinetuneSettings,
    tiny_model: Path,
    sources: dict[str, Path],
    tmp_path: Path,
) -> None:
    await register_base(control, world, location=str(tiny_model))
    # A model directory on the workers is asked at admission: refused before anything runs.
    plain = tmp_path / "models" / "plain-chat"
    shutil.copytree(tiny_model, plain)
    _strip_fim(plain)
    await register_base(control, world, name="plain-chat", location=str(plain))
    refused = await control.post(
        _jobs(world),
        json={
            "name": "sdk-v1",
            "repositories": [
                {"location": str(sources["sdk"]), "role": "sdk"},
                {"location": str(sources["consumers"]), "role": "consumer"},
            ],
            "base_model": "plain-chat",
        },
        headers=bearer(world["a"]["admin_key"]),
    )
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("no_fim_tokens", "base_model")
    assert "fill-in-the-middle" in error["message"]
    assert (await control.get(_jobs(world), headers=bearer(world["a"]["admin_key"]))).json() == []

    # A model replaced after admission (a new revision without FIM tokens): the runner checks
    # again before any work and fails the job.
    coder = tmp_path / "models" / "coder"
    shutil.copytree(tiny_model, coder)
    await register_base(control, world, name="coder", location=str(coder))
    job = await _queue(control, world, sources["sdk"], sources["consumers"], base_model="coder")
    _strip_fim(coder)
    await asyncio.to_thread(runner.execute, finetune_settings, sync_db, UUID(job["id"]), 1)
    seen = await _ended_without_adapter(control, world, job["id"], "failed", "no_fim_tokens")
    assert seen["progress"]["step"] is None


async def test_a_diverging_run_fails_with_the_step_and_registers_nothing(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    sync_db: SyncDatabase,
    finetune_settings: FinetuneSettings,
    tiny_model: Path,
    sources: dict[str, Path],
) -> None:
    await register_base(control, world, location=str(tiny_model))
    # The highest learning rate the API accepts, on the output layer too: the loss explodes
    # within a dozen steps on the tiny model.
    wild = {**QUICK, "learning_rate": 1.0, "target_modules": ["q_proj", "v_proj", "lm_head"]}
    job = await _queue(control, world, sources["sdk"], sources["consumers"], hyperparameters=wild)
    status = await asyncio.to_thread(runner.execute, finetune_settings, sync_db, UUID(job["id"]), 1)
    assert status == "failed"
    seen = await _ended_without_adapter(control, world, job["id"], "failed", "diverged")
    assert "lower the learning rate" in seen["reason"]["message"]
    assert seen["reason"]["step"] > 10
    assert seen["evaluation"] is None
    log = await _log(control, world, job["id"])
    assert "training the LoRA adapter" in log
    assert not any(line.startswith("evaluating") for line in log), log


async def _training_step(
    api: httpx.AsyncClient, world: dict[str, Any], job_id: str, at_least: int
) -> dict[str, Any]:
    async def training() -> dict[str, Any] | None:
        seen = await _seen(api, world, job_id)
        assert seen["status"] in ("queued", "preparing", "training"), seen
        step = seen["progress"]["step"] or 0
        return seen if seen["status"] == "training" and step >= at_least else None

    # Polled often: on a quiet machine the tiny model trains a step in milliseconds.
    return dict(await _until(f"job training past step {at_least}", training, interval=0.05))


def _runner_pid(sync_db: SyncDatabase, job_id: str) -> int:
    with sync_db.platform() as conn:
        row = repository.get_sync(conn, UUID(job_id))
    assert row is not None
    assert row.worker_ref is not None
    return int(row.worker_ref.rsplit(":", 1)[1])


@pytest.mark.usefixtures("runner_env")
async def test_a_runner_killed_mid_training_fails_and_a_retry_resumes_from_its_checkpoint(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    sync_db: SyncDatabase,
    finetune_settings: FinetuneSettings,
    tiny_model: Path,
    sources: dict[str, Path],
) -> None:
    await register_base(control, world, location=str(tiny_model))
    # The gate asks for the impossible, so the resumed run ends on the evaluation's verdict.
    # Long enough that the kill lands mid-training however fast the machine is.
    steps = 400
    job = await _queue(
        control,
        world,
        sources["sdk"],
        sources["consumers"],
        gate={"min_sdk_recall_gain": 1.0},
        hyperparameters={**QUICK, "max_steps": steps},
    )
    assert tasks.launch(sync_db, finetune_settings, UUID(job["id"]), 1) == "started"
    progress = await _training_step(control, world, job["id"], at_least=12)
    assert progress["progress"]["total_steps"] == steps
    assert 0 < progress["progress"]["percent"] < 100
    assert progress["progress"]["loss"] > 0
    # The out-of-memory killer, or a node lost: no chance to report anything.
    os.kill(_runner_pid(sync_db, job["id"]), signal.SIGKILL)

    async def swept() -> dict[str, int]:
        return await asyncio.to_thread(
            tasks.sweep, sync_db, finetune_settings, lambda *_: pytest.fail("nothing to start")
        )

    assert await _until("the sweep notices the dead runner", swept, 30) == {"crashed": 1}
    crashed = await _ended_without_adapter(control, world, job["id"], "failed", "crashed")
    assert "retry to resume from the last checkpoint" in crashed["reason"]["message"]

    retry = await control.post(
        _jobs(world, f"/{job['id']}/retry"), headers=bearer(world["a"]["admin_key"])
    )
    assert retry.status_code == 202, retry.text
    assert (retry.json()["status"], retry.json()["attempt"]) == ("queued", 2)
    status = await asyncio.to_thread(runner.execute, finetune_settings, sync_db, UUID(job["id"]), 2)
    assert status == "failed"
    seen = await _ended_without_adapter(
        control, world, job["id"], "failed", "promotion_gate_failed"
    )
    assert seen["attempt"] == 2
    assert seen["progress"]["step"] == seen["progress"]["total_steps"] == steps
    log = await _log(control, world, job["id"])
    resumed = [line for line in log if "resumed from the checkpoint at step" in line]
    assert len(resumed) == 1, log
    assert int(resumed[0].rsplit(" ", 1)[1]) >= 10
    # The verdict comes with the numbers it was made on.
    evaluation = seen["evaluation"]
    assert evaluation["gate"]["passed"] is False
    assert any("SDK-API recall gain" in reason for reason in evaluation["gate"]["reasons"])
    metrics = {"exact_match", "edit_similarity", "sdk_api_recall", "syntax_validity"}
    assert metrics <= set(evaluation["base"])
    assert metrics <= set(evaluation["adapter_scores"])
    assert evaluation["examples"] == EVALUATION["max_examples"]
    # The trained adapter stays on disk for inspection, but nothing lists it.
    job_dir = finetune_settings.finetune_dir.resolve() / str(world["a"]["bu"].id) / job["id"]
    assert (job_dir / "training" / "adapter" / "adapter_model.safetensors").is_file()
    assert not (job_dir / "registry.json").exists()


@pytest.mark.usefixtures("runner_env")
async def test_a_job_cancelled_while_its_runner_trains_ends_cancelled(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    sync_db: SyncDatabase,
    finetune_settings: FinetuneSettings,
    tiny_model: Path,
    sources: dict[str, Path],
) -> None:
    await register_base(control, world, location=str(tiny_model))
    long = {**QUICK, "max_steps": 100_000}
    job = await _queue(control, world, sources["sdk"], sources["consumers"], hyperparameters=long)
    assert tasks.launch(sync_db, finetune_settings, UUID(job["id"]), 1) == "started"
    await _training_step(control, world, job["id"], at_least=1)
    cancelled = await control.post(
        _jobs(world, f"/{job['id']}/cancel"), headers=bearer(world["a"]["admin_key"])
    )
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["cancel_requested"]) == (
        "training",
        True,
    )

    async def ended() -> dict[str, Any] | None:
        seen = await _seen(control, world, job["id"])
        return seen if seen["status"] in ("cancelled", "failed", "succeeded") else None

    await _until("the runner honours the cancel", ended, 60)
    seen = await _ended_without_adapter(control, world, job["id"], "cancelled", "cancelled")
    assert "a retry resumes from there" in seen["reason"]["message"]
    # The runner process exits by itself.
    pid = _runner_pid(sync_db, job["id"])
    await _until("the runner exits", lambda: asyncio.to_thread(lambda: not tasks._running(pid)), 30)


async def test_an_error_inside_the_runner_fails_the_job_as_crashed(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    sync_db: SyncDatabase,
    finetune_settings: FinetuneSettings,
    tiny_model: Path,
    sources: dict[str, Path],
) -> None:
    await register_base(control, world, location=str(tiny_model))
    job = await _queue(control, world, sources["sdk"], sources["consumers"])
    # The training directory is not what the trainer expects (a broken volume, say): an
    # error that is not one of the pipeline's own.
    job_dir = finetune_settings.finetune_dir.resolve() / str(world["a"]["bu"].id) / job["id"]
    (job_dir / "training" / "metrics.jsonl").mkdir(parents=True)
    status = await asyncio.to_thread(runner.execute, finetune_settings, sync_db, UUID(job["id"]), 1)
    assert status == "failed"
    seen = await _ended_without_adapter(control, world, job["id"], "failed", "crashed")
    assert seen["reason"]["message"].startswith("IsADirectoryError")
    assert seen["dataset_hash"]  # it got as far as the dataset


async def test_an_adapter_the_catalog_refuses_at_the_end_is_not_registered(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    sync_db: SyncDatabase,
    finetune_settings: FinetuneSettings,
    tiny_model: Path,
    sources: dict[str, Path],
) -> None:
    await register_base(control, world, location=str(tiny_model))
    # A gate any adapter passes, so the run reaches registration.
    job = await _queue(
        control,
        world,
        sources["sdk"],
        sources["consumers"],
        hyperparameters={**QUICK, "max_steps": 3},
        gate={
            "min_sdk_recall_gain": -1.0,
            "min_edit_similarity_gain": -1.0,
            "max_syntax_validity_drop": 1.0,
        },
        adapter_name="ledgerlink-v1",
    )
    # Meanwhile a platform admin gave the name to another model.
    await register_base(control, world, name="ledgerlink-v1", location=str(tiny_model), grant=())
    status = await asyncio.to_thread(runner.execute, finetune_settings, sync_db, UUID(job["id"]), 1)
    assert status == "failed"
    seen = await _ended_without_adapter(control, world, job["id"], "failed", "model_exists")
    assert seen["evaluation"]["gate"]["passed"] is True
    log = await _log(control, world, job["id"])
    assert "the catalog refused the adapter" in log[-1]
    job_dir = finetune_settings.finetune_dir.resolve() / str(world["a"]["bu"].id) / job["id"]
    assert not (job_dir / "registry.json").exists()
