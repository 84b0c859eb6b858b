"""End to end on real processes: the platform API, a Celery worker with beat, a real vLLM
started by the local runtime driver, and the gateway.

create a local deployment through the API -> the worker starts vLLM -> ready -> the gateway
serves it -> load a PEFT LoRA adapter -> canary routing observed per user -> promote ->
rollback -> kill the vLLM process -> unavailable, the gateway serves from the fallback ->
the sweep restarts it and restores the adapter -> delete -> the process and its state are gone.

It starts vLLM twice (the deployment, then its restart) besides the session's `vllm_url`
instance, which serves as the fallback.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cove.gateway.app import create_app
from cove.gateway.settings import GatewaySettings
from cove.platform.core.db import Database
from cove.platform.core.settings import CoveSettings
from cove.platform.local.procs import pid_alive
from cove.tenants.keys import repository as key_repository
from tests.conftest import ServerThread
from tests.factories import add_key, bearer
from tests.platform.deployments_support import (
    celery_worker,
    control,  # noqa: F401 - a fixture
    lora_adapter,
    register_base,
)

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1200)]

VLLM_START_SECONDS = 300.0


def _bucket(user: str) -> int:
    """The gateway's sticky canary bucket of a user (cove.gateway.caches.Release.pick)."""
    return int.from_bytes(hashlib.sha256(user.encode()).digest()[:4], "big") % 100


@pytest.fixture
def worker(settings: CoveSettings, tmp_path: Path) -> Iterator[Path]:
    """A real Celery worker with embedded beat; yields the local runtime's state directory."""
    with celery_worker(settings, tmp_path) as state:
        yield state


async def _until(
    what: str,
    check: Callable[[], Awaitable[Any]],
    timeout: float,
    interval: float = 0.5,
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
        json={"model": model, "prompt": "def add(a, b):", "max_tokens": 4, "temperature": 0},
        headers=bearer(key),
        timeout=60,
    )


def _served_requests(endpoint: str) -> float:
    text = httpx.get(f"{endpoint}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:request_success_total")
    )


async def _canary_users(db: Database, settings: CoveSettings, tenant: Any) -> dict[str, str]:
    """API keys of two developers: one inside a 50% canary bucket, one outside."""
    pepper = settings.secret_key.get_secret_value().encode()
    keys: dict[str, str] = {}
    async with db.platform() as conn:
        for n in range(200):
            user = await key_repository.ensure_user(
                conn, subject=f"t:canary-{n}", username=f"canary-{n}"
            )
            side = "canary" if _bucket(str(user)) < 50 else "stable"
            if side in keys:
                continue
            await key_repository.set_membership(conn, tenant, user, "developer")
            keys[side], _ = await add_key(
                conn, pepper, tenant_id=tenant, user_id=user, scopes=["completions"]
            )
            if len(keys) == 2:
                return keys
    raise AssertionError("no users on both sides of the canary split")


