"""The reconciler with the Kubernetes runtime driver: deployments created through the API are
server-side-applied by the real `kubernetes` client to the recording API server of
test_k8s_client.py; the status it reports flows back into Postgres, drift is corrected, adapters
are recorded on the Deployment and hot-loaded into each ready pod, deletion cleans up."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from kubernetes.client import Configuration

from cove.platform.core.db import SyncDatabase
from cove.platform.deployments import reconciler
from cove.platform.deployments.k8s.client import KubernetesApplier
from cove.platform.deployments.k8s.spec import ImageRef
from cove.platform.deployments.runtime.base import RuntimeFailure
from cove.platform.deployments.runtime.factory import Drivers
from cove.platform.deployments.runtime.kubernetes import (
    ClusterSettings,
    KubernetesDriver,
    cluster_settings,
)
from cove.platform.deployments.runtime.vllm_api import VllmApi
from cove.platform.deployments.settings import RuntimeSettings
from tests.conftest import ServerThread
from tests.factories import bearer
from tests.platform.deployments_support import (
    FakeVllm,
    control,  # noqa: F401 - a fixture
    register_base,
    sync_db,  # noqa: F401 - a fixture
)
from tests.platform.test_k8s_client import (
    FakeApiServer,
    api_server,  # noqa: F401 - a fixture
)

NS = "cove-bu-bu-a"
DEPLOYMENT = f"/apis/apps/v1/namespaces/{NS}/deployments/coder"
QUOTA = f"/api/v1/namespaces/{NS}/resourcequotas/cove-gpu-quota"
PODS = f"/api/v1/namespaces/{NS}/pods"
CLUSTER = ClusterSettings(
    image=ImageRef(repository="registry.internal/vllm/vllm-openai", tag="v0.11.0"),
    model_volume_claim="cove-models",
    gateway_namespace="cove",
    gateway_pod_labels={"app.kubernetes.io/name": "cove", "app.kubernetes.io/component": "gateway"},
)


@pytest.fixture
def pod_vllm() -> Iterator[tuple[FakeVllm, ServerThread]]:
    """What answers on each pod's vLLM port."""
    fake = FakeVllm(served={"coder-7b"})
    with ServerThread(fake.app()) as server:
        yield fake, server


@pytest.fixture
def cluster(
    api_server: FakeApiServer,
    pod_vllm: tuple[FakeVllm, ServerThread],
) -> Iterator[Any]:
    configuration = Configuration(
        host=api_server.url,
        api_key={"authorization": "test-token"},
        api_key_prefix={"authorization": "Bearer"},
    )
    http = httpx.Client(timeout=5)
    api = VllmApi(http)
    with KubernetesApplier.from_configuration(configuration, timeout_seconds=5) as applier:
        driver = KubernetesDriver(applier, CLUSTER, api, pod_port=pod_vllm[1].port)

        def reconcile(db: SyncDatabase, deployment_id: str) -> reconciler.Outcome:
            drivers = Drivers({"kubernetes": lambda: driver})
            return reconciler.reconcile(db, drivers, api, uuid.UUID(deployment_id))

        yield reconcile
    http.close()


def _pods(api_server: FakeApiServer, ready: int) -> None:
    api_server.objects[PODS] = {
        "kind": "PodList",
        "items": [
            {
                "metadata": {"name": f"coder-{n}"},
                "status": {
                    "podIP": "127.0.0.1",
                    "conditions": [{"type": "Ready", "status": "True" if n < ready else "False"}],
                },
            }
            for n in range(2)
        ],
    }


