"""A `DeploymentSpec` rendered into exactly the objects the reconciler server-side-applies.

Pure and deterministic: the same spec gives byte-identical YAML, so `cove deployments render`
is a faithful review of what the cluster will receive and re-applying changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from cove.platform.deployments.k8s.spec import (
    GPU_PRODUCT_LABEL,
    DeploymentSpec,
    S3Location,
    Toleration,
    VolumeLocation,
)

KubeObject = dict[str, Any]
ObjectKey = tuple[str, str, str | None, str]

FIELD_MANAGER = "cove-reconciler"
MANAGED_BY = "cove"
VLLM_PORT = 8000
RESOURCE_QUOTA_NAME = "cove-gpu-quota"
DEFAULT_DENY_POLICY_NAME = "default-deny-ingress"
ADAPTERS_ANNOTATION = "cove.dev/adapters"
DEPLOYMENT_LABEL = "cove.dev/deployment"
BU_LABEL = "cove.dev/bu"
# An arbitrary non-root id: the vLLM image needs no particular user once HOME and the caches
# point at writable emptyDirs.
RUN_AS_USER = 10001
MODELS_ROOT = "/models"
CACHE_DIR = "/cache"
# An emptyDir mounted over the container's /tmp, not the node's.
TMP_DIR = "/tmp"  # noqa: S108
SHM_DIR = "/dev/shm"  # noqa: S108
# Loading a large model (and compiling CUDA graphs) can take many minutes; the startup probe
# holds liveness off for up to 30 minutes instead of killing a pod that is still loading.
STARTUP_PERIOD_SECONDS = 10
STARTUP_FAILURE_THRESHOLD = 180
# Longer than the startup window, so a slow first load is not reported as a failed rollout.
PROGRESS_DEADLINE_SECONDS = 3600


def bu_namespace(bu: str) -> str:
    return f"cove-bu-{bu}"


def bu_labels(spec: DeploymentSpec) -> dict[str, str]:
    """Labels of the BU-wide objects every deployment of the BU renders identically."""
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "cove",
        BU_LABEL: spec.bu,
    }


def selector_labels(spec: DeploymentSpec) -> dict[str, str]:
    """The only labels any selector uses: fixed keys whose values never change for a deployment."""
    return {"app.kubernetes.io/instance": spec.name, DEPLOYMENT_LABEL: spec.name}


def deployment_labels(spec: DeploymentSpec) -> dict[str, str]:
    """User labels first, then Cove's, so no user label can replace one a selector relies on."""
    own = {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": spec.name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "cove",
        BU_LABEL: spec.bu,
        DEPLOYMENT_LABEL: spec.name,
    }
    merged = {key: spec.labels[key] for key in sorted(spec.labels) if key not in own}
    merged.update(own)
    return merged


def service_url(spec: DeploymentSpec) -> str:
    """Where the gateway reaches the instance's OpenAI-compatible server."""
    return f"http://{spec.name}.{spec.namespace}.svc:{VLLM_PORT}"


def render(spec: DeploymentSpec) -> list[KubeObject]:
    """Every object for the spec, in apply order.

    The namespace-wide objects (Namespace, ResourceQuota, default-deny policy) come first and
    are identical for every deployment of the BU; the policies come before the Deployment so
    no pod ever runs without them.
    """
    return [
        _namespace(spec),
        _resource_quota(spec),
        _default_deny_policy(spec),
        _gateway_policy(spec),
        _deployment(spec),
        _service(spec),
        _disruption_budget(spec),
    ]


def is_deployment_scoped(obj: KubeObject) -> bool:
    """False for the BU-wide objects, which outlive any one deployment."""
    return DEPLOYMENT_LABEL in obj["metadata"].get("labels", {})


def apply_plan(objects: list[KubeObject]) -> list[ObjectKey]:
    """(apiVersion, kind, namespace or None, name) of each object, in the order given."""
    return [
        (
            obj["apiVersion"],
            obj["kind"],
            obj["metadata"].get("namespace"),
            obj["metadata"]["name"],
        )
        for obj in objects
    ]


def to_yaml(objects: list[KubeObject]) -> str:
    return yaml.safe_dump_all(
        objects, sort_keys=False, default_flow_style=False, explicit_start=True, width=4096
    )


def to_json(objects: list[KubeObject]) -> str:
    # A v1 List is what `kubectl apply -f` and `kubectl diff -f` accept as one JSON document.
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2) + "\n"


# ---- BU-wide objects -------------------------------------------------------------------------


