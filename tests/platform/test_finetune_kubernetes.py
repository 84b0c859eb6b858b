"""Fine-tuning on Kubernetes: the Job the control plane renders (valid against the 1.30
schema, one or many GPUs, hardened), submitted by the worker with the real `kubernetes` client
to the recording API server of test_k8s_client.py (no cluster runs here), and what the sweep
makes of a failed, vanished or never-started Job. GPU nodes and the trainer image itself are
not exercised: the pod's command is the same runner the local runtime tests run."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from cove.platform.core.db import SyncDatabase
from cove.platform.finetuning import k8s, runner, tasks
from cove.platform.finetuning.settings import FinetuneSettings
from tests.factories import bearer
from tests.platform.deployments_support import (
    register_base,
    sync_db,  # noqa: F401 - a fixture
)
from tests.platform.test_finetune_jobs_api import (
    FIM,
    gpu_control,  # noqa: F401 - a fixture
)
from tests.platform.test_k8s_client import (
    FakeApiServer,
    api_server,  # noqa: F401 - a fixture
)

pytestmark = pytest.mark.usefixtures("world")

K8S_VERSION = "1.30"
SETTINGS = FinetuneSettings(
    finetune_runtime="kubernetes",
    finetune_node_selector={"cove.dev/gpu": "a100"},
    trainer_image_pull_secret="registry",
)
JOB_ID = "0b9c7a52-3e1f-4f59-9a53-0d6f1d2c9e11"


@pytest.mark.parametrize("gpus", [1, 4])
def test_the_training_job_is_valid_and_hardened(gpus: int) -> None:
    job = k8s.render_job(SETTINGS, bu="payments", job_id=JOB_ID, job="sdk-v1", attempt=2, gpus=gpus)
    assert kubernetes_validate.validate(job, K8S_VERSION, strict=True) == K8S_VERSION
    namespace = k8s.render_namespace("payments")
    assert kubernetes_validate.validate(namespace, K8S_VERSION, strict=True) == K8S_VERSION
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    assert job["metadata"]["name"] == "cove-finetune-0b9c7a523e1f-2"
    assert job["metadata"]["namespace"] == "cove-bu-payments"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["nodeSelector"] == {"cove.dev/gpu": "a100"}
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    (container,) = pod["containers"]
    assert container["command"][-3:] == ["cove.platform.finetuning.runner", JOB_ID, "2"]
    runner = ["-m", "cove.platform.finetuning.runner", JOB_ID, "2"]
    if gpus == 1:
        assert container["command"] == ["python", *runner]
    else:
        # One training process per GPU, started by torch's launcher on the pod's node.
        assert container["command"] == ["torchrun", "--standalone", "--nproc_per_node=4", *runner]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(gpus)
    assert container["resources"]["requests"]["nvidia.com/gpu"] == str(gpus)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["envFrom"] == [{"secretRef": {"name": "cove-finetune"}}]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    assert "/var/lib/cove/finetune" in mounts
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"cove-finetune", "cove-models"}


def test_an_adapter_trained_in_the_cluster_is_registered_on_the_training_volume(
    tmp_path: Path,
) -> None:
    settings = FinetuneSettings(finetune_runtime="kubernetes", finetune_dir=tmp_path)
    written = tmp_path / "bu" / "job" / "adapter"
    assert runner.adapter_location(settings, str(written)) == "pvc://cove-finetune/bu/job/adapter"
    local = FinetuneSettings(finetune_dir=tmp_path)
    assert runner.adapter_location(local, str(written)) == str(written)


@pytest.mark.parametrize(
    ("stored", "outcome"),
    [
        (None, "missing"),
        ({"status": {"active": 1}}, "running"),
        ({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}, "succeeded"),
        (
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Failed",
                            "status": "True",
                            "reason": "DeadlineExceeded",
                            "message": "Job was active longer than specified deadline",
                        }
                    ]
                }
            },
            "failed",
        ),
        ({"status": {"failed": 1}}, "failed"),
    ],
)
def test_a_jobs_outcome_is_read_from_its_status(
    stored: dict[str, Any] | None, outcome: str
) -> None:
    assert k8s.job_outcome(stored)[0] == outcome


@pytest.fixture
def cluster(api_server: FakeApiServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiServer]:
    """The worker's Kubernetes connection points at the recording API server."""
    monkeypatch.setenv("COVE_KUBE_API_URL", api_server.url)
    monkeypatch.setenv("COVE_KUBE_TOKEN", "test-token")
    tasks._applier.cache_clear()
    yield api_server
    tasks._applier.cache_clear()