@pytest.fixture
async def coder(control: httpx.AsyncClient, world: dict[str, Any]) -> dict[str, Any]:
    await register_base(
        control, world, name="coder-7b", location="base/coder-7b", context_length=8192
    )
    resp = await control.patch(
        f"/api/v1/bus/{world['a']['bu'].id}",
        json={"gpu_quota": 6},
        headers=bearer(world["admin_key"]),
    )
    assert resp.status_code == 200
    created = await control.post(
        f"/api/v1/bus/{world['a']['bu'].id}/deployments",
        json={
            "name": "coder",
            "model": "coder-7b",
            "runtime": "kubernetes",
            "mode": "shared",
            "replicas": 2,
            "gpu_type": "NVIDIA-L40S",
            "vllm": {"max_lora_rank": 16},
        },
        headers=bearer(world["a"]["admin_key"]),
    )
    assert created.status_code == 201, created.text
    return dict(created.json())


async def _get(
    control: httpx.AsyncClient, world: dict[str, Any], deployment: dict[str, Any]
) -> Any:
    resp = await control.get(
        f"/api/v1/bus/{world['a']['bu'].id}/deployments/{deployment['id']}",
        headers=bearer(world["a"]["admin_key"]),
    )
    return resp.json() if resp.status_code == 200 else None


async def test_a_deployment_is_applied_and_its_status_flows_back(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    coder: dict[str, Any],
    api_server: FakeApiServer,
    cluster: Any,
    sync_db: SyncDatabase,
) -> None:
    api_server.ready_replicas = 0
    _pods(api_server, ready=0)
    starting = cluster(sync_db, coder["id"])
    assert starting.status == "pending"
    assert starting.requeue is True
    patches = [r.path for r in api_server.sent("PATCH")]
    assert DEPLOYMENT in patches
    assert len(patches) == 7
    quota = api_server.objects[QUOTA]
    assert quota["spec"]["hard"] == {"requests.nvidia.com/gpu": "6"}
    deployment = api_server.objects[DEPLOYMENT]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.internal/vllm/vllm-openai:v0.11.0"
    assert "--max-lora-rank=16" in container["args"]
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {
        "nvidia.com/gpu.product": "NVIDIA-L40S"
    }
    seen = await _get(control, world, coder)
    assert seen["status"] == "pending"
    assert seen["replicas_ready"] == 0
    assert "0 of 2 ready" in seen["status_detail"]

    api_server.ready_replicas = None
    _pods(api_server, ready=2)
    ready = cluster(sync_db, coder["id"])
    assert ready.status == "ready"
    assert ready.requeue is False
    seen = await _get(control, world, coder)
    assert seen["status"] == "ready"
    assert seen["replicas_ready"] == 2
    assert seen["observed_generation"] == 1
    assert seen["endpoint_url"] == "http://coder.cove-bu-bu-a.svc:8000"
    assert {c["type"] for c in seen["conditions"]} == {"Available", "Progressing"}


async def test_drift_is_corrected_and_spec_changes_are_applied(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    coder: dict[str, Any],
    api_server: FakeApiServer,
    cluster: Any,
    sync_db: SyncDatabase,
) -> None:
    _pods(api_server, ready=2)
    cluster(sync_db, coder["id"])
    api_server.scale(DEPLOYMENT, 7)  # someone ran `kubectl scale`
    cluster(sync_db, coder["id"])
    assert api_server.objects[DEPLOYMENT]["spec"]["replicas"] == 2

    changed = await control.patch(
        f"/api/v1/bus/{world['a']['bu'].id}/deployments/{coder['id']}",
        json={"generation": 1, "replicas": 3},
        headers=bearer(world["a"]["admin_key"]),
    )
    assert changed.status_code == 200, changed.text
    cluster(sync_db, coder["id"])
    assert api_server.objects[DEPLOYMENT]["spec"]["replicas"] == 3
    seen = await _get(control, world, coder)
    assert (seen["generation"], seen["observed_generation"]) == (2, 2)


