"""Shared pieces of the model, deployment and release tests.

- Real PEFT LoRA adapters of the tiny model (built once with `peft`, cached on disk).
- A stand-in for a vLLM server at the HTTP boundary, for API-level tests that must see exactly
  which requests reached an instance (a real vLLM cannot tell). The end-to-end tests use a
  real vLLM through the local runtime.
- A platform API whose Celery broker is a Redis database of its own, so a test can read the
  reconcile tasks the API enqueued.
- A real Celery worker with embedded beat on that broker, for the end-to-end tests.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from cove.platform.core.db import SyncDatabase
from cove.platform.core.settings import CoveSettings
from cove.platform.deployments import reconciler
from cove.platform.deployments.runtime.external import ExternalDriver
from cove.platform.deployments.runtime.factory import Drivers
from cove.platform.deployments.runtime.vllm_api import VllmApi
from cove.platform.local.procs import spawn, stop_process_group
from cove.platform.local.stack import VLLM_VERSION, default_cache_dir
from tests.factories import bearer

BROKER_DB = 7

ADAPTER_SCRIPT = """
import sys

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

base, out, rank = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(rank)
model = AutoModelForCausalLM.from_pretrained(base)
# Non-zero weights, so the adapter's completions differ from the base model's.
config = LoraConfig(r=rank, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
get_peft_model(model, config).save_pretrained(out)
"""


def lora_adapter(base_model: Path, rank: int) -> Path:
    """A PEFT LoRA adapter of `base_model` with rank `rank` (built once, then cached)."""
    target = default_cache_dir() / "test-adapters" / f"{base_model.name}-lora-r{rank}"
    if (target / "adapter_config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + ".tmp")
    subprocess.run(
        [sys.executable, "-c", ADAPTER_SCRIPT, str(base_model), str(staging), str(rank)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    staging.replace(target)
    return target


@dataclass
class FakeVllm:
    """Answers like vLLM's OpenAI server for the calls Cove's control plane makes."""

    served: set[str] = field(default_factory=lambda: {"cove-tiny"})
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    generated: int = 0
    healthy: bool = True

    def lora_calls(self) -> list[tuple[str, dict[str, Any]]]:
        return [(path, body) for _, path, body in self.requests if "lora" in path]

    def app(self) -> Starlette:
        async def health(_: Request) -> Response:
            return Response(status_code=200 if self.healthy else 503)

        async def models(_: Request) -> JSONResponse:
            return JSONResponse({"data": [{"id": name} for name in sorted(self.served)]})

        async def load(request: Request) -> Response:
            body = await request.json()
            self.requests.append(("POST", request.url.path, body))
            name = body["lora_name"]
            if name in self.served:
                return JSONResponse(
                    {"error": {"message": f"The lora adapter '{name}' has already been loaded."}},
                    status_code=400,
                )
            if body["lora_path"].endswith("/refused"):
                return JSONResponse({"error": {"message": "bad adapter"}}, status_code=400)
            self.served.add(name)
            return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

        async def unload(request: Request) -> Response:
            body = await request.json()
            self.requests.append(("POST", request.url.path, body))
            if body["lora_name"] not in self.served:
                return JSONResponse({"error": {"message": "cannot be found"}}, status_code=404)
            self.served.discard(body["lora_name"])
            return PlainTextResponse("Success")

        async def metrics(_: Request) -> PlainTextResponse:
            self.generated += 40
            return PlainTextResponse(
                "# HELP vllm:num_requests_running Number of requests running.\n"
                'vllm:num_requests_running{engine="0",model_name="cove-tiny"} 2.0\n'
                'vllm:num_requests_waiting{engine="0",model_name="cove-tiny"} 1.0\n'
                'vllm:kv_cache_usage_perc{engine="0",model_name="cove-tiny"} 0.25\n'
                'vllm:generation_tokens_total{engine="0",model_name="cove-tiny"} '
                f"{self.generated}.0\n"
                'vllm:prompt_tokens_total{engine="0",model_name="cove-tiny"} 7.0\n'
            )

        return Starlette(
            routes=[
                Route("/health", health),
                Route("/v1/models", models),
                Route("/v1/load_lora_adapter", load, methods=["POST"]),
                Route("/v1/unload_lora_adapter", unload, methods=["POST"]),
                Route("/metrics", metrics),
            ]
        )


def broker_url(settings: CoveSettings) -> str:
    return settings.redis_url.rsplit("/", 1)[0] + f"/{BROKER_DB}"


def queued_tasks(url: str) -> list[tuple[str, list[Any]]]:
    """(task name, args) of every message waiting in Celery's default queue."""
    found = []
    for raw in redis.Redis.from_url(url).lrange("celery", 0, -1):
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], list(body[0])))
    return found