async def _job(api: httpx.AsyncClient, world: dict[str, Any], gpus: int) -> dict[str, Any]:
    await register_base(
        api,
        world,
        name="coder-7b",
        location="base/coder-7b",
        fim_tokens=FIM,
        context_length=8192,
        grant=("a",),
    )
    quota = await api.patch(
        f"/api/v1/bus/{world['a']['bu'].id}",
        json={"gpu_quota": 8},
        headers=bearer(world["admin_key"]),
    )
    assert quota.status_code == 200
    resp = await api.post(
        f"/api/v1/bus/{world['a']['bu'].id}/finetune-jobs",
        json={
            "name": "sdk-v1",
            "repositories": [
                {"location": "https://git.acme.internal/sdk.git", "role": "sdk"},
                {"location": "https://git.acme.internal/apps.git", "role": "consumer"},
            ],
            "base_model": "coder-7b",
            "gpus": gpus,
        },
        headers=bearer(world["a"]["admin_key"]),
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def _seen(api: httpx.AsyncClient, world: dict[str, Any], job_id: str) -> dict[str, Any]:
    resp = await api.get(
        f"/api/v1/bus/{world['a']['bu'].id}/finetune-jobs/{job_id}",
        headers=bearer(world["a"]["admin_key"]),
    )
    return dict(resp.json())


def _no_start(*_: Any) -> None:
    pytest.fail("nothing should be restarted")


async def test_the_worker_submits_the_job_and_the_sweep_reads_its_failure(
    gpu_control: httpx.AsyncClient,
    world: dict[str, Any],
    sync_db: SyncDatabase,
    cluster: FakeApiServer,
) -> None:
    job = await _job(gpu_control, world, gpus=2)
    started = await asyncio.to_thread(tasks.launch, sync_db, SETTINGS, UUID(job["id"]), 1)
    assert started == "started"
    name = k8s.job_name(job["id"], 1)
    path = f"/apis/batch/v1/namespaces/cove-bu-bu-a/jobs/{name}"
    assert set(cluster.objects) == {"/api/v1/namespaces/cove-bu-bu-a", path}
    stored = cluster.objects[path]
    limits = stored["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "2"
    # Redelivered start task: the claim is taken, nothing is applied twice.
    applies = len(cluster.sent("PATCH"))
    assert await asyncio.to_thread(tasks.launch, sync_db, SETTINGS, UUID(job["id"]), 1) == "skipped"
    assert len(cluster.sent("PATCH")) == applies

    # Still running: the sweep leaves it alone.
    assert await asyncio.to_thread(tasks.sweep, sync_db, SETTINGS, _no_start) == {}
    stored["status"] = {
        "failed": 1,
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        ],
    }
    assert await asyncio.to_thread(tasks.sweep, sync_db, SETTINGS, _no_start) == {"ended": 1}
    seen = await _seen(gpu_control, world, job["id"])
    assert seen["status"] == "failed"
    assert seen["reason"]["code"] == "crashed"
    assert "BackoffLimitExceeded" in seen["reason"]["message"]


async def test_a_vanished_job_is_lost_and_a_pending_one_is_deleted_on_cancel(
    gpu_control: httpx.AsyncClient,
    world: dict[str, Any],
    sync_db: SyncDatabase,
    cluster: FakeApiServer,
) -> None:
    job = await _job(gpu_control, world, gpus=1)
    await asyncio.to_thread(tasks.launch, sync_db, SETTINGS, UUID(job["id"]), 1)
    path = f"/apis/batch/v1/namespaces/cove-bu-bu-a/jobs/{k8s.job_name(job['id'], 1)}"
    # The pod never started (no GPU free): a cancel deletes the Job.
    cancel = await gpu_control.post(
        f"/api/v1/bus/{world['a']['bu'].id}/finetune-jobs/{job['id']}/cancel",
        headers=bearer(world["a"]["admin_key"]),
    )
    assert cancel.json()["cancel_requested"] is True
    assert await asyncio.to_thread(tasks.sweep, sync_db, SETTINGS, _no_start) == {"ended": 1}
    assert path not in cluster.objects
    assert (await _seen(gpu_control, world, job["id"]))["status"] == "cancelled"

    # Attempt 2: its Job is removed by someone; the sweep fails the job as lost.
    retry = await gpu_control.post(
        f"/api/v1/bus/{world['a']['bu'].id}/finetune-jobs/{job['id']}/retry",
        headers=bearer(world["a"]["admin_key"]),
    )
    assert retry.status_code == 202
    await asyncio.to_thread(tasks.launch, sync_db, SETTINGS, UUID(job["id"]), 2)
    second = f"/apis/batch/v1/namespaces/cove-bu-bu-a/jobs/{k8s.job_name(job['id'], 2)}"
    assert second in cluster.objects
    del cluster.objects[second]
    assert await asyncio.to_thread(tasks.sweep, sync_db, SETTINGS, _no_start) == {"ended": 1}
    seen = await _seen(gpu_control, world, job["id"])
    assert (seen["status"], seen["reason"]["code"], seen["attempt"]) == ("failed", "lost", 2)


async def test_a_job_whose_pod_never_starts_gives_its_gpus_back(
    gpu_control: httpx.AsyncClient,
    world: dict[str, Any],
    sync_db: SyncDatabase,
    cluster: FakeApiServer,
) -> None:
    """No node has a free GPU: the pod stays pending and the runner never reports. Past the
    heartbeat timeout it is not `lost` (nothing ran); past the start timeout the Job is deleted
    and the job fails as `not_started`, which gives its GPUs back to the BU's quota."""
    job = await _job(gpu_control, world, gpus=2)
    assert await asyncio.to_thread(tasks.launch, sync_db, SETTINGS, UUID(job["id"]), 1) == (
        "started"
    )
    path = f"/apis/batch/v1/namespaces/cove-bu-bu-a/jobs/{k8s.job_name(job['id'], 1)}"
    cluster.objects[path]["status"] = {"active": 1, "ready": 0}
    quota = await gpu_control.patch(
        f"/api/v1/bus/{world['a']['bu'].id}",
        json={"gpu_quota": 2},
        headers=bearer(world["admin_key"]),
    )
    assert quota.status_code == 200

    async def second_job() -> httpx.Response:
        return await gpu_control.post(
            f"/api/v1/bus/{world['a']['bu'].id}/finetune-jobs",
            json={
                "name": "sdk-v2",
                "repositories": [
                    {"location": "https://git.acme.internal/sdk.git", "role": "sdk"},
                    {"location": "https://git.acme.internal/apps.git", "role": "consumer"},
                ],
                "base_model": "coder-7b",
                "gpus": 2,
            },
            headers=bearer(world["a"]["admin_key"]),
        )

    # The pending job holds its GPUs of the quota.
    assert (await second_job()).status_code == 409
    now = datetime.now(UTC)
    late = now + timedelta(seconds=SETTINGS.finetune_heartbeat_timeout_seconds + 60)
    sweep = functools.partial(tasks.sweep, sync_db, SETTINGS, _no_start)
    assert await asyncio.to_thread(sweep, now=late) == {}
    assert (await _seen(gpu_control, world, job["id"]))["status"] == "queued"

    too_late = now + timedelta(seconds=SETTINGS.finetune_start_timeout_seconds + 60)
    assert await asyncio.to_thread(sweep, now=too_late) == {"ended": 1}
    assert path not in cluster.objects
    seen = await _seen(gpu_control, world, job["id"])
    assert (seen["status"], seen["reason"]["code"]) == ("failed", "not_started")
    assert "no node with 2 free nvidia.com/gpu" in seen["reason"]["message"]
    assert (await second_job()).status_code == 201


async def test_an_unreachable_api_server_gives_the_start_back(
    gpu_control: httpx.AsyncClient,
    world: dict[str, Any],
    sync_db: SyncDatabase,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COVE_KUBE_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("COVE_KUBE_TOKEN", "test-token")
    monkeypatch.setenv("COVE_KUBE_TIMEOUT_SECONDS", "2")
    tasks._applier.cache_clear()
    try:
        job = await _job(gpu_control, world, gpus=1)
        result = await asyncio.to_thread(tasks.launch, sync_db, SETTINGS, UUID(job["id"]), 1)
    finally:
        tasks._applier.cache_clear()
    assert result == "skipped"
    seen = await _seen(gpu_control, world, job["id"])
    # Still queued and unclaimed: the sweep sends the start again after the grace period.
    assert seen["status"] == "queued"
    with sync_db.platform() as conn:
        row = conn.execute(
            "SELECT worker_ref FROM finetune_jobs WHERE id = %s", (job["id"],)
        ).fetchone()
    assert row == (None,)