def _namespace(spec: DeploymentSpec) -> KubeObject:
    labels = bu_labels(spec)
    for mode in ("enforce", "audit", "warn"):
        labels[f"pod-security.kubernetes.io/{mode}"] = "restricted"
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": spec.namespace, "labels": labels},
    }


def _resource_quota(spec: DeploymentSpec) -> KubeObject:
    return resource_quota(spec, spec.gpu_quota)


def resource_quota(spec: DeploymentSpec, gpus: int) -> KubeObject:
    """The namespace's GPU quota at `gpus`; the reconciler lowers the shared namespace's own
    with it when a shared instance is deleted."""
    # Only `requests.` is enforced for extended resources (GPUs cannot be overcommitted, so
    # requests equal limits); a `limits.nvidia.com/gpu` entry would be tracked by nothing.
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {
            "name": RESOURCE_QUOTA_NAME,
            "namespace": spec.namespace,
            "labels": bu_labels(spec),
        },
        "spec": {"hard": {f"requests.{spec.gpu_resource}": str(gpus)}},
    }


def _default_deny_policy(spec: DeploymentSpec) -> KubeObject:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": DEFAULT_DENY_POLICY_NAME,
            "namespace": spec.namespace,
            "labels": bu_labels(spec),
        },
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }


# ---- the deployment's objects ----------------------------------------------------------------


def _metadata(spec: DeploymentSpec, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": spec.namespace, "labels": deployment_labels(spec)}


def _gateway_policy(spec: DeploymentSpec) -> KubeObject:
    # Egress is left to the cluster's own policy: vLLM needs none, but the S3 download and DNS
    # do, and clusters differ in how they allow those.
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(spec, f"{spec.name}-allow-gateway"),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(spec)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {
                                    "kubernetes.io/metadata.name": spec.gateway_namespace
                                }
                            },
                            "podSelector": {
                                "matchLabels": dict(sorted(spec.gateway_pod_labels.items()))
                            },
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": VLLM_PORT}],
                }
            ],
        },
    }


def _service(spec: DeploymentSpec) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, spec.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(spec),
            "ports": [{"name": "http", "protocol": "TCP", "port": VLLM_PORT, "targetPort": "http"}],
        },
    }


