"""A base instance shared across BUs, end to end on real processes: the platform API, a Celery
worker with beat, one real vLLM started by the local runtime driver, and the gateway.

a platform admin creates the shared instance -> the worker starts vLLM -> BUs a and b each put
their own PEFT LoRA adapter on it -> both are hot-loaded into the one process -> each BU's
developer is served its own adapter through the gateway and gets `model_not_found` for the
other's -> the vLLM process is killed -> the sweep restarts it and loads both BUs' adapters
again -> the BUs take their adapters off -> the instance is deleted.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cove.gateway.app import create_app
from cove.gateway.settings import GatewaySettings
from cove.platform.core.settings import CoveSettings
from cove.platform.local.procs import pid_alive
from tests.conftest import ServerThread
from tests.factories import bearer
from tests.platform.deployments_support import (
    celery_worker,
    control,  # noqa: F401 - a fixture
    lora_adapter,
    register_base,
)
from tests.platform.test_deployments_local_e2e import VLLM_START_SECONDS, _complete, _until

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1200)]


@pytest.fixture
def worker(settings: CoveSettings, tmp_path: Path) -> Iterator[Path]:
    with celery_worker(settings, tmp_path) as state:
        yield state


async def test_one_vllm_serves_two_bus_adapters_each_to_its_own_bu_only(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    settings: CoveSettings,
    tiny_model: Path,
    worker: Path,
) -> None:
    started = time.monotonic()
    timings: dict[str, float] = {}
    platform = bearer(world["admin_key"])
    await register_base(control, world, location=str(tiny_model), grant=("a", "b"))
    # Two different adapters (ranks 8 and 4 are built from different seeds).
    for slug, name, rank in (("a", "a-sdk", 8), ("b", "b-sdk", 4)):
        created = await control.post(
            f"/api/v1/bus/{world[slug]['bu'].id}/adapters",
            json={
                "name": name,
                "base_model": "cove-tiny",
                "location": str(lora_adapter(tiny_model, rank)),
            },
            headers=bearer(world[slug]["admin_key"]),
        )
        assert created.status_code == 201, created.text
    shared = await control.post(
        "/api/v1/shared-instances",
        json={
            "name": "tiny-shared",
            "model": "cove-tiny",
            "runtime": "local",
            "vllm": {"max_lora_rank": 8, "max_model_len": 1024},
        },
        headers=platform,
    )
    assert shared.status_code == 201, shared.text
    path = f"/api/v1/shared-instances/{shared.json()['id']}"

    async def instance() -> dict[str, Any]:
        resp = await control.get(path, headers=platform)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    async def ready_with_both() -> dict[str, Any] | None:
        found = await instance()
        states = {a["model"]: a["state"] for a in found["adapters"]}
        loaded = states == {"a-sdk": "loaded", "b-sdk": "loaded"}
        return found if found["status"] == "ready" and loaded else None

    async def is_ready() -> dict[str, Any] | None:
        found = await instance()
        return found if found["status"] == "ready" else None

    ready = await _until("shared instance ready", is_ready, VLLM_START_SECONDS)
    timings["first start"] = time.monotonic() - started
    assert ready["tenant_id"] is None
    for slug, name in (("a", "a-sdk"), ("b", "b-sdk")):
        attached = await control.post(
            f"/api/v1/bus/{world[slug]['bu'].id}/shared-instances/{ready['id']}/adapters",
            json={"model": name},
            headers=bearer(world[slug]["admin_key"]),
        )
        assert attached.status_code == 202, attached.text
    loaded = await _until("both adapters loaded", ready_with_both, 90)
    endpoint = loaded["endpoint_url"]
    served = httpx.get(f"{endpoint}/v1/models", timeout=10).json()
    assert {m["id"] for m in served["data"]} == {"cove-tiny", "a-sdk", "b-sdk"}
    state = json.loads(next(worker.glob("*/instance.json")).read_text())

    gateway_settings = GatewaySettings(**{**settings.model_dump(), "cache_refresh_seconds": 60.0})
    with ServerThread(create_app(gateway_settings)) as gateway:
        a_dev, b_dev = world["a"]["dev_key"], world["b"]["dev_key"]

        async def both_served() -> bool:
            return (
                _complete(gateway, a_dev, "a-sdk").status_code == 200
                and _complete(gateway, b_dev, "b-sdk").status_code == 200
            )

        await _until("each BU served its adapter", both_served, 10)
        own = _complete(gateway, a_dev, "a-sdk")
        assert own.json()["model"] == "a-sdk"
        assert own.headers["x-cove-model-version"] == "a-sdk"
        assert _complete(gateway, b_dev, "b-sdk").json()["model"] == "b-sdk"
        base = _complete(gateway, b_dev, "cove-tiny")
        assert base.status_code == 200
        assert base.json()["model"] == "cove-tiny"
        for key, other in ((a_dev, "b-sdk"), (b_dev, "a-sdk")):
            refused = _complete(gateway, key, other)
            assert refused.status_code == 404, refused.text
            assert refused.json()["error"]["code"] == "model_not_found"

        # The process dies: the sweep restarts it and loads both BUs' adapters again.
        crash_at = time.monotonic()
        os.kill(state["pid"], signal.SIGKILL)

        async def restarted() -> dict[str, Any] | None:
            record = json.loads(next(worker.glob("*/instance.json")).read_text())
            return await ready_with_both() if record["pid"] != state["pid"] else None

        await _until("restarted with both adapters", restarted, VLLM_START_SECONDS)
        timings["restart with adapters"] = time.monotonic() - crash_at
        after_crash = json.loads(next(worker.glob("*/instance.json")).read_text())
        assert after_crash["restarts"] == 1
        served = httpx.get(f"{endpoint}/v1/models", timeout=10).json()
        assert {m["id"] for m in served["data"]} == {"cove-tiny", "a-sdk", "b-sdk"}
        await _until("each BU served after the restart", both_served, 10)

    # The BUs take their adapters off; then the platform can delete the instance.
    in_use = await control.delete(path, headers=platform)
    assert in_use.status_code == 409, in_use.text
    for slug, name in (("a", "a-sdk"), ("b", "b-sdk")):
        adapter = next(a for a in (await instance())["adapters"] if a["model"] == name)
        removed = await control.delete(
            f"/api/v1/bus/{world[slug]['bu'].id}/shared-instances/{ready['id']}/adapters/"
            f"{adapter['model_id']}",
            headers=bearer(world[slug]["admin_key"]),
        )
        assert removed.status_code == 202, removed.text

    async def no_adapters() -> bool:
        return (await instance())["adapters"] == []

    await _until("adapters unloaded", no_adapters, 60)
    deleted = await control.delete(path, headers=platform)
    assert deleted.status_code == 202, deleted.text

    async def gone() -> bool:
        return (await control.get(path, headers=platform)).status_code == 404

    await _until("deleted", gone, 60)
    assert not pid_alive(after_crash["pid"])
    assert list(worker.glob("*/instance.json")) == []
    print(f"timings: {timings}, total {time.monotonic() - started:.0f} s")
