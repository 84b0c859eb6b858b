"""The fine-tuning job end to end, the way a BU admin runs it: through the platform API.

POST a job (a synthetic private SDK and consumer code on disk, the tiny model) -> a real Celery
worker starts the runner process -> queued, preparing, training (step, loss and ETA reported
as it goes), evaluating, succeeded -> the adapter is in the BU's catalog with its lineage ->
attached to a deployment on the session's real vLLM -> the gateway serves it to BU A's
developer and refuses it to BU B's. A second job is cancelled mid-training.

Nothing is faked: Postgres, the Redis broker, the Celery worker, the runner, PEFT training,
vLLM and the gateway all run for real (on the CPU).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cove.gateway.app import create_app
from cove.gateway.settings import GatewaySettings
from cove.platform.core.settings import CoveSettings
from tests.conftest import ServerThread
from tests.factories import bearer
from tests.finetune.synthetic import write_consumers, write_sdk
from tests.platform.deployments_support import (
    celery_worker,
    control,  # noqa: F401 - a fixture
    register_base,
)

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1500)]

# The same recipe as test_pipeline_e2e.py (see there why lm_head is a target).
HYPERPARAMETERS = {
    "rank": 8,
    "alpha": 16,
    "dropout": 0.0,
    "target_modules": ["q_proj", "v_proj", "lm_head"],
    "learning_rate": 2e-2,
    "max_steps": 600,
    "batch_size": 16,
    "context_length": 128,
    "max_middle_tokens": 48,
    "warmup_ratio": 0.05,
    "checkpoint_every": 200,
    "seed": 0,
}
DATASET = {
    "seed": 0,
    "max_prefix_chars": 500,
    "max_suffix_chars": 120,
    "random_span_share": 0.15,
    "min_train_examples": 200,
    "min_eval_examples": 20,
}


async def _until(
    what: str, check: Callable[[], Awaitable[Any]], timeout: float, interval: float = 1.0
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what}: not reached in {timeout:.0f} s (last: {last!r})")


def _complete(gateway: ServerThread, key: str, model: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/completions",
        json={
            "model": model,
            "prompt": "<fim_prefix>import ledgerlink\n<fim_suffix>\n<fim_middle>",
            "max_tokens": 8,
            "temperature": 0,
        },
        headers=bearer(key),
        timeout=60,
    )


async def test_a_job_through_the_api_trains_registers_and_serves_an_adapter(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    settings: CoveSettings,
    tiny_model: Path,
    vllm_url: str,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    bu = world["a"]["bu"].id
    admin = bearer(world["a"]["admin_key"])
    jobs = f"/api/v1/bus/{bu}/finetune-jobs"
    sdk = write_sdk(tmp_path / "code" / "ledgerlink")
    consumers = write_consumers(tmp_path / "code" / "payments", files=150, seed=7)
    await register_base(control, world, location=str(tiny_model))
    worker_env = {
        "COVE_FINETUNE_DIR": str(tmp_path / "finetune"),
        "COVE_FINETUNE_CPU_THREADS": "1",
        "COVE_FINETUNE_SWEEP_SECONDS": "5",
    }
    with celery_worker(settings, tmp_path, worker_env):
        created = await control.post(
            jobs,
            json={
                "name": "ledgerlink-v1",
                "repositories": [
                    {"location": str(sdk), "role": "sdk"},
                    {"location": str(consumers), "role": "consumer"},
                ],
                "base_model": "cove-tiny",
                "hyperparameters": HYPERPARAMETERS,
                "dataset": DATASET,
                "gate": {"min_sdk_recall_gain": 0.1, "min_edit_similarity_gain": 0.1},
                "evaluation": {"max_examples": 80, "max_new_tokens": 24},
                "adapter_name": "ledgerlink-v1",
            },
            headers=admin,
        )
        assert created.status_code == 201, created.text
        job = created.json()
        assert job["status"] == "queued"
        assert job["runtime"] == "local"
        assert job["gpus"] == 0

        # 1. Poll it the way the console does, recording what a user would have seen.
        statuses: list[str] = []
        steps: list[int] = []
        losses: list[float] = []
        etas: list[float] = []

        async def finished() -> dict[str, Any] | None:
            resp = await control.get(f"{jobs}/{job['id']}", headers=admin)
            assert resp.status_code == 200, resp.text
            seen = resp.json()
            if not statuses or statuses[-1] != seen["status"]:
                statuses.append(seen["status"])
            progress = seen["progress"]
            if seen["status"] == "training" and progress["step"]:
                steps.append(progress["step"])
                if progress["loss"] is not None:
                    losses.append(progress["loss"])
                if progress["eta_seconds"] is not None:
                    etas.append(progress["eta_seconds"])
            done = seen["status"] in ("succeeded", "failed", "cancelled")
            return seen if done else None

        done = await _until("job finished", finished, 1200)
        train_seconds = time.monotonic() - started
        assert done["status"] == "succeeded", json.dumps(done, indent=1)
        # Fast phases may pass between two polls; the order never changes and training is
        # long enough to be seen.
        order = ["queued", "preparing", "training", "evaluating", "succeeded"]
        assert statuses == sorted(statuses, key=order.index), statuses
        assert {"training", "succeeded"} <= set(statuses)
        assert steps == sorted(steps), steps
        assert len(set(steps)) >= 3, steps
        assert losses, losses
        assert etas, etas
        assert done["progress"]["percent"] == 100.0
        assert done["progress"]["step"] == done["progress"]["total_steps"] == 600
        assert done["started_at"]
        assert done["finished_at"]

        # 2. The evaluation: the adapter beats the base on held-out SDK call sites.
        evaluation = done["evaluation"]
        base, adapter = evaluation["base"], evaluation["adapter_scores"]
        print(
            "\nJOB-E2E",
            json.dumps(
                {
                    "base": base,
                    "adapter": adapter,
                    "sdk_examples": evaluation["sdk_examples"],
                    "statuses": statuses,
                    "loss_first_last": [losses[0], losses[-1]],
                    "job_seconds": round(train_seconds, 1),
                }
            ),
        )
        assert evaluation["gate"]["passed"]
        assert adapter["sdk_api_recall"] >= base["sdk_api_recall"] + 0.1
        assert done["dataset_hash"]

        logs = await control.get(f"{jobs}/{job['id']}/logs", headers=admin)
        assert logs.status_code == 200, logs.text
        lines = [line["message"] for line in logs.json()["lines"]]
        assert any("registered" in line for line in lines), lines

        # 3. The adapter is in the BU's catalog, with the job's lineage.
        assert done["adapter_model_id"]
        entry = await control.get(
            f"/api/v1/bus/{bu}/adapters/{done['adapter_model_id']}", headers=admin
        )
        assert entry.status_code == 200, entry.text
        registered = entry.json()
        assert registered["name"] == "ledgerlink-v1"
        assert registered["kind"] == "adapter"
        assert registered["base_model"] == "cove-tiny"
        assert registered["lora_rank"] == 8
        assert registered["lineage"]["finetune_job"]["id"] == job["id"]
        assert registered["lineage"]["dataset"]["hash"] == done["dataset_hash"]
        assert registered["lineage"]["hyperparameters"]["learning_rate"] == 2e-2
        assert Path(registered["location"], "adapter_config.json").is_file()
        other_bu = await control.get(
            f"/api/v1/bus/{world['b']['bu'].id}/adapters/{done['adapter_model_id']}",
            headers=bearer(world["b"]["admin_key"]),
        )
        assert other_bu.status_code == 404, other_bu.text

        # 4. Deployed on the real vLLM through the deployments API, served by the gateway.
        deployment = await control.post(
            f"/api/v1/bus/{bu}/deployments",
            json={
                "name": "shared",
                "model": "cove-tiny",
                "mode": "shared",
                "endpoint_url": vllm_url,
            },
            headers=admin,
        )
        assert deployment.status_code == 201, deployment.text
        path = f"/api/v1/bus/{bu}/deployments/{deployment.json()['id']}"
        try:
            attached = await control.post(
                f"{path}/adapters", json={"model": "ledgerlink-v1"}, headers=admin
            )
            assert attached.status_code == 202, attached.text

            async def loaded() -> bool:
                found = (await control.get(path, headers=admin)).json()
                return any(a["state"] == "loaded" for a in found["adapters"])

            await _until("adapter loaded", loaded, 120)
            served = httpx.get(f"{vllm_url}/v1/models", timeout=30).json()
            assert "ledgerlink-v1" in {model["id"] for model in served["data"]}

            gateway_settings = GatewaySettings(
                **{**settings.model_dump(), "cache_refresh_seconds": 60.0}
            )
            with ServerThread(create_app(gateway_settings)) as gateway:
                dev_a, dev_b = world["a"]["dev_key"], world["b"]["dev_key"]

                async def gateway_serves() -> bool:
                    return _complete(gateway, dev_a, "ledgerlink-v1").status_code == 200

                await _until("gateway serves the adapter", gateway_serves, 15)
                answer = _complete(gateway, dev_a, "ledgerlink-v1")
                assert answer.headers["x-cove-model-version"] == "ledgerlink-v1"
                assert answer.json()["model"] == "ledgerlink-v1"
                visible_b = httpx.get(
                    f"{gateway.url}/v1/models", headers=bearer(dev_b), timeout=30
                ).json()
                assert "ledgerlink-v1" not in {m["id"] for m in visible_b["data"]}
                refused = _complete(gateway, dev_b, "ledgerlink-v1")
                assert refused.status_code in (403, 404), refused.text
                assert "error" in refused.json()
        finally:
            await control.delete(path, headers=admin)
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(
                    f"{vllm_url}/v1/unload_lora_adapter",
                    json={"lora_name": "ledgerlink-v1"},
                    timeout=30,
                )

        # 5. A job cancelled while it trains ends `cancelled` and registers nothing.
        long_job = await control.post(
            jobs,
            json={
                "name": "cancel-me",
                "repositories": [
                    {"location": str(sdk), "role": "sdk"},
                    {"location": str(consumers), "role": "consumer"},
                ],
                "base_model": "cove-tiny",
                "hyperparameters": {**HYPERPARAMETERS, "max_steps": 100_000},
                "dataset": DATASET,
            },
            headers=admin,
        )
        assert long_job.status_code == 201, long_job.text
        long_id = long_job.json()["id"]

        async def training() -> bool:
            seen = (await control.get(f"{jobs}/{long_id}", headers=admin)).json()
            assert seen["status"] not in ("failed", "succeeded"), seen
            return seen["status"] == "training" and bool(seen["progress"]["step"])

        await _until("second job training", training, 300)
        cancel_at = time.monotonic()
        cancelled = await control.post(f"{jobs}/{long_id}/cancel", headers=admin)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["cancel_requested"]

        async def ended() -> dict[str, Any] | None:
            seen = (await control.get(f"{jobs}/{long_id}", headers=admin)).json()
            return seen if seen["status"] in ("cancelled", "failed", "succeeded") else None

        end = await _until("cancelled", ended, 120)
        cancel_seconds = time.monotonic() - cancel_at
        assert end["status"] == "cancelled", end
        assert end["reason"]["code"] == "cancelled"
        assert end["adapter_model_id"] is None
        catalog = await control.get(f"/api/v1/bus/{bu}/models", headers=admin)
        names = {m["name"] for m in catalog.json()}
        assert "ledgerlink-v1" in names
        assert not any(name.endswith("cancel-me") for name in names), names
        print(
            f"JOB-E2E cancel took {cancel_seconds:.1f} s; total {time.monotonic() - started:.0f} s"
        )