async def test_adapters_are_annotated_and_hot_loaded_into_every_ready_pod(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    coder: dict[str, Any],
    api_server: FakeApiServer,
    cluster: Any,
    sync_db: SyncDatabase,
    pod_vllm: tuple[FakeVllm, ServerThread],
) -> None:
    fake, _ = pod_vllm
    _pods(api_server, ready=2)
    cluster(sync_db, coder["id"])
    bu = world["a"]["bu"].id
    headers = bearer(world["a"]["admin_key"])
    adapter = await control.post(
        f"/api/v1/bus/{bu}/adapters",
        json={
            "name": "a-coder-v1",
            "base_model": "coder-7b",
            "location": "adapters/bu-a/coder-v1",
            "rank": 16,
        },
        headers=headers,
    )
    assert adapter.status_code == 201, adapter.text
    local_only = await control.post(
        f"/api/v1/bus/{bu}/adapters",
        json={"name": "a-local", "base_model": "coder-7b", "location": "/nonexistent/x", "rank": 8},
        headers=headers,
    )
    assert local_only.status_code == 422  # a missing local directory is refused at once
    attached = await control.post(
        f"/api/v1/bus/{bu}/deployments/{coder['id']}/adapters",
        json={"model": "a-coder-v1"},
        headers=headers,
    )
    assert attached.status_code == 202, attached.text
    cluster(sync_db, coder["id"])
    annotation = api_server.objects[DEPLOYMENT]["metadata"]["annotations"]["cove.dev/adapters"]
    path = "/models/pvc/cove-models/adapters/bu-a/coder-v1"
    assert json.loads(annotation) == [{"name": "a-coder-v1", "path": path}]
    loads = [body for p, body in fake.lora_calls() if p == "/v1/load_lora_adapter"]
    # The first pod loads it; the second (the same stand-in here) reports it loaded already.
    assert loads == [{"lora_name": "a-coder-v1", "lora_path": path}] * 2
    seen = await _get(control, world, coder)
    assert [(a["model"], a["state"]) for a in seen["adapters"]] == [("a-coder-v1", "loaded")]

    # A new pod has lost it: the next reconcile restores it.
    fake.served.discard("a-coder-v1")
    cluster(sync_db, coder["id"])
    assert len([p for p, _ in fake.lora_calls() if p == "/v1/load_lora_adapter"]) == 4
    assert "a-coder-v1" in fake.served


async def test_deletion_removes_the_deployment_objects_but_not_the_bu_namespace(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    coder: dict[str, Any],
    api_server: FakeApiServer,
    cluster: Any,
    sync_db: SyncDatabase,
) -> None:
    _pods(api_server, ready=2)
    cluster(sync_db, coder["id"])
    deleted = await control.delete(
        f"/api/v1/bus/{world['a']['bu'].id}/deployments/{coder['id']}",
        headers=bearer(world["a"]["admin_key"]),
    )
    assert deleted.status_code == 202
    outcome = cluster(sync_db, coder["id"])
    assert outcome.action == "deleted"
    deletes = [r.path for r in api_server.sent("DELETE")]
    assert deletes == [
        f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/coder",
        f"/api/v1/namespaces/{NS}/services/coder",
        DEPLOYMENT,
        f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/coder-allow-gateway",
    ]
    assert f"/api/v1/namespaces/{NS}" in api_server.objects
    assert await _get(control, world, coder) is None


async def test_an_api_server_refusal_is_reported_not_raised(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    coder: dict[str, Any],
    api_server: FakeApiServer,
    cluster: Any,
    sync_db: SyncDatabase,
) -> None:
    api_server.failures[("PATCH", DEPLOYMENT)] = (403, "deployments.apps is forbidden")
    outcome = cluster(sync_db, coder["id"])
    assert outcome.status == "unavailable"
    seen = await _get(control, world, coder)
    assert seen["status"] == "unavailable"
    assert "deployments.apps is forbidden" in seen["status_detail"]


def test_cluster_settings_come_from_the_workers_environment() -> None:
    settings = RuntimeSettings(
        vllm_image_repository="registry.internal/vllm/vllm-openai",
        vllm_image_tag="v0.11.0",
        model_volume_claim="models",
    )
    cluster = cluster_settings(settings)
    assert cluster.image.reference == "registry.internal/vllm/vllm-openai:v0.11.0"
    assert cluster.model_volume_claim == "models"
    with pytest.raises(RuntimeFailure, match="latest"):
        cluster_settings(RuntimeSettings(vllm_image_tag="latest"))


