"""Server-side apply of rendered objects through the official `kubernetes` client.

One generic request path (`ApiClient.param_serialize` + `call_api`) instead of a typed API class
per kind: the objects are already plain dicts, and server-side apply is the same PATCH for every
kind. Requests carry the client's configured authentication (in-cluster token or kubeconfig).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

from cove.platform.deployments.k8s.render import (
    FIELD_MANAGER,
    KubeObject,
    ObjectKey,
    apply_plan,
    is_deployment_scoped,
    render,
    selector_labels,
)
from cove.platform.deployments.k8s.spec import DeploymentSpec

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"

# (apiVersion, kind) -> (resource plural, namespaced) for every kind `render` produces.
RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "ResourceQuota"): ("resourcequotas", True),
    ("v1", "Service"): ("services", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("networkpolicies", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    # Fine-tuning runs (cove.platform.finetuning.k8s).
    ("batch/v1", "Job"): ("jobs", True),
}


class KubernetesError(Exception):
    """The API server refused a request, or could not be reached (status 0)."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{method} {path}: {status} {message}".strip())
        self.method = method
        self.path = path
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str
    reason: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    """What the cluster reports for a deployment's vLLM Deployment."""

    exists: bool
    desired_replicas: int
    ready_replicas: int
    updated_replicas: int
    available_replicas: int
    # The controller has seen the latest spec; until then the counts describe an older one.
    observed_current: bool
    conditions: tuple[Condition, ...]

    @property
    def ready(self) -> bool:
        return (
            self.exists
            and self.observed_current
            and self.desired_replicas > 0
            and self.ready_replicas >= self.desired_replicas
            and self.updated_replicas >= self.desired_replicas
        )


@dataclass(frozen=True, slots=True)
class PodInfo:
    """One pod of a deployment, as far as the reconciler cares: can it be talked to?"""

    name: str
    ip: str | None
    ready: bool


@dataclass(frozen=True, slots=True)
class EventInfo:
    """One core/v1 Event about a deployment's Deployment, ReplicaSets or pods."""

    type: str
    reason: str
    message: str
    count: int
    last_time: str | None
    object: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "reason": self.reason,
            "message": self.message,
            "count": self.count,
            "last_time": self.last_time,
            "object": self.object,
        }


# How many of the most recent events a deployment's status keeps.
RECENT_EVENTS = 10

MISSING = InstanceStatus(
    exists=False,
    desired_replicas=0,
    ready_replicas=0,
    updated_replicas=0,
    available_replicas=0,
    observed_current=False,
    conditions=(),
)


def object_path(api_version: str, kind: str, namespace: str | None, name: str) -> str:
    """The REST path of one object, e.g. /apis/apps/v1/namespaces/ns/deployments/name."""
    try:
        plural, namespaced = RESOURCES[(api_version, kind)]
    except KeyError:
        raise ValueError(f"Cove does not apply {kind} ({api_version})") from None
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if not namespaced:
        return f"{base}/{plural}/{quote(name, safe='')}"
    if namespace is None:
        raise ValueError(f"{kind} {name} needs a namespace")
    return f"{base}/namespaces/{quote(namespace, safe='')}/{plural}/{quote(name, safe='')}"