async def test_local_deployment_end_to_end(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    settings: CoveSettings,
    db: Database,
    tiny_model: Path,
    vllm_url: str,
    worker: Path,
) -> None:
    started = time.monotonic()
    timings: dict[str, float] = {}
    bu = world["a"]["bu"].id
    admin = bearer(world["a"]["admin_key"])
    adapter_dir = lora_adapter(tiny_model, 8)
    await register_base(control, world, location=str(tiny_model))
    created = await control.post(
        f"/api/v1/bus/{bu}/adapters",
        json={"name": "a-sdk-v1", "base_model": "cove-tiny", "location": str(adapter_dir)},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    spare = await control.post(
        f"/api/v1/bus/{bu}/deployments",
        json={"name": "spare", "model": "cove-tiny", "endpoint_url": vllm_url},
        headers=admin,
    )
    assert spare.status_code == 201, spare.text
    coder = await control.post(
        f"/api/v1/bus/{bu}/deployments",
        json={
            "name": "coder",
            "model": "cove-tiny",
            "runtime": "local",
            "mode": "shared",
            "vllm": {"max_lora_rank": 8, "max_model_len": 1024},
            "fallback_deployment": "spare",
        },
        headers=admin,
    )
    assert coder.status_code == 201, coder.text
    path = f"/api/v1/bus/{bu}/deployments/{coder.json()['id']}"

    async def deployment() -> dict[str, Any]:
        resp = await control.get(path, headers=admin)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    async def is_ready() -> dict[str, Any] | None:
        found = await deployment()
        return found if found["status"] == "ready" else None

    # 1. The worker starts a real vLLM; the deployment turns ready.
    ready = await _until("coder ready", is_ready, VLLM_START_SECONDS)
    timings["first start"] = time.monotonic() - started
    endpoint = ready["endpoint_url"]
    assert endpoint.startswith("http://127.0.0.1:")
    assert not endpoint.endswith(":0")
    assert ready["observed_generation"] == ready["generation"] == 1
    assert ready["replicas_ready"] == 1
    state = json.loads(next(worker.glob("*/instance.json")).read_text())
    assert pid_alive(state["pid"])

    gateway_settings = GatewaySettings(**{**settings.model_dump(), "cache_refresh_seconds": 60.0})
    with ServerThread(create_app(gateway_settings)) as gateway:
        dev = world["a"]["dev_key"]
        # 2. The gateway serves it (the coder instance, first by name, not the fallback).
        before = _served_requests(endpoint)
        served = _complete(gateway, dev, "cove-tiny")
        assert served.status_code == 200, served.text
        assert served.headers["x-cove-model-version"] == "cove-tiny"
        assert _served_requests(endpoint) == before + 1

        # 3. A LoRA adapter is hot-loaded and served under its own name.
        attached = await control.post(f"{path}/adapters", json={"model": "a-sdk-v1"}, headers=admin)
        assert attached.status_code == 202, attached.text

        async def adapter_loaded() -> bool:
            adapters = (await deployment())["adapters"]
            return bool(adapters) and adapters[0]["state"] == "loaded"

        await _until("adapter loaded", adapter_loaded, 60)

        async def gateway_serves_adapter() -> bool:
            return _complete(gateway, dev, "a-sdk-v1").status_code == 200

        await _until("gateway serves the adapter", gateway_serves_adapter, 10)
        as_adapter = _complete(gateway, dev, "a-sdk-v1")
        assert as_adapter.headers["x-cove-model-version"] == "a-sdk-v1"
        assert as_adapter.json()["model"] == "a-sdk-v1"

        # 4. A canary for half the users, sticky per user.
        users = await _canary_users(db, settings, bu)
        release = f"/api/v1/bus/{bu}/release"
        put = await control.put(
            release,
            json={"stable": "cove-tiny", "canary": "a-sdk-v1", "canary_percent": 50},
            headers=admin,
        )
        assert put.status_code == 200, put.text

        def versions(key: str, n: int = 3) -> set[str]:
            answers = [_complete(gateway, key, "cove-tiny") for _ in range(n)]
            assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
            return {a.headers["x-cove-model-version"] for a in answers}

        async def canary_active() -> bool:
            return versions(users["canary"], 1) == {"a-sdk-v1"}

        await _until("canary routing", canary_active, 10)
        assert versions(users["canary"]) == {"a-sdk-v1"}
        assert versions(users["stable"]) == {"cove-tiny"}

        # 5. Promote: everyone gets the adapter. 6. Roll back: everyone gets the base again.
        promoted = await control.post(f"{release}/promote", headers=admin)
        assert promoted.status_code == 200, promoted.text

        async def everyone_on(model: str) -> bool:
            return versions(users["stable"], 1) == {model}

        await _until("promotion routed", lambda: everyone_on("a-sdk-v1"), 10)
        assert versions(users["canary"]) == versions(users["stable"]) == {"a-sdk-v1"}
        rollback_at = time.monotonic()
        rolled = await control.post(f"{release}/rollback", headers=admin)
        assert rolled.status_code == 200, rolled.text
        await _until("rollback routed", lambda: everyone_on("cove-tiny"), 10, interval=0.05)
        # From the API call to the first request the gateway routes to the previous version.
        timings["rollback routed"] = time.monotonic() - rollback_at
        assert versions(users["canary"]) == versions(users["stable"]) == {"cove-tiny"}
        history = [h["action"] for h in rolled.json()["history"]]
        assert history == ["rollback", "promote", "set"]

        # Load from /metrics has been recorded by the health check meanwhile.
        async def has_load() -> bool:
            return bool((await deployment())["capacity"].get("generation_tokens_total"))

        await _until("capacity recorded", has_load, 20)
        capacity = await control.get(f"/api/v1/bus/{bu}/capacity", headers=admin)
        assert {d["name"] for d in capacity.json()["deployments"]} == {"coder", "spare"}

        # 7. The instance crashes: unavailable; the gateway serves from the fallback.
        crash_at = time.monotonic()
        os.kill(state["pid"], signal.SIGKILL)

        async def is_down() -> dict[str, Any] | None:
            found = await deployment()
            return found if found["status"] == "unavailable" else None

        down = await _until("crash noticed", is_down, 30)
        timings["crash noticed"] = time.monotonic() - crash_at
        # The health check or the sweep, whichever looks first, says why (a refused connection,
        # a dropped one, or the exit of the process): the wording depends on the moment.
        assert down["status_detail"], down
        fallback_before = _served_requests(vllm_url)

        async def served_by_fallback() -> bool:
            answer = _complete(gateway, dev, "cove-tiny")
            return answer.status_code == 200 and _served_requests(vllm_url) > fallback_before

        await _until("fallback serves", served_by_fallback, 20)

        # 8. The sweep restarted it; the adapter is restored; the adapter serves again.
        async def restored() -> bool:
            found = await deployment()
            adapters = found["adapters"]
            return found["status"] == "ready" and adapters[0]["state"] == "loaded"

        await _until("restarted with its adapter", restored, VLLM_START_SECONDS)
        timings["restart"] = time.monotonic() - crash_at
        restarted = json.loads(next(worker.glob("*/instance.json")).read_text())
        assert restarted["restarts"] == 1
        assert restarted["pid"] != state["pid"]
        await _until("adapter served after restart", gateway_serves_adapter, 10)

        # 9. Delete: routing stops, the process and its state go, the row goes.
        deleted = await control.delete(path, headers=admin)
        assert deleted.status_code == 202, deleted.text

        async def gone() -> bool:
            return (await control.get(path, headers=admin)).status_code == 404

        await _until("deleted", gone, 60)
        assert not pid_alive(restarted["pid"])
        assert list(worker.glob("*/instance.json")) == []
        after = _complete(gateway, dev, "a-sdk-v1")
        assert after.status_code == 404, after.text
        still = _complete(gateway, dev, "cove-tiny")
        assert still.status_code == 200  # the spare serves the base model
    async with db.platform() as conn:
        actions = {
            row[0]
            for row in await (
                await conn.execute("SELECT action FROM audit_log WHERE tenant_id = %s", (bu,))
            ).fetchall()
        }
    assert {
        "deployment.create",
        "deployment.adapter_load",
        "release.set",
        "release.promote",
        "release.rollback",
        "deployment.delete",
    } <= actions
    print(f"timings: {timings}, total {time.monotonic() - started:.0f} s")