EVENTS = f"/api/v1/namespaces/{NS}/events"


def _event(kind: str, name: str, reason: str, when: str, **more: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{name}.{reason.lower()}", "namespace": NS},
        "involvedObject": {"kind": kind, "name": name, "namespace": NS},
        "reason": reason,
        "message": more.pop("message", f"{reason} on {name}"),
        "type": more.pop("type", "Normal"),
        "lastTimestamp": when,
        **more,
    }


async def test_recent_kubernetes_events_of_the_instance_show_in_its_status(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    coder: dict[str, Any],
    api_server: FakeApiServer,
    cluster: Any,
    sync_db: SyncDatabase,
) -> None:
    api_server.ready_replicas = 0
    _pods(api_server, ready=0)
    unhealthy = [
        _event(
            "Pod",
            "coder-7d9f8c6b5-abcde",
            "Unhealthy",
            f"2026-12-05T10:00:{n:02d}Z",
            type="Warning",
            message=f"Readiness probe failed ({n})",
        )
        for n in range(12)
    ]
    api_server.objects[EVENTS] = {
        "kind": "EventList",
        "apiVersion": "v1",
        "items": [
            _event("Deployment", "coder", "ScalingReplicaSet", "2026-12-05T09:00:00Z"),
            _event("ReplicaSet", "coder-7d9f8c6b5", "SuccessfulCreate", "2026-12-05T09:00:01Z"),
            _event(
                "Pod",
                "coder-7d9f8c6b5-fghij",
                "FailedScheduling",
                None,
                type="Warning",
                message="0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                eventTime="2026-12-05T11:00:00.000000Z",
                series={"count": 7, "lastObservedTime": "2026-12-05T11:30:00.000000Z"},
            ),
            *unhealthy,
            # Another deployment of the BU whose name starts with this one's.
            _event("Pod", "coder-two-6b5f4d7c9-xyz12", "Killing", "2026-12-05T12:00:00Z"),
            _event("Deployment", "coder-two", "ScalingReplicaSet", "2026-12-05T12:00:00Z"),
        ],
    }
    cluster(sync_db, coder["id"])
    assert any(r.path == EVENTS and r.method == "GET" for r in api_server.requests)
    seen = await _get(control, world, coder)
    events = seen["events"]
    assert len(events) == 10
    assert events[0] == {
        "type": "Warning",
        "reason": "FailedScheduling",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        "count": 7,
        "last_time": "2026-12-05T11:30:00.000000Z",
        "object": "Pod/coder-7d9f8c6b5-fghij",
    }
    # Newest first; the other deployment's events are not this one's.
    assert [e["message"] for e in events[1:4]] == [
        "Readiness probe failed (11)",
        "Readiness probe failed (10)",
        "Readiness probe failed (9)",
    ]
    assert not any("coder-two" in e["object"] for e in events)

    # Events explain a status but are not needed for one: a refused read keeps the last ones.
    api_server.failures[("GET", EVENTS)] = (403, "events is forbidden")
    api_server.ready_replicas = None
    _pods(api_server, ready=2)
    outcome = cluster(sync_db, coder["id"])
    assert outcome.status == "ready"
    seen = await _get(control, world, coder)
    assert seen["events"] == events