@pytest.fixture
async def control(settings: CoveSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The platform API with a Celery broker database of its own (emptied first)."""
    from cove.platform.api.app import PlatformSettings, create_app

    url = broker_url(settings)
    redis.Redis.from_url(url).flushdb()
    app = create_app(PlatformSettings(**{**settings.model_dump(), "redis_url": url}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://platform") as client:
            yield client


@pytest.fixture
def sync_db(settings: CoveSettings) -> Any:
    database = SyncDatabase(settings)
    database.open()
    try:
        yield database
    finally:
        database.close()


def external_drivers() -> tuple[Drivers, VllmApi, httpx.Client]:
    client = httpx.Client(timeout=10.0)
    api = VllmApi(client)
    return Drivers({"external": lambda: ExternalDriver(api)}), api, client


def reconcile_external(sync_db: SyncDatabase, deployment_id: Any) -> reconciler.Outcome:
    drivers, api, client = external_drivers()
    with client:
        return reconciler.reconcile(sync_db, drivers, api, deployment_id)


async def register_base(
    api: httpx.AsyncClient,
    world: dict[str, Any],
    *,
    name: str = "cove-tiny",
    location: str,
    grant: tuple[str, ...] = ("a",),
    **extra: Any,
) -> dict[str, Any]:
    admin = bearer(world["admin_key"])
    resp = await api.post(
        "/api/v1/models", json={"name": name, "location": location, **extra}, headers=admin
    )
    assert resp.status_code == 201, resp.text
    model = resp.json()
    for slug in grant:
        granted = await api.put(
            f"/api/v1/models/{model['id']}/grants/{world[slug]['bu'].id}", headers=admin
        )
        assert granted.status_code == 200, granted.text
    return dict(model)


@contextlib.contextmanager
def celery_worker(
    settings: CoveSettings, tmp_path: Path, extra_env: Mapping[str, str] | None = None
) -> Iterator[Path]:
    """A real Celery worker with embedded beat on the `control` fixture's broker, started as
    its own process group; yields the local runtime's state directory. On exit it stops the
    worker, any vLLM instance the local runtime left behind, and prints the worker's log tail."""
    state = tmp_path / "runtime"
    env = {
        **os.environ,
        "COVE_DATABASE_URL": settings.database_url,
        "COVE_REDIS_URL": broker_url(settings),
        "COVE_SECRET_KEY": settings.secret_key.get_secret_value(),
        "COVE_HEALTH_CHECK_SECONDS": "2",
        "COVE_RECONCILE_SECONDS": "2",
        "COVE_REQUEUE_SECONDS": "1",
        "COVE_RUNTIME_STATE_DIR": str(state),
        "COVE_VLLM_PYTHON": os.environ.get(
            "COVE_VLLM_PYTHON",
            str(default_cache_dir() / f"venv-vllm-{VLLM_VERSION}" / "bin" / "python"),
        ),
        **(extra_env or {}),
    }
    log = tmp_path / "worker.log"
    proc = spawn(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cove.platform.worker",
            "worker",
            "--beat",
            "--loglevel",
            "INFO",
            "--concurrency",
            "1",
            "--hostname",
            f"e2e-{os.getpid()}@%h",
            "--schedule",
            str(tmp_path / "beat-schedule"),
        ],
        env=env,
        log_file=log,
    )
    try:
        yield state
    finally:
        stop_process_group(proc.pid)
        proc.wait(timeout=15)
        # Whatever the test left running (it normally deletes its deployment first).
        for record in state.glob("*/instance.json"):
            stop_process_group(int(json.loads(record.read_text())["pid"]), grace=10)
        print(log.read_text()[-4000:])
