"""Server-side apply, delete and status reads through the real `kubernetes` client.

No Kubernetes API server can run on this machine (no container runtime, no kube-apiserver
binary), so the fake sits at the HTTP boundary: a small local HTTP server that records every
request (method, path, query, headers, body) and answers the way the API server does for these
calls — it stores applied objects, echoes them back with a status, reports Deployments' replica
counts, and answers 404 with a `Status` for objects that do not exist. Everything on our side of
that boundary, including the official client's request building and serialisation, is real.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from kubernetes.client import Configuration

from cove.platform.deployments.k8s.client import (
    APPLY_CONTENT_TYPE,
    KubernetesApplier,
    KubernetesError,
    apply_body,
)
from cove.platform.deployments.k8s.render import render
from cove.platform.deployments.k8s.spec import DeploymentSpec

NS = "cove-bu-risk"
SPEC = DeploymentSpec.model_validate(
    {
        "bu": "risk",
        "name": "coder",
        "model": {"name": "qwen2.5-coder-7b", "location": "base/qwen", "context_length": 8192},
        "replicas": 2,
        "gpus_per_replica": 1,
        "gpu_quota": 4,
        "image": {"repository": "registry.internal/vllm/vllm-openai", "tag": "v0.11.0"},
    }
)
APPLY_PATHS = [
    f"/api/v1/namespaces/{NS}",
    f"/api/v1/namespaces/{NS}/resourcequotas/cove-gpu-quota",
    f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/default-deny-ingress",
    f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/coder-allow-gateway",
    f"/apis/apps/v1/namespaces/{NS}/deployments/coder",
    f"/api/v1/namespaces/{NS}/services/coder",
    f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/coder",
]
DEPLOYMENT_PATH = APPLY_PATHS[4]


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeApiServer:
    """What the API server stores and answers for the calls the applier makes."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    # None: every replica is ready; a number: pods still loading the model.
    ready_replicas: int | None = None
    _version: int = 0

    def sent(self, method: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method]

    def scale(self, path: str, replicas: int) -> None:
        """Someone else's edit (`kubectl scale`): the drift the next apply must undo."""
        stored = self.objects[path]
        stored["spec"]["replicas"] = replicas
        stored["metadata"]["generation"] += 1

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        self.requests.append(Recorded(method, path, query, headers, body))
        if (method, path) in self.failures:
            code, message = self.failures[(method, path)]
            return code, _status(code, message)
        if method == "PATCH":
            return self._apply(path, parse_qs(query), headers, body)
        stored = self.objects.get(path)
        if stored is None:
            return 404, _status(404, f"{path.rsplit('/', 1)[-1]!r} not found")
        if method == "GET":
            return 200, self._with_status(stored)
        if method == "DELETE":
            del self.objects[path]
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        return 405, _status(405, "method not allowed")

    def _apply(
        self, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        if headers.get("content-type") != APPLY_CONTENT_TYPE:
            return 415, _status(415, "only server-side apply is expected here")
        if query.get("fieldManager") != ["cove-reconciler"]:
            return 422, _status(422, "fieldManager is required for apply requests")
        applied = yaml.safe_load(body)
        existing = self.objects.get(path)
        self._version += 1
        if existing is None:
            stored = copy.deepcopy(applied)
            stored["metadata"]["uid"] = f"uid-{len(self.objects)}"
            stored["metadata"]["generation"] = 1
            code = 201
        else:
            stored = _merge(copy.deepcopy(existing), applied)
            if stored.get("spec") != existing.get("spec"):
                stored["metadata"]["generation"] = existing["metadata"]["generation"] + 1
            code = 200
        stored["metadata"]["resourceVersion"] = str(self._version)
        self.objects[path] = stored
        return code, self._with_status(stored)

    def _with_status(self, stored: dict[str, Any]) -> dict[str, Any]:
        answer = copy.deepcopy(stored)
        if stored["kind"] == "Deployment":
            wanted = stored["spec"]["replicas"]
            ready = wanted if self.ready_replicas is None else self.ready_replicas
            available = "True" if ready >= wanted else "False"
            answer["status"] = {
                "observedGeneration": stored["metadata"]["generation"],
                "replicas": wanted,
                "updatedReplicas": wanted,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "conditions": [
                    {
                        "type": "Available",
                        "status": available,
                        "reason": "MinimumReplicasAvailable",
                        "message": f"{ready} of {wanted} ready",
                    },
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                ],
            }
        return answer


def _merge(into: dict[str, Any], applied: dict[str, Any]) -> dict[str, Any]:
    for key, value in applied.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


def _status(code: int, message: str) -> dict[str, Any]:
    reasons = {404: "NotFound", 415: "UnsupportedMediaType", 422: "Invalid", 403: "Forbidden"}
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reasons.get(code, "Unknown"),
        "code": code,
    }


@pytest.fixture
def api_server() -> Iterator[FakeApiServer]:
    fake = FakeApiServer()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            code, answer = fake.handle(self.command, parts.path, parts.query, headers, body)
            payload = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PATCH = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def applier(api_server: FakeApiServer) -> Iterator[KubernetesApplier]:
    configuration = Configuration(
        host=api_server.url,
        api_key={"authorization": "test-token"},
        api_key_prefix={"authorization": "Bearer"},
    )
    with KubernetesApplier.from_configuration(configuration, timeout_seconds=5) as client:
        yield client