def apply_body(obj: KubeObject) -> str:
    """The exact PATCH body: canonical JSON (valid YAML), identical for identical objects."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


class KubernetesApplier:
    """Applies, deletes and reads one deployment's objects with server-side apply."""

    def __init__(self, api_client: ApiClient, *, timeout_seconds: float = 30.0) -> None:
        self._api = api_client
        self._timeout = timeout_seconds

    @classmethod
    def from_configuration(
        cls, configuration: Configuration, *, timeout_seconds: float = 30.0
    ) -> KubernetesApplier:
        return cls(ApiClient(configuration), timeout_seconds=timeout_seconds)

    def close(self) -> None:
        self._api.rest_client.close()

    def __enter__(self) -> KubernetesApplier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def apply(self, spec: DeploymentSpec) -> list[KubeObject]:
        """Apply every rendered object in order; returns what the API server stored."""
        return self.apply_objects(render(spec))

    def apply_objects(self, objects: list[KubeObject]) -> list[KubeObject]:
        # Forcing takes over fields another manager (a `kubectl scale`, an edit) changed: the
        # spec in Postgres is the desired state, and that is how drift gets corrected.
        applied: list[KubeObject] = []
        for obj, key in zip(objects, apply_plan(objects), strict=True):
            _, stored = self._request(
                "PATCH",
                object_path(*key),
                query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                body=apply_body(obj),
                content_type=APPLY_CONTENT_TYPE,
            )
            applied.append(stored if isinstance(stored, dict) else {})
        return applied

    def read_object(self, key: ObjectKey) -> dict[str, Any] | None:
        """One stored object, or None when it does not exist."""
        status, body = self._request("GET", object_path(*key), allow_missing=True)
        return body if status != 404 and isinstance(body, dict) else None

    def delete_object(self, key: ObjectKey) -> bool:
        """Delete one object and, in the background, what it owns; False when it was absent."""
        status, _ = self._request(
            "DELETE",
            object_path(*key),
            query=[("propagationPolicy", "Background")],
            allow_missing=True,
        )
        return status != 404

    def delete(self, spec: DeploymentSpec, *, include_bu_objects: bool = False) -> list[ObjectKey]:
        """Delete the deployment's objects in reverse apply order; returns those that existed.

        The BU-wide objects (Namespace, ResourceQuota, default-deny policy) are shared by all
        of the BU's deployments and are deleted only when asked: deleting the Namespace would
        take every other deployment of the BU with it.
        """
        objects = [o for o in render(spec) if include_bu_objects or is_deployment_scoped(o)]
        deleted: list[ObjectKey] = []
        for key in reversed(apply_plan(objects)):
            status, _ = self._request(
                "DELETE",
                object_path(*key),
                query=[("propagationPolicy", "Background")],
                allow_missing=True,
            )
            if status != 404:
                deleted.append(key)
        return deleted

    def read_status(self, spec: DeploymentSpec) -> InstanceStatus:
        path = object_path("apps/v1", "Deployment", spec.namespace, spec.name)
        status, body = self._request("GET", path, allow_missing=True)
        if status == 404 or not isinstance(body, dict):
            return MISSING
        return _instance_status(body)

    def list_pods(self, spec: DeploymentSpec) -> list[PodInfo]:
        """The deployment's pods (by its stable selector labels), for per-pod calls such as
        hot-loading an adapter into every replica."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(selector_labels(spec).items()))
        status, body = self._request(
            "GET",
            f"/api/v1/namespaces/{quote(spec.namespace, safe='')}/pods",
            query=[("labelSelector", selector)],
            allow_missing=True,
        )
        if status == 404 or not isinstance(body, dict):
            return []
        return [_pod_info(item) for item in body.get("items") or [] if isinstance(item, dict)]

    def recent_events(self, spec: DeploymentSpec, limit: int = RECENT_EVENTS) -> list[EventInfo]:
        """The newest events about the deployment's Deployment, its ReplicaSets and its pods
        (scheduling failures, image pulls, probe failures, OOM kills), newest first."""
        status, body = self._request(
            "GET",
            f"/api/v1/namespaces/{quote(spec.namespace, safe='')}/events",
            allow_missing=True,
        )
        if status == 404 or not isinstance(body, dict):
            return []
        ours = _owned_names(spec.name)
        found = [
            _event_info(item)
            for item in body.get("items") or []
            if isinstance(item, dict) and _is_about(item, ours)
        ]
        found.sort(key=lambda e: e.last_time or "", reverse=True)
        return found[:limit]

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: str | None = None,
        content_type: str | None = None,
        allow_missing: bool = False,
    ) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        request = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(*request, _request_timeout=self._timeout)
        except (urllib3.exceptions.HTTPError, ApiException) as exc:
            raise KubernetesError(method, path, 0, f"API server unreachable: {exc}") from exc
        status = int(response.status)
        raw: bytes = response.response.data or b""
        try:
            decoded: Any = json.loads(raw) if raw else None
        except ValueError:
            decoded = None
        if 200 <= status < 300 or (allow_missing and status == 404):
            return status, decoded
        message = decoded.get("message") if isinstance(decoded, dict) else None
        raise KubernetesError(
            method, path, status, str(message or raw[:500].decode(errors="replace"))
        )


def _instance_status(deployment: dict[str, Any]) -> InstanceStatus:
    metadata = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    conditions = tuple(
        Condition(
            type=str(c.get("type", "")),
            status=str(c.get("status", "")),
            reason=c.get("reason"),
            message=c.get("message"),
        )
        for c in status.get("conditions") or []
        if isinstance(c, dict)
    )
    return InstanceStatus(
        exists=True,
        desired_replicas=int(spec.get("replicas", 1)),
        ready_replicas=int(status.get("readyReplicas", 0)),
        updated_replicas=int(status.get("updatedReplicas", 0)),
        available_replicas=int(status.get("availableReplicas", 0)),
        observed_current=int(status.get("observedGeneration", 0))
        >= int(metadata.get("generation", 0)),
        conditions=conditions,
    )


def _pod_info(pod: dict[str, Any]) -> PodInfo:
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ready = any(
        isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    # A pod being deleted still reports Ready until its containers stop.
    ready = ready and not metadata.get("deletionTimestamp")
    return PodInfo(name=str(metadata.get("name", "")), ip=status.get("podIP"), ready=ready)


def _owned_names(deployment: str) -> dict[str, re.Pattern[str]]:
    """Name patterns of what a Deployment owns: `<name>-<template hash>` ReplicaSets and
    `<name>-<template hash>-<suffix>` pods. The hash and suffix hold no '-', so another
    deployment whose name starts with this one's never matches."""
    name = re.escape(deployment)
    return {
        "Deployment": re.compile(rf"^{name}$"),
        "ReplicaSet": re.compile(rf"^{name}-[a-z0-9]{{1,10}}$"),
        "Pod": re.compile(rf"^{name}-[a-z0-9]{{1,10}}-[a-z0-9]{{5}}$"),
    }


def _is_about(event: dict[str, Any], ours: dict[str, re.Pattern[str]]) -> bool:
    involved = event.get("involvedObject") or {}
    pattern = ours.get(str(involved.get("kind", "")))
    return pattern is not None and bool(pattern.match(str(involved.get("name", ""))))


def _event_info(event: dict[str, Any]) -> EventInfo:
    involved = event.get("involvedObject") or {}
    series = event.get("series") or {}
    metadata = event.get("metadata") or {}
    last = (
        event.get("lastTimestamp")
        or series.get("lastObservedTime")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or metadata.get("creationTimestamp")
    )
    return EventInfo(
        type=str(event.get("type") or "Normal"),
        reason=str(event.get("reason") or ""),
        message=str(event.get("message") or "")[:1000],
        count=int(event.get("count") or series.get("count") or 1),
        last_time=str(last) if last else None,
        object=f"{involved.get('kind', '')}/{involved.get('name', '')}",
    )
