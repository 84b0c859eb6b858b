"""The fine-tuning jobs API: admission (repositories, base model, hyperparameters, GPU quota
shared with deployments), the start task sent after commit, listing, logs, cancel and retry.
Everything runs on the real platform API, Postgres and the Redis broker; no job is executed
here (test_finetune_runner.py runs the runner, tests/finetune/test_finetune_job_e2e.py the
whole thing through a Celery worker)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from cove.platform.core.db import Database
from cove.platform.core.settings import CoveSettings
from cove.platform.finetuning.settings import FinetuneSettings
from tests.factories import bearer
from tests.platform.deployments_support import (
    broker_url,
    control,  # noqa: F401 - a fixture
    queued_tasks,
    register_base,
)

pytestmark = pytest.mark.usefixtures("world")

FIM = {"prefix": "<fim_prefix>", "suffix": "<fim_suffix>", "middle": "<fim_middle>"}


def _url(world: dict[str, Any], slug: str = "a", rest: str = "") -> str:
    return f"/api/v1/bus/{world[slug]['bu'].id}/finetune-jobs{rest}"


def _job(name: str = "sdk-v1", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "repositories": [
            {"location": "/srv/code/acme-sdk", "role": "sdk"},
            {"location": "https://git.acme.internal/apps/billing.git", "role": "consumer"},
        ],
        "base_model": "cove-tiny",
        **extra,
    }


async def _post(
    api: httpx.AsyncClient, world: dict[str, Any], body: dict[str, Any], slug: str = "a"
) -> httpx.Response:
    return await api.post(_url(world, slug), json=body, headers=bearer(world[slug]["admin_key"]))


@pytest.fixture
async def tiny(control: httpx.AsyncClient, world: dict[str, Any], tiny_model: Path) -> None:
    await register_base(control, world, location=str(tiny_model), grant=("a", "b"))


@pytest.fixture
async def gpu_control(settings: CoveSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The platform API configured for the Kubernetes runtime (jobs take GPUs)."""
    from cove.platform.api.app import PlatformSettings, create_app

    url = broker_url(settings)
    redis.Redis.from_url(url).flushdb()
    app = create_app(PlatformSettings(**{**settings.model_dump(), "redis_url": url}))
    async with app.router.lifespan_context(app):
        app.state.finetune = FinetuneSettings(finetune_runtime="kubernetes")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://platform") as client:
            yield client


async def _set_quota(api: httpx.AsyncClient, world: dict[str, Any], **limits: int) -> None:
    resp = await api.patch(
        f"/api/v1/bus/{world['a']['bu'].id}", json=limits, headers=bearer(world["admin_key"])
    )
    assert resp.status_code == 200, resp.text