def test_apply_server_side_applies_each_object_in_order(
    api_server: FakeApiServer, applier: KubernetesApplier
) -> None:
    stored = applier.apply(SPEC)

    patches = api_server.sent("PATCH")
    assert [r.path for r in patches] == APPLY_PATHS
    for request, obj in zip(patches, render(SPEC), strict=True):
        assert request.query == "fieldManager=cove-reconciler&force=true"
        assert request.headers["content-type"] == "application/apply-patch+yaml"
        assert request.headers["authorization"] == "Bearer test-token"
        assert yaml.safe_load(request.body) == obj
        assert request.body == apply_body(obj).encode()
    assert [o["metadata"]["resourceVersion"] for o in stored] == [str(n) for n in range(1, 8)]
    assert stored[4]["status"]["readyReplicas"] == 2


def test_applying_the_same_spec_twice_sends_identical_bodies_and_changes_nothing(
    api_server: FakeApiServer, applier: KubernetesApplier
) -> None:
    applier.apply(SPEC)
    first = [(r.path, r.query, r.body) for r in api_server.sent("PATCH")]
    stored_once = copy.deepcopy(api_server.objects)
    applier.apply(SPEC)
    second = [(r.path, r.query, r.body) for r in api_server.sent("PATCH")[len(first) :]]

    assert second == first
    for path, obj in api_server.objects.items():
        before = stored_once[path]
        assert obj.get("spec") == before.get("spec")
        assert obj["metadata"]["generation"] == before["metadata"]["generation"]


def test_drift_is_corrected_by_the_next_apply(
    api_server: FakeApiServer, applier: KubernetesApplier
) -> None:
    applier.apply(SPEC)
    api_server.scale(DEPLOYMENT_PATH, 7)
    drifted = applier.read_status(SPEC)
    assert drifted.desired_replicas == 7

    applier.apply(SPEC)

    deployment_patches = [r for r in api_server.sent("PATCH") if r.path == DEPLOYMENT_PATH]
    assert deployment_patches[0].body == deployment_patches[1].body
    assert json.loads(deployment_patches[1].body)["spec"]["replicas"] == 2
    assert api_server.objects[DEPLOYMENT_PATH]["spec"]["replicas"] == 2
    corrected = applier.read_status(SPEC)
    assert corrected.desired_replicas == 2
    assert corrected.ready


def test_read_status_reports_replicas_and_conditions(
    api_server: FakeApiServer, applier: KubernetesApplier
) -> None:
    applier.apply(SPEC)
    api_server.ready_replicas = 1

    loading = applier.read_status(SPEC)

    assert api_server.requests[-1].method == "GET"
    assert api_server.requests[-1].path == DEPLOYMENT_PATH
    assert loading.exists
    assert (loading.desired_replicas, loading.ready_replicas) == (2, 1)
    assert not loading.ready
    available = next(c for c in loading.conditions if c.type == "Available")
    assert (available.status, available.message) == ("False", "1 of 2 ready")

    api_server.ready_replicas = None
    assert applier.read_status(SPEC).ready


def test_read_status_of_a_deployment_that_does_not_exist(
    api_server: FakeApiServer, applier: KubernetesApplier
) -> None:
    status = applier.read_status(SPEC)

    assert not status.exists
    assert not status.ready
    assert [(r.method, r.path) for r in api_server.requests] == [("GET", DEPLOYMENT_PATH)]


def test_delete_removes_the_deployments_objects_in_reverse_order_and_keeps_the_bu_ones(
    api_server: FakeApiServer, applier: KubernetesApplier
) -> None:
    applier.apply(SPEC)

    deleted = applier.delete(SPEC)

    deletes = api_server.sent("DELETE")
    assert [r.path for r in deletes] == list(reversed(APPLY_PATHS[3:]))
    assert all(r.query == "propagationPolicy=Background" for r in deletes)
    assert [key[3] for key in deleted] == ["coder", "coder", "coder", "coder-allow-gateway"]
    assert sorted(api_server.objects) == sorted(APPLY_PATHS[:3])

    assert applier.delete(SPEC) == []


def test_delete_with_the_bu_objects_removes_everything_namespace_last(
    api_server: FakeApiServer, applier: KubernetesApplier
) -> None:
    applier.apply(SPEC)

    deleted = applier.delete(SPEC, include_bu_objects=True)

    assert [r.path for r in api_server.sent("DELETE")] == list(reversed(APPLY_PATHS))
    assert deleted[-1] == ("v1", "Namespace", None, NS)
    assert api_server.objects == {}


def test_a_refused_object_stops_the_apply_with_the_servers_message(
    api_server: FakeApiServer, applier: KubernetesApplier
) -> None:
    api_server.failures[("PATCH", APPLY_PATHS[1])] = (
        403,
        'resourcequotas "cove-gpu-quota" is forbidden: User cannot patch resource',
    )

    with pytest.raises(KubernetesError) as caught:
        applier.apply(SPEC)

    assert caught.value.status == 403
    assert "is forbidden" in caught.value.message
    assert [r.path for r in api_server.sent("PATCH")] == APPLY_PATHS[:2]


def test_an_unreachable_api_server_is_a_clear_error() -> None:
    configuration = Configuration(host="http://127.0.0.1:9")
    configuration.retries = 0
    client = KubernetesApplier.from_configuration(configuration, timeout_seconds=2)

    with client, pytest.raises(KubernetesError) as caught:
        client.read_status(SPEC)

    assert caught.value.status == 0
    assert "unreachable" in caught.value.message
