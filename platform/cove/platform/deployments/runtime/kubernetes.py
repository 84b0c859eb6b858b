"""The Kubernetes runtime: each deployment is the set of objects `k8s.render` produces,
server-side-applied by `KubernetesApplier`; adapters are recorded in the Deployment's
annotation and hot-loaded into every ready pod through vLLM's runtime LoRA API."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

from kubernetes.client import Configuration
from pydantic import ValidationError

from cove.platform.deployments.k8s.client import KubernetesApplier, KubernetesError, PodInfo
from cove.platform.deployments.k8s.render import (
    ADAPTERS_ANNOTATION,
    VLLM_PORT,
    render,
    resource_quota,
    service_url,
)
from cove.platform.deployments.k8s.spec import (
    DEFAULT_GATEWAY_POD_LABELS,
    Adapter,
    DeploymentSpec,
    ImageRef,
    ModelSource,
    S3Source,
    Toleration,
    describe_errors,
    named_claim,
    parse_tolerations,
)
from cove.platform.deployments.runtime.base import (
    AdapterFailure,
    AdapterRef,
    Observed,
    RuntimeFailure,
    Target,
)
from cove.platform.deployments.runtime.vllm_api import VllmApi
from cove.platform.deployments.settings import RuntimeSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """What the platform decides for every BU's instances on this cluster."""

    image: ImageRef
    model_volume_claim: str
    gateway_namespace: str
    gateway_pod_labels: dict[str, str]
    s3: S3Source | None = None
    gpu_resource: str = "nvidia.com/gpu"
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()


def cluster_settings(settings: RuntimeSettings) -> ClusterSettings:
    try:
        if settings.vllm_image:
            image = ImageRef.parse(settings.vllm_image, settings.vllm_image_pull_secret)
        else:
            image = ImageRef(
                repository=settings.vllm_image_repository,
                tag=settings.vllm_image_tag,
                digest=settings.vllm_image_digest,
                pull_secret=settings.vllm_image_pull_secret,
            )
    except ValidationError as exc:
        problems = describe_errors([dict(error) for error in exc.errors()])
        raise RuntimeFailure("COVE_VLLM_IMAGE*: " + "; ".join(problems)) from None
    try:
        tolerations = parse_tolerations(settings.model_tolerations)
    except ValidationError as exc:
        problems = describe_errors([dict(error) for error in exc.errors()])
        raise RuntimeFailure("COVE_MODEL_TOLERATIONS: " + "; ".join(problems)) from None
    return ClusterSettings(
        image=image,
        model_volume_claim=settings.model_volume_claim,
        gateway_namespace=settings.gateway_namespace,
        gateway_pod_labels=dict(DEFAULT_GATEWAY_POD_LABELS),
        gpu_resource=settings.gpu_resource_name,
        node_selector=tuple(sorted(settings.model_node_selector.items())),
        tolerations=tuple(tolerations),
    )


def kube_configuration(settings: RuntimeSettings) -> Configuration:
    """The API server connection: an explicit URL and token, a kubeconfig, or the worker
    pod's own service account."""
    from kubernetes import config

    configuration = Configuration()
    if settings.kube_api_url:
        configuration.host = settings.kube_api_url
        if settings.kube_token is not None:
            configuration.api_key = {"authorization": settings.kube_token.get_secret_value()}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        if settings.kube_ca_file is not None:
            configuration.ssl_ca_cert = str(settings.kube_ca_file)
        configuration.verify_ssl = settings.kube_verify_ssl
    elif settings.kubeconfig is not None:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(settings.kubeconfig), client_configuration=configuration
        )
    else:
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    return configuration


def kubernetes_driver(settings: RuntimeSettings, api: VllmApi) -> KubernetesDriver:
    applier = KubernetesApplier.from_configuration(
        kube_configuration(settings), timeout_seconds=settings.kube_timeout_seconds
    )
    return KubernetesDriver(applier, cluster_settings(settings), api)


