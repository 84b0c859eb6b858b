"""The local runtime driver without vLLM: the command it starts, and what it does when the
process keeps dying (a real process that exits, standing in for a vLLM that cannot load its
model). A real vLLM is started by test_deployments_local_e2e.py."""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cove.platform.core.db import SyncDatabase
from cove.platform.deployments import reconciler
from cove.platform.deployments.runtime.base import Target
from cove.platform.deployments.runtime.factory import Drivers
from cove.platform.deployments.runtime.local import LocalDriver, LocalState
from cove.platform.deployments.runtime.vllm_api import VllmApi
from cove.platform.deployments.schemas import InstanceSpec
from cove.platform.local.procs import pid_alive
from tests.factories import bearer
from tests.platform.deployments_support import (
    control,  # noqa: F401 - a fixture
    register_base,
    sync_db,  # noqa: F401 - a fixture
)

CRASHING_VLLM = """#!/bin/sh
echo "starting the engine"
echo "RuntimeError: the model cannot be loaded: not enough memory" >&2
exit 3
"""


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[tuple[LocalDriver, VllmApi]]:
    python = tmp_path / "python"
    python.write_text(CRASHING_VLLM)
    python.chmod(0o755)
    with httpx.Client(timeout=2) as client:
        api = VllmApi(client)
        yield LocalDriver(tmp_path / "state", python, api, start_timeout=60), api


def _target(model_dir: Path, **spec: Any) -> Target:
    return Target(
        deployment_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        bu_slug="payments",
        gpu_quota=0,
        name="coder",
        mode="shared",
        model="cove-tiny",
        model_location=str(model_dir),
        context_length=1024,
        served_model_name="cove-tiny",
        endpoint_url="http://127.0.0.1:0",
        generation=1,
        spec=InstanceSpec.model_validate(spec),
        max_lora_rank=16,
    )


def test_the_command_follows_the_spec_and_keeps_cove_secrets_out(
    driver: tuple[LocalDriver, VllmApi], tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COVE_SECRET_KEY", "do-not-leak")
    local, _ = driver
    shared = _target(
        tiny_model,
        vllm={
            "max_model_len": 512,
            "max_loras": 2,
            "max_lora_rank": 16,
            "enable_prefix_caching": False,
            "extra_args": {"max-num-seqs": 8, "enforce-eager": True},
        },
    )
    argv, env = local.command(shared, 41234)
    joined = " ".join(argv)
    assert "-m vllm.entrypoints.openai.api_server" in joined
    assert f"--model {tiny_model}" in joined
    assert "--port 41234" in joined
    assert "--max-model-len 512" in joined
    assert "--enable-lora --max-lora-rank 16 --max-loras 2" in joined
    assert "--no-enable-prefix-caching" in argv
    assert "--max-num-seqs=8" in argv
    assert "--enforce-eager" in argv
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert not any(key.startswith("COVE_") for key in env)

    dedicated = dataclasses.replace(_target(tiny_model), mode="dedicated")
    argv, env = local.command(dedicated, 41234)
    assert "--enable-lora" not in argv
    assert "--max-lora-rank" not in argv
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in env


def _wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            reaped = pid
        if reaped == pid or not pid_alive(pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} did not exit")


async def test_a_process_that_keeps_dying_is_restarted_with_growing_pauses(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    tiny_model: Path,
    driver: tuple[LocalDriver, VllmApi],
    sync_db: SyncDatabase,
) -> None:
    local, api = driver
    await register_base(control, world, location=str(tiny_model))
    bu = world["a"]["bu"].id
    headers = bearer(world["a"]["admin_key"])
    created = await control.post(
        f"/api/v1/bus/{bu}/deployments",
        json={"name": "coder", "model": "cove-tiny", "runtime": "local", "mode": "shared"},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    deployment = created.json()
    assert deployment["endpoint_url"] == "http://127.0.0.1:0"
    deployment_id = uuid.UUID(deployment["id"])
    drivers = Drivers({"local": lambda: local})

    def reconcile() -> reconciler.Outcome:
        return reconciler.reconcile(sync_db, drivers, api, deployment_id)

    def state() -> LocalState:
        found = local._read(local._state_dir / str(deployment_id))
        assert found is not None
        return found

    async def current() -> dict[str, Any]:
        resp = await control.get(f"/api/v1/bus/{bu}/deployments/{deployment_id}", headers=headers)
        return dict(resp.json())

    first = reconcile()
    assert (first.status, first.requeue) == ("pending", True)
    seen = await current()
    assert seen["endpoint_url"] == f"http://127.0.0.1:{state().port}"
    assert "vLLM is starting" in seen["status_detail"]

    _wait_dead(state().pid)
    second = reconcile()
    assert second.status == "unavailable"
    assert "exited; restarted (restart 1)" in (second.detail or "")
    assert "the model cannot be loaded" in (second.detail or "")
    assert state().restarts == 1

    _wait_dead(state().pid)
    third = reconcile()
    assert third.status == "unavailable"
    assert "next restart in" in (third.detail or "")
    assert state().restarts == 1  # paused, not restarted
    seen = await current()
    assert seen["status"] == "unavailable"
    assert "the model cannot be loaded" in seen["status_detail"]

    deleted = await control.delete(f"/api/v1/bus/{bu}/deployments/{deployment_id}", headers=headers)
    assert deleted.status_code == 202
    assert reconcile().action == "deleted"
    assert not (local._state_dir / str(deployment_id)).exists()


async def test_a_missing_vllm_environment_is_reported(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    tiny_model: Path,
    tmp_path: Path,
    sync_db: SyncDatabase,
) -> None:
    await register_base(control, world, location=str(tiny_model))
    bu = world["a"]["bu"].id
    headers = bearer(world["a"]["admin_key"])
    created = await control.post(
        f"/api/v1/bus/{bu}/deployments",
        json={"name": "coder", "model": "cove-tiny", "runtime": "local"},
        headers=headers,
    )
    with httpx.Client() as client:
        api = VllmApi(client)
        local = LocalDriver(tmp_path / "state", tmp_path / "no-python", api)
        outcome = reconciler.reconcile(
            sync_db, Drivers({"local": lambda: local}), api, uuid.UUID(created.json()["id"])
        )
    assert outcome.status == "unavailable"
    assert "the vLLM environment is missing" in (outcome.detail or "")
    assert "COVE_VLLM_PYTHON" in (outcome.detail or "")