def _disruption_budget(spec: DeploymentSpec) -> KubeObject:
    # A lone replica cannot be protected without blocking every node drain, so it may go; with
    # more, drains take one at a time. Pods that are not ready never block a drain.
    budget: dict[str, Any] = (
        {"maxUnavailable": 1} if spec.replicas <= 1 else {"minAvailable": spec.replicas - 1}
    )
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(spec, spec.name),
        "spec": {
            **budget,
            "selector": {"matchLabels": selector_labels(spec)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def _deployment(spec: DeploymentSpec) -> KubeObject:
    metadata = _metadata(spec, spec.name)
    if spec.mode == "shared":
        # On the Deployment, not the pod template: changing adapters hot-loads them through
        # vLLM's runtime LoRA API instead of restarting GPU pods; the reconciler reads this to
        # restore them on every new pod.
        metadata["annotations"] = {ADAPTERS_ANNOTATION: _adapters_annotation(spec)}
    # Surging needs GPUs the BU's quota usually does not have, so GPU instances replace pods
    # one at a time; CPU instances can afford a surge and keep serving.
    rolling = (
        {"maxSurge": 1, "maxUnavailable": 0}
        if spec.cpu_only
        else {"maxSurge": 0, "maxUnavailable": 1}
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": spec.replicas,
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
            "selector": {"matchLabels": selector_labels(spec)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
            "template": {
                "metadata": {"labels": deployment_labels(spec)},
                "spec": _pod_spec(spec),
            },
        },
    }


def _adapters_annotation(spec: DeploymentSpec) -> str:
    adapters = sorted(
        ({"name": a.name, "path": _container_path(spec, a.location)} for a in spec.adapters),
        key=lambda adapter: adapter["name"],
    )
    return json.dumps(adapters, separators=(",", ":"), sort_keys=True)


def _pod_spec(spec: DeploymentSpec) -> dict[str, Any]:
    # Nothing here depends on `replicas`: scaling must never roll the pods.
    pod: dict[str, Any] = {
        # vLLM never calls the Kubernetes API; a mounted token would only be something to steal.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 60,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if spec.image.pull_secret is not None:
        pod["imagePullSecrets"] = [{"name": spec.image.pull_secret}]
    node_selector = dict(sorted(spec.node_selector.items()))
    if spec.gpu_type is not None:
        node_selector[GPU_PRODUCT_LABEL] = spec.gpu_type
    if node_selector:
        pod["nodeSelector"] = node_selector
    tolerations = _tolerations(spec)
    if tolerations:
        pod["tolerations"] = tolerations
    pod["topologySpreadConstraints"] = [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector_labels(spec)},
        }
    ]
    init_containers = _download_containers(spec)
    if init_containers:
        pod["initContainers"] = init_containers
    pod["containers"] = [_vllm_container(spec)]
    pod["volumes"] = _volumes(spec)
    return pod


def _tolerations(spec: DeploymentSpec) -> list[dict[str, Any]]:
    wanted = list(spec.tolerations)
    if not spec.cpu_only:
        # GPU nodes are commonly tainted so that only GPU workloads land on them.
        wanted.insert(0, Toleration(key=spec.gpu_resource, operator="Exists", effect="NoSchedule"))
    rendered: list[dict[str, Any]] = []
    for toleration in wanted:
        item: dict[str, Any] = {}
        if toleration.key is not None:
            item["key"] = toleration.key
        item["operator"] = toleration.operator
        if toleration.value is not None:
            item["value"] = toleration.value
        if toleration.effect is not None:
            item["effect"] = toleration.effect
        if toleration.toleration_seconds is not None:
            item["tolerationSeconds"] = toleration.toleration_seconds
        if item not in rendered:
            rendered.append(item)
    return rendered


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _claims(spec: DeploymentSpec) -> list[str]:
    locations = [spec.model.location, *(a.location for a in spec.adapters)]
    if spec.vllm.speculative_decoding is not None:
        locations.append(spec.vllm.speculative_decoding.model)
    return sorted(
        {loc.claim for loc in map(spec.resolve, locations) if isinstance(loc, VolumeLocation)}
    )


def _s3_sources(spec: DeploymentSpec) -> list[tuple[str, S3Location]]:
    sources: list[tuple[str, S3Location]] = []
    candidates = [("model", spec.model.location)]
    if spec.vllm.speculative_decoding is not None:
        candidates.append(("draft-model", spec.vllm.speculative_decoding.model))
    for role, location in candidates:
        parsed = spec.resolve(location)
        if isinstance(parsed, S3Location):
            sources.append((role, parsed))
    return sources


def _container_path(spec: DeploymentSpec, location: str) -> str:
    parsed = spec.resolve(location)
    if isinstance(parsed, S3Location):
        return f"{MODELS_ROOT}/s3/{parsed.bucket}/{parsed.key}"
    return f"{MODELS_ROOT}/pvc/{parsed.claim}/{parsed.path}"


def _vllm_args(spec: DeploymentSpec) -> list[str]:
    args = [
        "--host=0.0.0.0",
        f"--port={VLLM_PORT}",
        f"--model={_container_path(spec, spec.model.location)}",
        f"--served-model-name={spec.model.name}",
        f"--max-model-len={spec.max_model_len}",
        f"--tensor-parallel-size={spec.tensor_parallel_size}",
        # Explicit either way: vLLM's default for prefix caching has changed between releases.
        "--enable-prefix-caching"
        if spec.vllm.enable_prefix_caching
        else "--no-enable-prefix-caching",
    ]
    if spec.mode == "shared":
        args += [
            "--enable-lora",
            f"--max-loras={spec.max_loras}",
            f"--max-lora-rank={spec.max_lora_rank}",
        ]
    speculative = spec.vllm.speculative_decoding
    if speculative is not None:
        config = {
            "model": _container_path(spec, speculative.model),
            "num_speculative_tokens": speculative.num_speculative_tokens,
        }
        args.append(
            f"--speculative-config={json.dumps(config, separators=(',', ':'), sort_keys=True)}"
        )
    for flag in sorted(spec.vllm.extra_args):
        value = spec.vllm.extra_args[flag]
        if isinstance(value, bool):
            args.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            args.append(f"--{flag}={value}")
    return args


def _vllm_env(spec: DeploymentSpec) -> list[dict[str, str]]:
    env = {
        # The root filesystem is read-only: every cache vLLM, torch, Triton and Hugging Face
        # write goes under the writable cache volume.
        "HOME": CACHE_DIR,
        "XDG_CACHE_HOME": CACHE_DIR,
        "HF_HOME": f"{CACHE_DIR}/huggingface",
        "VLLM_CACHE_ROOT": f"{CACHE_DIR}/vllm",
        # On-prem: models come from the volume, never from the Hugging Face Hub, and usage
        # statistics must not leave the network.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    if spec.mode == "shared":
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    if spec.cpu_only:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(spec.cpu_kvcache_space_gib)
    return [{"name": name, "value": env[name]} for name in sorted(env)]


def _probe(path: str, period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _vllm_resources(spec: DeploymentSpec) -> dict[str, Any]:
    requests: dict[str, str] = {
        "cpu": spec.resources.requests.cpu,
        "memory": spec.resources.requests.memory,
    }
    # Memory always has a limit (the request by default): an instance that outgrows its
    # request would otherwise be the first thing the node evicts under pressure.
    limits: dict[str, str] = {"memory": spec.resources.memory_limit}
    if spec.resources.limits.cpu is not None:
        limits["cpu"] = spec.resources.limits.cpu
    if not spec.cpu_only:
        # Written in both places: the quota counts requests, the device plugin reads limits.
        requests[spec.gpu_resource] = str(spec.gpus_per_replica)
        limits[spec.gpu_resource] = str(spec.gpus_per_replica)
    return {"requests": requests, "limits": dict(sorted(limits.items()))}


def _vllm_container(spec: DeploymentSpec) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = [
        {"name": "cache", "mountPath": CACHE_DIR},
        {"name": "tmp", "mountPath": TMP_DIR},
    ]
    if not spec.cpu_only:
        mounts.append({"name": "dshm", "mountPath": SHM_DIR})
    for claim in _claims(spec):
        mounts.append(
            {"name": f"pvc-{claim}", "mountPath": f"{MODELS_ROOT}/pvc/{claim}", "readOnly": True}
        )
    if _s3_sources(spec):
        mounts.append({"name": "s3-models", "mountPath": f"{MODELS_ROOT}/s3", "readOnly": True})
    return {
        "name": "vllm",
        "image": spec.image.reference,
        "imagePullPolicy": "IfNotPresent",
        # The module entry point, as in the CPU recipe: it does not depend on how the vLLM
        # distribution inside the image is named.
        "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
        "args": _vllm_args(spec),
        "env": _vllm_env(spec),
        "ports": [{"name": "http", "containerPort": VLLM_PORT, "protocol": "TCP"}],
        "resources": _vllm_resources(spec),
        "startupProbe": _probe("/health", STARTUP_PERIOD_SECONDS, 5, STARTUP_FAILURE_THRESHOLD),
        "readinessProbe": _probe("/health", 5, 5, 3),
        "livenessProbe": _probe("/health", 15, 10, 4),
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }


def _download_containers(spec: DeploymentSpec) -> list[dict[str, Any]]:
    if spec.s3 is None:
        return []
    containers: list[dict[str, Any]] = []
    for role, source in _s3_sources(spec):
        target = f"{MODELS_ROOT}/s3/{source.bucket}/{source.key}"
        args = ["s3", "sync", "--no-progress", "--only-show-errors"]
        if spec.s3.endpoint_url is not None:
            args.append(f"--endpoint-url={spec.s3.endpoint_url}")
        args += [f"s3://{source.bucket}/{source.key}", target]
        containers.append(
            {
                "name": f"fetch-{role}",
                "image": spec.s3.downloader_image.reference,
                "imagePullPolicy": "IfNotPresent",
                "command": ["aws"],
                "args": args,
                "env": [
                    {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"},
                    {"name": "HOME", "value": TMP_DIR},
                ],
                "envFrom": [{"secretRef": {"name": spec.s3.credentials_secret}}],
                "resources": {
                    "requests": {"cpu": "1", "memory": "1Gi"},
                    "limits": {"memory": "2Gi"},
                },
                "securityContext": _container_security(),
                "volumeMounts": [
                    {"name": "s3-models", "mountPath": f"{MODELS_ROOT}/s3"},
                    {"name": "tmp", "mountPath": TMP_DIR},
                ],
            }
        )
    return containers


def _volumes(spec: DeploymentSpec) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        {"name": "cache", "emptyDir": {"sizeLimit": "20Gi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "10Gi"}},
    ]
    if not spec.cpu_only:
        # NCCL (tensor parallelism) and vLLM's worker processes exchange tensors through
        # /dev/shm; the runtime's default 64Mi is far too small.
        volumes.append(
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}
        )
    for claim in _claims(spec):
        volumes.append(
            {
                "name": f"pvc-{claim}",
                "persistentVolumeClaim": {"claimName": claim, "readOnly": True},
            }
        )
    if spec.s3 is not None and _s3_sources(spec):
        volumes.append({"name": "s3-models", "emptyDir": {"sizeLimit": spec.s3.cache_size}})
    return volumes