class KubernetesDriver:
    def __init__(
        self,
        applier: KubernetesApplier,
        cluster: ClusterSettings,
        api: VllmApi,
        *,
        pod_port: int = VLLM_PORT,
    ) -> None:
        self._applier = applier
        self._cluster = cluster
        self._api = api
        # The port vLLM listens on in each pod (the tests point it at a local stand-in).
        self._pod_port = pod_port

    def spec_for(self, target: Target, *, gpu_quota: int | None = None) -> DeploymentSpec:
        spec = target.spec
        if target.context_length is None:
            raise RuntimeFailure(f"model {target.model} has no context length in the catalog")
        try:
            return DeploymentSpec(
                bu=target.bu_slug,
                name=target.name,
                mode=target.mode,
                shared_across_bus=target.shared_across_bus,
                model=ModelSource(
                    name=target.served_model_name,
                    location=target.model_location,
                    context_length=target.context_length,
                ),
                replicas=spec.replicas,
                gpus_per_replica=spec.gpus_per_replica,
                gpu_type=spec.gpu_type,
                gpu_quota=target.gpu_quota if gpu_quota is None else gpu_quota,
                vllm=spec.vllm,
                adapters=[Adapter(name=a.name, location=a.location) for a in _mountable(target)],
                resources=spec.resources,
                shm_size=spec.shm_size,
                node_selector=spec.node_selector or dict(self._cluster.node_selector),
                tolerations=spec.tolerations or list(self._cluster.tolerations),
                gpu_resource=self._cluster.gpu_resource,
                image=self._cluster.image,
                model_volume_claim=self._cluster.model_volume_claim,
                s3=self._cluster.s3,
                gateway_namespace=self._cluster.gateway_namespace,
                gateway_pod_labels=self._cluster.gateway_pod_labels,
                labels=spec.labels,
            )
        except ValidationError as exc:
            problems = describe_errors([dict(error) for error in exc.errors()])
            raise RuntimeFailure(
                "the deployment cannot be rendered: " + "; ".join(problems)
            ) from None

    def ensure(self, target: Target) -> Observed:
        spec = self.spec_for(target)
        try:
            self._applier.apply(spec)
        except KubernetesError as exc:
            raise RuntimeFailure(f"Kubernetes refused the deployment: {exc}") from exc
        return self._observe(target, spec)

    def status(self, target: Target) -> Observed:
        return self._observe(target, self.spec_for(target))

    def stop(self, target: Target) -> None:
        # Whatever the BU's quota is now, the objects to delete are the same.
        spec = self.spec_for(target, gpu_quota=max(target.gpu_quota, target.spec.gpus))
        try:
            self._applier.delete(spec)
            if target.shared_across_bus:
                # The platform's namespace holds exactly the GPUs of the shared instances
                # still running (`gpu_quota` of a deleted one counts only the others).
                self._applier.apply_objects([resource_quota(spec, target.gpu_quota)])
        except KubernetesError as exc:
            raise RuntimeFailure(f"Kubernetes refused the deletion: {exc}") from exc

    def load_adapter(self, target: Target, adapter: AdapterRef) -> None:
        spec = self.spec_for(target)
        path = self._container_paths(spec).get(adapter.name)
        claim = named_claim(adapter.location)
        if path is None and target.shared_across_bus and claim is not None:
            raise AdapterFailure(
                f"adapter {adapter.name} is on the claim {claim}, which a shared instance cannot"
                " mount; copy it into the model store and register that path"
            )
        if path is None:
            raise AdapterFailure(f"adapter {adapter.name} is not part of the deployment's spec")
        # Recorded first, so pods that start meanwhile get it restored by the next reconcile.
        try:
            self._applier.apply(spec)
        except KubernetesError as exc:
            raise AdapterFailure(f"Kubernetes refused the adapter annotation: {exc}") from exc
        pods = self._ready_pods(spec)
        if not pods:
            raise AdapterFailure("no ready pod to load the adapter into")
        for pod in pods:
            self._api.load_adapter(self._pod_url(pod), adapter.name, path)

    def unload_adapter(self, target: Target, name: str) -> None:
        spec = self.spec_for(target)
        for pod in self._ready_pods(spec):
            self._api.unload_adapter(self._pod_url(pod), name)
        try:
            self._applier.apply(spec)
        except KubernetesError as exc:
            raise AdapterFailure(f"Kubernetes refused the adapter annotation: {exc}") from exc

    # ---- internals --------------------------------------------------------------------------

    def _observe(self, target: Target, spec: DeploymentSpec) -> Observed:
        observed = self._observe_status(spec)
        return replace(observed, events=self._recent_events(spec))

    def _recent_events(self, spec: DeploymentSpec) -> tuple[dict[str, Any], ...] | None:
        # Events explain a status (FailedScheduling, ImagePullBackOff, probe failures) but are
        # not needed to reach one: without them the reconcile goes on.
        try:
            return tuple(e.as_dict() for e in self._applier.recent_events(spec))
        except KubernetesError as exc:
            log.warning("cannot read the deployment's events", extra={"error": str(exc)})
            return None

    def _observe_status(self, spec: DeploymentSpec) -> Observed:
        try:
            status = self._applier.read_status(spec)
        except KubernetesError as exc:
            raise RuntimeFailure(f"cannot read the deployment's status: {exc}") from exc
        url = service_url(spec)
        conditions = tuple(
            {k: v for k, v in asdict(c).items() if v is not None} for c in status.conditions
        )
        desired, ready = status.desired_replicas, status.ready_replicas
        if not status.exists:
            return Observed("absent", url, spec.replicas, 0, "the Deployment does not exist")
        if desired == 0:
            return Observed("failed", url, 0, 0, "scaled to zero replicas", conditions=conditions)
        if status.ready:
            served = self._served_by_every_pod(spec)
            return Observed(
                "ready", url, desired, ready, None, served=served, conditions=conditions
            )
        detail = _condition_summary(status.conditions) or f"{ready} of {desired} replicas ready"
        if ready > 0:
            served = self._served_by_every_pod(spec)
            return Observed(
                "degraded",
                url,
                desired,
                ready,
                f"{ready} of {desired} replicas ready; {detail}",
                served=served,
                conditions=conditions,
            )
        return Observed("starting", url, desired, 0, detail, conditions=conditions)

    def _served_by_every_pod(self, spec: DeploymentSpec) -> frozenset[str] | None:
        """Names every ready pod serves; an adapter counts as loaded only when all have it."""
        served: frozenset[str] | None = None
        for pod in self._ready_pods(spec):
            names = self._api.served(self._pod_url(pod))
            if names is None:
                continue
            served = names if served is None else served & names
        return served

    def _ready_pods(self, spec: DeploymentSpec) -> list[PodInfo]:
        try:
            pods = self._applier.list_pods(spec)
        except KubernetesError as exc:
            raise AdapterFailure(f"cannot list the deployment's pods: {exc}") from exc
        return [p for p in pods if p.ready and p.ip]

    def _pod_url(self, pod: PodInfo) -> str:
        host = f"[{pod.ip}]" if pod.ip and ":" in pod.ip else pod.ip
        return f"http://{host}:{self._pod_port}"

    @staticmethod
    def _container_paths(spec: DeploymentSpec) -> dict[str, str]:
        deployment = next(o for o in render(spec) if o["kind"] == "Deployment")
        annotation = deployment["metadata"].get("annotations", {}).get(ADAPTERS_ANNOTATION, "[]")
        return {a["name"]: a["path"] for a in json.loads(annotation)}


def _mountable(target: Target) -> list[AdapterRef]:
    # Attaching refuses a BU's claim for a shared instance (adapter_not_in_model_store); one
    # that got there anyway must not leave every BU's pods waiting for a volume that is not in
    # the namespace, so it stays out of the spec and fails on its own.
    if not target.shared_across_bus:
        return list(target.adapters)
    return [a for a in target.adapters if named_claim(a.location) is None]


def _condition_summary(conditions: tuple[object, ...]) -> str | None:
    for condition in conditions:
        message = getattr(condition, "message", None)
        if getattr(condition, "status", "") != "True" and message:
            return str(message)
    return None