async def test_a_shared_instance_runs_in_the_platforms_namespace_outside_bu_quotas(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    api_server: FakeApiServer,
    cluster: Any,
    sync_db: SyncDatabase,
    pod_vllm: tuple[FakeVllm, ServerThread],
) -> None:
    fake, _ = pod_vllm
    await register_base(
        control,
        world,
        name="coder-7b",
        location="base/coder-7b",
        context_length=8192,
        grant=("a", "b"),
    )
    created = await control.post(
        "/api/v1/shared-instances",
        json={"name": "coder-shared", "model": "coder-7b", "runtime": "kubernetes", "replicas": 2},
        headers=bearer(world["admin_key"]),
    )
    assert created.status_code == 201, created.text
    instance = created.json()
    assert instance["gpus"] == 2
    assert instance["endpoint_url"] == "http://coder-shared.cove-shared.svc:8000"
    shared_ns = "/api/v1/namespaces/cove-shared"
    api_server.objects[f"{shared_ns}/pods"] = {
        "kind": "PodList",
        "items": [
            {
                "metadata": {"name": f"coder-shared-{n}"},
                "status": {
                    "podIP": "127.0.0.1",
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
            for n in range(2)
        ],
    }
    for slug in ("a", "b"):
        adapter = await control.post(
            f"/api/v1/bus/{world[slug]['bu'].id}/adapters",
            json={
                "name": f"{slug}-coder",
                "base_model": "coder-7b",
                "location": f"adapters/bu-{slug}/coder",
                "rank": 8,
            },
            headers=bearer(world[slug]["admin_key"]),
        )
        assert adapter.status_code == 201, adapter.text
        attached = await control.post(
            f"/api/v1/bus/{world[slug]['bu'].id}/shared-instances/{instance['id']}/adapters",
            json={"model": f"{slug}-coder"},
            headers=bearer(world[slug]["admin_key"]),
        )
        assert attached.status_code == 202, attached.text
    outcome = cluster(sync_db, instance["id"])
    assert outcome.status == "ready"
    deployment = api_server.objects["/apis/apps/v1/namespaces/cove-shared/deployments/coder-shared"]
    annotation = json.loads(deployment["metadata"]["annotations"]["cove.dev/adapters"])
    assert [a["name"] for a in annotation] == ["a-coder", "b-coder"]
    assert {"a-coder", "b-coder"} <= fake.served
    # The platform's namespace holds the shared instances' GPUs; no BU namespace was touched.
    quota = api_server.objects[f"{shared_ns}/resourcequotas/cove-gpu-quota"]
    assert quota["spec"]["hard"] == {"requests.nvidia.com/gpu": "2"}
    assert not any("cove-bu-" in r.path for r in api_server.requests)
    capacity = await control.get(
        f"/api/v1/bus/{world['a']['bu'].id}/capacity", headers=bearer(world["a"]["admin_key"])
    )
    assert capacity.json()["gpus_in_use"] == 0
    assert [(s["name"], s["gpus"]) for s in capacity.json()["shared_instances"]] == [
        ("coder-shared", 2)
    ]


async def _shared_instance(
    control: httpx.AsyncClient, world: dict[str, Any], name: str, replicas: int
) -> dict[str, Any]:
    created = await control.post(
        "/api/v1/shared-instances",
        json={"name": name, "model": "coder-7b", "runtime": "kubernetes", "replicas": replicas},
        headers=bearer(world["admin_key"]),
    )
    assert created.status_code == 201, created.text
    return dict(created.json())


async def test_a_shared_instance_takes_adapters_from_the_model_store_not_a_bus_volume(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    api_server: FakeApiServer,
    cluster: Any,
    sync_db: SyncDatabase,
    pod_vllm: tuple[FakeVllm, ServerThread],
) -> None:
    fake, _ = pod_vllm
    await register_base(
        control, world, name="coder-7b", location="base/coder-7b", context_length=8192
    )
    instance = await _shared_instance(control, world, "coder-shared", 1)
    bu = world["a"]["bu"].id
    headers = bearer(world["a"]["admin_key"])
    # Where a fine-tuning job registers its adapter on Kubernetes: the BU's training volume,
    # a claim in cove-bu-bu-a that the pods in cove-shared cannot mount.
    for name, location in (
        ("a-trained", "pvc://cove-finetune/jobs/7/adapter"),
        ("a-published", "adapters/bu-a/a-trained"),
    ):
        registered = await control.post(
            f"/api/v1/bus/{bu}/adapters",
            json={"name": name, "base_model": "coder-7b", "location": location, "rank": 8},
            headers=headers,
        )
        assert registered.status_code == 201, registered.text
    refused = await control.post(
        f"/api/v1/bus/{bu}/shared-instances/{instance['id']}/adapters",
        json={"model": "a-trained"},
        headers=headers,
    )
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "adapter_not_in_model_store"
    assert "cove-finetune" in error["message"]
    assert "cove-shared" in error["message"]
    assert "Copy the adapter's directory into the model store" in error["message"]
    # Nothing was recorded: the BU sees no adapter on the instance, and the reconciler renders
    # no claim but the model store.
    seen = await control.get(f"/api/v1/bus/{bu}/shared-instances", headers=headers)
    assert [i["adapters"] for i in seen.json()] == [[]]
    attached = await control.post(
        f"/api/v1/bus/{bu}/shared-instances/{instance['id']}/adapters",
        json={"model": "a-published"},
        headers=headers,
    )
    assert attached.status_code == 202, attached.text
    api_server.objects["/api/v1/namespaces/cove-shared/pods"] = {
        "kind": "PodList",
        "items": [
            {
                "metadata": {"name": "coder-shared-0"},
                "status": {
                    "podIP": "127.0.0.1",
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        ],
    }
    assert cluster(sync_db, instance["id"]).status == "ready"
    assert "a-published" in fake.served
    deployment = api_server.objects["/apis/apps/v1/namespaces/cove-shared/deployments/coder-shared"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    claims = [
        v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v
    ]
    assert claims == ["cove-models"]
    annotation = json.loads(deployment["metadata"]["annotations"]["cove.dev/adapters"])
    assert annotation == [
        {"name": "a-published", "path": "/models/pvc/cove-models/adapters/bu-a/a-trained"}
    ]
    # One attached before this check existed (written straight into the table here) stays out
    # of the pods, fails on its own, and the instance and the other adapters keep serving.
    with sync_db.platform() as conn:
        conn.execute(
            "INSERT INTO deployment_adapters (deployment_id, model_id, tenant_id, state)"
            " SELECT %s, id, tenant_id, 'pending' FROM models WHERE name = 'a-trained'",
            (instance["id"],),
        )
    assert cluster(sync_db, instance["id"]).status == "ready"
    seen = await control.get(f"/api/v1/bus/{bu}/shared-instances", headers=headers)
    states = {a["model"]: (a["state"], a["detail"]) for a in seen.json()[0]["adapters"]}
    assert states["a-published"] == ("loaded", None)
    state, detail = states["a-trained"]
    assert state == "failed"
    assert "cove-finetune" in detail
    assert "model store" in detail
    assert "a-trained" not in fake.served


async def test_the_shared_namespace_quota_follows_deleted_shared_instances(
    control: httpx.AsyncClient,
    world: dict[str, Any],
    api_server: FakeApiServer,
    cluster: Any,
    sync_db: SyncDatabase,
) -> None:
    await register_base(
        control, world, name="coder-7b", location="base/coder-7b", context_length=8192
    )
    big = await _shared_instance(control, world, "coder-big", 3)
    small = await _shared_instance(control, world, "coder-small", 1)
    quota_path = "/api/v1/namespaces/cove-shared/resourcequotas/cove-gpu-quota"

    def hard() -> Any:
        return api_server.objects[quota_path]["spec"]["hard"]

    cluster(sync_db, big["id"])
    cluster(sync_db, small["id"])
    assert hard() == {"requests.nvidia.com/gpu": "4"}
    for instance, left in ((big, "1"), (small, "0")):
        deleted = await control.delete(
            f"/api/v1/shared-instances/{instance['id']}", headers=bearer(world["admin_key"])
        )
        assert deleted.status_code == 202, deleted.text
        assert cluster(sync_db, instance["id"]).action == "deleted"
        # Lowered on the deletion itself, not when the next shared instance is applied.
        assert hard() == {"requests.nvidia.com/gpu": left}
        patches = [r for r in api_server.sent("PATCH") if r.path == quota_path]
        assert yaml.safe_load(patches[-1].body)["spec"]["hard"] == hard()