async def _count(db: Database, sql: str, *params: Any) -> int:
    async with db.platform() as conn:
        row = await (await conn.execute(sql, params)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.usefixtures("tiny")
async def test_a_job_is_queued_with_its_plan_and_its_start_task(
    control: httpx.AsyncClient, world: dict[str, Any], settings: CoveSettings, db: Database
) -> None:
    resp = await _post(
        control, world, _job(preset="small", hyperparameters={"rank": 8, "max_steps": 40})
    )
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert job["status"] == "queued"
    assert job["attempt"] == 1
    assert job["runtime"] == "local"
    assert job["gpus"] == 0
    assert job["base_model"] == "cove-tiny"
    assert job["adapter_name"] == "bu-a-sdk-v1"
    assert job["adapter_model_id"] is None
    assert job["progress"] == {
        "percent": 0.0,
        "step": None,
        "total_steps": None,
        "loss": None,
        "eta_seconds": None,
    }
    # The preset is resolved and the overrides kept apart, so the job says what it will run.
    hyper = job["spec"]["hyperparameters"]
    assert hyper["rank"] == 8
    assert hyper["max_steps"] == 40
    assert hyper["alpha"] > 0
    assert hyper["learning_rate"] > 0
    assert job["spec"]["overrides"] == {"rank": 8, "max_steps": 40}
    assert queued_tasks(broker_url(settings)) == [("finetune.start", [job["id"], "1"])]

    admin = bearer(world["a"]["admin_key"])
    listed = await control.get(_url(world), headers=admin)
    assert [j["id"] for j in listed.json()] == [job["id"]]
    only_failed = await control.get(_url(world), params={"status": "failed"}, headers=admin)
    assert only_failed.json() == []
    logs = await control.get(_url(world, rest=f"/{job['id']}/logs"), headers=admin)
    assert logs.status_code == 200
    lines = logs.json()["lines"]
    assert len(lines) == 1
    assert lines[0]["message"].startswith("queued by a-admin")
    newer = await control.get(
        _url(world, rest=f"/{job['id']}/logs"),
        params={"after": logs.json()["next_after"]},
        headers=admin,
    )
    assert newer.json()["lines"] == []
    assert (
        await _count(db, "SELECT count(*) FROM audit_log WHERE action = 'finetune_job.create'") == 1
    )


@pytest.mark.usefixtures("tiny")
@pytest.mark.parametrize(
    ("change", "code", "param"),
    [
        (
            {"repositories": [{"location": "/srv/code/acme-sdk", "role": "consumer"}]},
            "sdk_repository_required",
            "repositories",
        ),
        (
            {"repositories": [{"location": "/srv/code/acme-sdk", "role": "sdk"}]},
            "consumer_repository_required",
            "repositories",
        ),
        (
            {
                "repositories": [
                    {"location": "https://bob:hunter2@git.acme.internal/sdk.git", "role": "sdk"},
                    {"location": "/srv/apps", "role": "consumer"},
                ]
            },
            "credentials_in_url",
            "repositories[0].location",
        ),
        (
            {
                "repositories": [
                    {"location": "relative/sdk", "role": "sdk"},
                    {"location": "/srv/apps", "role": "consumer"},
                ]
            },
            "invalid_repository",
            "repositories[0].location",
        ),
        (
            {
                "repositories": [
                    {"location": "/srv/sdk", "role": "sdk"},
                    {"location": "/srv/apps", "role": "consumer", "credentials_secret": "git"},
                ]
            },
            "invalid_repository",
            "repositories[1].location",
        ),
        (
            {
                "repositories": [
                    {"location": "/srv/sdk", "role": "sdk"},
                    {"location": "/srv/sdk", "role": "consumer"},
                ]
            },
            "duplicate_repository",
            "repositories[1].location",
        ),
        ({"base_model": "no-such-model"}, "model_not_found", None),
        ({"gpus": 1}, "gpus_not_available", "gpus"),
        (
            {"hyperparameters": {"context_length": 64, "max_middle_tokens": 100}},
            None,
            "hyperparameters",
        ),
    ],
)
async def test_bad_jobs_are_refused_before_anything_is_written(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    settings: CoveSettings,
    db: Database,
    change: dict[str, Any],
    code: str | None,
    param: str | None,
) -> None:
    resp = await _post(control, world, {**_job(), **change})
    assert 400 <= resp.status_code < 500, resp.text
    error = resp.json()["error"]
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error.get("param") == param, error
    assert error["message"]
    assert queued_tasks(broker_url(settings)) == []
    assert await _count(db, "SELECT count(*) FROM finetune_jobs") == 0


@pytest.mark.usefixtures("tiny")
@pytest.mark.parametrize(
    "body",
    [
        {"name": "Bad Name", "repositories": [{"location": "/x", "role": "sdk"}]},
        {"name": "ok", "repositories": [], "base_model": "cove-tiny"},
        {**_job(), "preset": "huge"},
        {**_job(), "hyperparameters": {"learning_rate": -1}},
        {**_job(), "surprise": True},
        {**_job(), "repositories": [{"location": "/srv/sdk", "role": "owner"}]},
    ],
)
async def test_malformed_jobs_are_422(
    control: httpx.AsyncClient, world: dict[str, Any], body: dict[str, Any]
) -> None:
    resp = await _post(control, world, body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "validation_failed"


async def test_a_base_model_without_fim_tokens_cannot_be_fine_tuned(
    control: httpx.AsyncClient, world: dict[str, Any], db: Database
) -> None:
    await register_base(
        control, world, name="chat-7b", location="base/chat-7b", context_length=4096, grant=("a",)
    )
    resp = await _post(control, world, _job(base_model="chat-7b"))
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "no_fim_tokens"
    assert await _count(db, "SELECT count(*) FROM finetune_jobs") == 0


async def test_a_base_model_not_granted_to_the_bu_is_refused(
    control: httpx.AsyncClient, world: dict[str, Any], tiny_model: Path
) -> None:
    await register_base(control, world, location=str(tiny_model), grant=("b",))
    resp = await _post(control, world, _job())
    assert resp.status_code in (403, 404, 422), resp.text
    assert resp.json()["error"]["code"] in ("model_not_granted", "model_not_found")


@pytest.mark.usefixtures("tiny")
async def test_names_are_unique_per_bu_and_in_the_catalog(
    control: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    assert (await _post(control, world, _job())).status_code == 201
    again = await _post(control, world, _job(adapter_name="another-name"))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "job_exists"
    # BU b may use the same job name: names are per business unit.
    assert (await _post(control, world, _job(), slug="b")).status_code == 201
    # An adapter name already in the catalog is refused before the job is queued.
    taken = await _post(control, world, _job(name="other", adapter_name="cove-tiny"))
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "model_exists"


@pytest.mark.usefixtures("tiny")
async def test_developers_cannot_see_or_start_jobs(
    control: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    dev = bearer(world["a"]["dev_key"])
    assert (await control.post(_url(world), json=_job(), headers=dev)).status_code == 403
    assert (await control.get(_url(world), headers=dev)).status_code == 403
    anonymous = await control.get(_url(world))
    assert anonymous.status_code == 401


@pytest.mark.usefixtures("tiny")
async def test_cancel_a_queued_job_at_once_and_retry_it(
    control: httpx.AsyncClient, world: dict[str, Any], settings: CoveSettings, db: Database
) -> None:
    admin = bearer(world["a"]["admin_key"])
    job = (await _post(control, world, _job())).json()
    early_retry = await control.post(_url(world, rest=f"/{job['id']}/retry"), headers=admin)
    assert early_retry.status_code == 409
    assert early_retry.json()["error"]["code"] == "job_not_retryable"

    cancelled = await control.post(_url(world, rest=f"/{job['id']}/cancel"), headers=admin)
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "cancelled"
    assert body["reason"]["code"] == "cancelled"
    assert body["finished_at"] is not None
    twice = await control.post(_url(world, rest=f"/{job['id']}/cancel"), headers=admin)
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "job_finished"

    retried = await control.post(_url(world, rest=f"/{job['id']}/retry"), headers=admin)
    assert retried.status_code == 202, retried.text
    again = retried.json()
    assert (again["status"], again["attempt"], again["reason"]) == ("queued", 2, None)
    assert again["finished_at"] is None
    assert sorted(queued_tasks(broker_url(settings))) == [
        ("finetune.start", [job["id"], "1"]),
        ("finetune.start", [job["id"], "2"]),
    ]
    logs = (await control.get(_url(world, rest=f"/{job['id']}/logs"), headers=admin)).json()
    messages = [line["message"] for line in logs["lines"]]
    assert messages[1] == "cancel requested by a-admin"
    assert messages[2] == "attempt 2 queued by a-admin"
    assert [line["attempt"] for line in logs["lines"]] == [1, 1, 2]
    actions = await _count(
        db,
        "SELECT count(*) FROM audit_log WHERE action IN"
        " ('finetune_job.cancel', 'finetune_job.retry')",
    )
    assert actions == 2


@pytest.mark.usefixtures("tiny")
async def test_cancel_of_a_started_job_is_a_request_the_runner_honours(
    control: httpx.AsyncClient, world: dict[str, Any], db: Database
) -> None:
    admin = bearer(world["a"]["admin_key"])
    job = (await _post(control, world, _job())).json()
    async with db.platform() as conn:
        await conn.execute(
            "UPDATE finetune_jobs SET status = 'training', worker_ref = 'local:elsewhere:1'"
            " WHERE id = %s",
            (job["id"],),
        )
    resp = await control.post(_url(world, rest=f"/{job['id']}/cancel"), headers=admin)
    assert resp.status_code == 200
    assert (resp.json()["status"], resp.json()["cancel_requested"]) == ("training", True)


async def test_gpu_quota_is_shared_between_jobs_and_deployments(
    gpu_control: httpx.AsyncClient, world: dict[str, Any], tiny_model: Path, db: Database
) -> None:
    api = gpu_control
    await register_base(
        api,
        world,
        name="coder-7b",
        location="base/coder-7b",
        fim_tokens=FIM,
        context_length=8192,
        grant=("a",),
    )
    await _set_quota(api, world, gpu_quota=3, max_model_instances=2)
    none = await _post(api, world, _job(base_model="coder-7b", gpus=0))
    assert none.status_code == 422
    assert none.json()["error"]["code"] == "gpus_required"

    first = await _post(api, world, _job(base_model="coder-7b", gpus=2))
    assert first.status_code == 201, first.text
    assert (first.json()["runtime"], first.json()["gpus"]) == ("kubernetes", 2)
    over = await _post(api, world, _job(name="second", base_model="coder-7b", gpus=2))
    assert over.status_code == 409
    error = over.json()["error"]
    assert error["code"] == "gpu_quota_exceeded"
    assert error["details"] == {"requested": 2, "in_use": 2, "quota": 3}
    assert "2 + 2 = 4 > 3" in error["message"]

    # A deployment sees the job's GPUs as used.
    admin = bearer(world["a"]["admin_key"])
    deployments = f"/api/v1/bus/{world['a']['bu'].id}/deployments"
    big = await api.post(
        deployments,
        json={"name": "coder", "model": "coder-7b", "runtime": "kubernetes", "replicas": 2},
        headers=admin,
    )
    assert big.status_code == 409, big.text
    assert big.json()["error"]["details"] == {"requested": 2, "in_use": 2, "quota": 3}
    fits = await api.post(
        deployments,
        json={"name": "coder", "model": "coder-7b", "runtime": "kubernetes"},
        headers=admin,
    )
    assert fits.status_code == 201, fits.text
    # The BU's capacity report counts both, and says which GPUs the training holds.
    report = (await api.get(deployments.replace("/deployments", "/capacity"), headers=admin)).json()
    assert (report["gpus_in_use"], report["training_gpus"], report["gpus_available"]) == (3, 2, 0)

    # Cancelling the job gives its GPUs back; retrying it is admitted again, and refused
    # while the deployment holds the quota.
    job = first.json()
    await api.post(_url(world, rest=f"/{job['id']}/cancel"), headers=admin)
    second = await _post(api, world, _job(name="second", base_model="coder-7b", gpus=2))
    assert second.status_code == 201, second.text
    retry = await api.post(_url(world, rest=f"/{job['id']}/retry"), headers=admin)
    assert retry.status_code == 409
    assert retry.json()["error"]["details"] == {"requested": 2, "in_use": 3, "quota": 3}
    assert await _count(db, "SELECT count(*) FROM finetune_jobs WHERE status = 'queued'") == 1


@pytest.mark.usefixtures("tiny")
async def test_a_bu_cannot_reach_another_bus_job_by_its_id(
    control: httpx.AsyncClient, world: dict[str, Any], db: Database
) -> None:
    theirs = (await _post(control, world, _job(), slug="b")).json()
    a_admin = bearer(world["a"]["admin_key"])
    # BU B's job id under BU A's own path: not found, and nothing changes.
    for method, rest in (
        ("GET", ""),
        ("GET", "/logs"),
        ("POST", "/cancel"),
        ("POST", "/retry"),
    ):
        resp = await control.request(
            method, _url(world, "a", f"/{theirs['id']}{rest}"), headers=a_admin
        )
        assert resp.status_code == 404, (method, rest, resp.text)
        assert resp.json()["error"]["code"] == "job_not_found"
        under_b = await control.request(
            method, _url(world, "b", f"/{theirs['id']}{rest}"), headers=a_admin
        )
        assert under_b.status_code == 404, (method, rest, under_b.text)
    assert (await control.get(_url(world, "a"), headers=a_admin)).json() == []
    async with db.platform() as conn:
        row = await (
            await conn.execute(
                "SELECT status, cancel_requested FROM finetune_jobs WHERE id = %s", (theirs["id"],)
            )
        ).fetchone()
    assert row == ("queued", False)
