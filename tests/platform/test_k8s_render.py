"""Rendered Kubernetes objects for deployment specs.

No API server can run here, so every object the reconciler would apply is validated against the
official Kubernetes 1.30 OpenAPI schemas (`kubernetes-validate`, strict: unknown fields fail),
and the rules a schema cannot express (selectors, security, GPU arithmetic) are checked directly.
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from pydantic import ValidationError

from cove.platform.deployments.k8s.render import (
    FIELD_MANAGER,
    apply_plan,
    is_deployment_scoped,
    render,
    selector_labels,
    service_url,
    to_json,
    to_yaml,
)
from cove.platform.deployments.k8s.spec import DeploymentSpec, describe_errors

K8S_VERSION = "1.30"
STABLE_SELECTOR = {"app.kubernetes.io/instance": "coder", "cove.dev/deployment": "coder"}

BASE: dict[str, Any] = {
    "bu": "payments",
    "name": "coder",
    "model": {
        "name": "qwen2.5-coder-7b",
        "location": "base/qwen2.5-coder-7b",
        "context_length": 32768,
    },
    "replicas": 1,
    "gpus_per_replica": 1,
    "gpu_quota": 8,
    "image": {"repository": "registry.internal/vllm/vllm-openai", "tag": "v0.11.0"},
}

S3 = {
    "credentials_secret": "model-store-credentials",
    "downloader_image": {
        "repository": "registry.internal/aws-cli/aws-cli",
        "digest": "sha256:" + "a" * 64,
    },
    "endpoint_url": "https://minio.storage.svc:9000",
}


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def spec_of(**overrides: Any) -> DeploymentSpec:
    return DeploymentSpec.model_validate(merged(BASE, overrides))


NAMED: dict[str, dict[str, Any]] = {
    "dedicated-1gpu": {"gpu_type": "NVIDIA-A100-SXM4-80GB", "replicas": 2},
    "dedicated-tp4": {
        "gpus_per_replica": 4,
        "replicas": 2,
        "gpu_quota": 8,
        "gpu_type": "NVIDIA-H100-80GB-HBM3",
        "vllm": {"tensor_parallel_size": 4, "max_model_len": 16384},
        "resources": {"requests": {"cpu": 16, "memory": "128Gi"}},
        "shm_size": "32Gi",
    },
    "shared-multi-lora": {
        "mode": "shared",
        "replicas": 2,
        "vllm": {"max_loras": 8, "max_lora_rank": 64, "extra_args": {"max-cpu-loras": 16}},
        "adapters": [
            {"name": "payments-sdk-v3", "location": "adapters/payments/sdk-v3"},
            {"name": "payments-sdk-v2", "location": "pvc://bu-adapters/payments/sdk-v2"},
        ],
    },
    "shared-across-bus": {
        "bu": "platform",
        "name": "coder-shared",
        "mode": "shared",
        "shared_across_bus": True,
        "replicas": 2,
        "gpu_quota": 4,
        "adapters": [
            {"name": "payments-sdk-v3", "location": "adapters/payments/sdk-v3"},
            {"name": "risk-sdk-v1", "location": "adapters/risk/sdk-v1"},
        ],
    },
    "cpu-only": {
        "gpus_per_replica": 0,
        "gpu_quota": 0,
        "vllm": {"cpu_kvcache_space_gib": 2, "extra_args": {"dtype": "float32"}},
        "resources": {"requests": {"cpu": "2", "memory": "8Gi"}},
    },
    "speculative": {
        "vllm": {
            "speculative_decoding": {
                "model": "pvc://drafts/qwen2.5-coder-0.5b",
                "num_speculative_tokens": 5,
            },
            "extra_args": {"gpu-memory-utilization": 0.9, "enforce-eager": False},
        },
    },
    "s3-model": {
        "model": {"location": "s3://models/qwen2.5-coder-7b"},
        "vllm": {
            "speculative_decoding": {
                "model": "s3://models/qwen2.5-coder-0.5b",
                "num_speculative_tokens": 3,
            }
        },
        "s3": S3,
        "image": {"pull_secret": "registry-credentials"},
        "node_selector": {"topology.kubernetes.io/zone": "dc1-a"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
            {"operator": "Exists", "effect": "NoExecute", "toleration_seconds": 300},
        ],
        "labels": {"team": "payments-core", "cost-centre": "cc-1234"},
    },
}


def _sweep() -> list[tuple[str, dict[str, Any]]]:
    """Modes x GPU counts x model sources x replica counts, with options varied along the way."""
    locations = {
        "path": ({"location": "base/starcoder2-15b"}, None),
        "pvc": ({"location": "pvc://model-cache/starcoder2-15b"}, None),
        "s3": ({"location": "s3://models/starcoder2-15b"}, S3),
    }
    cases: list[tuple[str, dict[str, Any]]] = []
    product = itertools.product(("dedicated", "shared"), (0, 1, 2, 4, 8), locations, (0, 1, 3))
    for index, (mode, gpus, source, replicas) in enumerate(product):
        model, s3 = locations[source]
        vllm: dict[str, Any] = {"enable_prefix_caching": index % 2 == 0}
        if gpus > 1:
            vllm["tensor_parallel_size"] = gpus
        if index % 3 == 0:
            vllm["speculative_decoding"] = {
                "model": "drafts/tiny-draft",
                "num_speculative_tokens": 1 + index % 8,
            }
        if mode == "shared":
            vllm["max_loras"] = 1 + index % 6
        data: dict[str, Any] = {
            "name": f"sweep-{index}",
            "mode": mode,
            "model": {"name": f"starcoder2-{index}", **model},
            "gpus_per_replica": gpus,
            "replicas": replicas,
            "gpu_quota": replicas * gpus + index % 3,
            "vllm": vllm,
            "resources": {"requests": {"memory": "64Gi"}},
        }
        if s3 is not None:
            data["s3"] = s3
        if gpus and index % 2:
            data["gpu_type"] = "NVIDIA-L40S"
        if mode == "shared" and index % 4 != 1:
            data["adapters"] = [
                {"name": f"bu-adapter-{n}", "location": f"adapters/sweep-{index}/v{n}"}
                for n in range(1 + index % 3)
            ]
        cases.append((f"{mode}-gpu{gpus}-{source}-r{replicas}", data))
    return cases


SWEEP = _sweep()
ALL_SPECS = [(name, merged(BASE, data)) for name, data in [*NAMED.items(), *SWEEP]]


def test_the_sweep_covers_at_least_thirty_distinct_combinations() -> None:
    assert len(SWEEP) >= 30
    assert len({name for name, _ in SWEEP}) == len(SWEEP)


# ---- every spec: schema-valid, secure, selectors fixed -----------------------------------------


def _pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _selectors(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Every label selector in the rendered objects that picks the instance's pods."""
    found: list[dict[str, str]] = []
    for obj in objects:
        spec = obj.get("spec", {})
        if obj["kind"] in {"Deployment", "PodDisruptionBudget"}:
            found.append(spec["selector"]["matchLabels"])
        if obj["kind"] == "Service":
            found.append(spec["selector"])
        if obj["kind"] == "NetworkPolicy" and spec["podSelector"]:
            found.append(spec["podSelector"]["matchLabels"])
        if obj["kind"] == "Deployment":
            for constraint in spec["template"]["spec"].get("topologySpreadConstraints", []):
                found.append(constraint["labelSelector"]["matchLabels"])
    return found


def assert_pod_security_restricted(pod: dict[str, Any]) -> None:
    """The Pod Security Standard "restricted" profile, which the BU namespace enforces."""
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any(pod.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))
    allowed_volumes = {"emptyDir", "persistentVolumeClaim", "configMap", "secret", "projected"}
    for volume in pod["volumes"]:
        assert set(volume) - {"name"} <= allowed_volumes, volume
    for container in _containers(pod):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["runAsNonRoot"] is True, container["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, container["name"]
        assert not context.get("privileged"), container["name"]
        assert not container.get("ports", [{}])[0].get("hostPort"), container["name"]


@pytest.mark.parametrize(("name", "data"), ALL_SPECS, ids=[name for name, _ in ALL_SPECS])
def test_every_rendered_object_is_valid_and_keeps_cove_invariants(
    name: str, data: dict[str, Any]
) -> None:
    spec = DeploymentSpec.model_validate(data)
    objects = render(spec)

    for obj in objects:
        assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True) == K8S_VERSION

    assert [o["kind"] for o in objects] == [
        "Namespace",
        "ResourceQuota",
        "NetworkPolicy",
        "NetworkPolicy",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    ]
    stable = {"app.kubernetes.io/instance": spec.name, "cove.dev/deployment": spec.name}
    for selector in _selectors(objects):
        assert selector == stable
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "cove"
        assert labels["cove.dev/bu"] == spec.bu
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == (
                "cove-shared" if spec.shared_across_bus else f"cove-bu-{spec.bu}"
            )
        if is_deployment_scoped(obj):
            assert labels["app.kubernetes.io/name"] == "vllm"
            assert labels["app.kubernetes.io/instance"] == spec.name
            assert labels["cove.dev/deployment"] == spec.name

    pod = _pod(objects)
    assert_pod_security_restricted(pod)
    for container in _containers(pod):
        image = container["image"]
        assert ":latest" not in image.lower()
        assert ":" in image.rpartition("/")[2] or "@sha256:" in image

    vllm = pod["containers"][0]
    gpu_requests = vllm["resources"]["requests"].get("nvidia.com/gpu")
    gpu_limits = vllm["resources"]["limits"].get("nvidia.com/gpu")
    if spec.gpus_per_replica == 0:
        assert gpu_requests is None
        assert gpu_limits is None
    else:
        assert gpu_requests == gpu_limits == str(spec.gpus_per_replica)
        assert f"--tensor-parallel-size={spec.gpus_per_replica}" in vllm["args"]
    (quota,) = [o for o in objects if o["kind"] == "ResourceQuota"]
    assert quota["spec"]["hard"] == {"requests.nvidia.com/gpu": str(spec.gpu_quota)}
    assert spec.replicas * spec.gpus_per_replica <= int(
        quota["spec"]["hard"]["requests.nvidia.com/gpu"]
    )

    assert to_yaml(render(DeploymentSpec.model_validate(copy.deepcopy(data)))) == to_yaml(objects)
    assert list(yaml.safe_load_all(to_yaml(objects))) == objects


# ---- the named shapes, object by object ----------------------------------------------------------


def test_dedicated_single_gpu_instance() -> None:
    objects = render(spec_of(**NAMED["dedicated-1gpu"]))
    pod = _pod(objects)
    vllm = pod["containers"][0]

    assert vllm["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert vllm["args"] == [
        "--host=0.0.0.0",
        "--port=8000",
        "--model=/models/pvc/cove-models/base/qwen2.5-coder-7b",
        "--served-model-name=qwen2.5-coder-7b",
        "--max-model-len=32768",
        "--tensor-parallel-size=1",
        "--enable-prefix-caching",
    ]
    assert vllm["resources"] == {
        "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "1"},
        "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"},
    }
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    env = {e["name"]: e["value"] for e in vllm["env"]}
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in env
    assert "VLLM_CPU_KVCACHE_SPACE" not in env
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_NO_USAGE_STATS"] == "1"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert vllm[probe]["httpGet"] == {"path": "/health", "port": "http"}
    # Thirty minutes to load a model before liveness may restart the pod.
    startup = vllm["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1800
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["progressDeadlineSeconds"] > 1800
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert "annotations" not in deployment["metadata"]
    assert pod["automountServiceAccountToken"] is False
    mounts = {m["mountPath"]: m for m in vllm["volumeMounts"]}
    assert mounts["/models/pvc/cove-models"]["readOnly"] is True
    assert {"/cache", "/tmp", "/dev/shm"} <= set(mounts)


def test_tensor_parallel_instance_gets_all_its_gpus_and_shared_memory() -> None:
    objects = render(spec_of(**NAMED["dedicated-tp4"]))
    pod = _pod(objects)
    vllm = pod["containers"][0]

    assert "--tensor-parallel-size=4" in vllm["args"]
    assert "--max-model-len=16384" in vllm["args"]
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert vllm["resources"]["requests"]["nvidia.com/gpu"] == "4"
    (dshm,) = [v for v in pod["volumes"] if v["name"] == "dshm"]
    assert dshm["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in vllm["volumeMounts"]
    (quota,) = [o for o in objects if o["kind"] == "ResourceQuota"]
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == "8"


def test_shared_instance_serves_lora_adapters_hot_loaded_at_runtime() -> None:
    objects = render(spec_of(**NAMED["shared-multi-lora"]))
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = _pod(objects)
    vllm = pod["containers"][0]

    assert vllm["args"][-4:] == [
        "--enable-lora",
        "--max-loras=8",
        "--max-lora-rank=64",
        "--max-cpu-loras=16",
    ]
    env = {e["name"]: e["value"] for e in vllm["env"]}
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    adapters = json.loads(deployment["metadata"]["annotations"]["cove.dev/adapters"])
    assert adapters == [
        {"name": "payments-sdk-v2", "path": "/models/pvc/bu-adapters/payments/sdk-v2"},
        {"name": "payments-sdk-v3", "path": "/models/pvc/cove-models/adapters/payments/sdk-v3"},
    ]
    # Adapters are not part of the pod template: changing them must not restart GPU pods.
    assert "annotations" not in deployment["spec"]["template"]["metadata"]
    assert "payments-sdk" not in json.dumps(pod)
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"bu-adapters", "cove-models"}


def test_a_base_instance_shared_across_bus_lives_in_the_platforms_namespace() -> None:
    objects = render(spec_of(**NAMED["shared-across-bus"]))
    assert {o["metadata"].get("namespace", o["metadata"]["name"]) for o in objects} == {
        "cove-shared"
    }
    (quota,) = [o for o in objects if o["kind"] == "ResourceQuota"]
    assert quota["spec"]["hard"] == {"requests.nvidia.com/gpu": "4"}
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    adapters = json.loads(deployment["metadata"]["annotations"]["cove.dev/adapters"])
    assert [a["name"] for a in adapters] == ["payments-sdk-v3", "risk-sdk-v1"]
    # A BU that happens to be called "platform" keeps its own namespace.
    own = render(spec_of(bu="platform", mode="shared"))
    assert {o["metadata"].get("namespace") for o in own if o["kind"] != "Namespace"} == {
        "cove-bu-platform"
    }
    with pytest.raises(ValidationError, match="shared_across_bus"):
        spec_of(shared_across_bus=True)


def test_adapter_changes_on_mounted_claims_do_not_touch_the_pod_template() -> None:
    shared = NAMED["shared-multi-lora"]
    promoted = [
        {"name": "payments-sdk-v4", "location": "adapters/payments/sdk-v4"},
        {"name": "payments-sdk-v3", "location": "pvc://bu-adapters/payments/sdk-v3"},
        {"name": "payments-sdk-v2", "location": "pvc://bu-adapters/payments/sdk-v2"},
    ]
    before = render(spec_of(**shared))
    after = render(spec_of(**{**shared, "adapters": promoted}))
    assert _pod(before) == _pod(after)
    assert before[4]["metadata"]["annotations"] != after[4]["metadata"]["annotations"]


def test_cpu_only_instance_has_no_gpu_and_sizes_its_kv_cache() -> None:
    objects = render(spec_of(**NAMED["cpu-only"]))
    pod = _pod(objects)
    vllm = pod["containers"][0]

    assert "nvidia.com/gpu" not in json.dumps(vllm["resources"])
    assert "nodeSelector" not in pod
    assert "tolerations" not in pod
    assert all(v["name"] != "dshm" for v in pod["volumes"])
    env = {e["name"]: e["value"] for e in vllm["env"]}
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert "--dtype=float32" in vllm["args"]
    assert "--tensor-parallel-size=1" in vllm["args"]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    (quota,) = [o for o in objects if o["kind"] == "ResourceQuota"]
    assert quota["spec"]["hard"] == {"requests.nvidia.com/gpu": "0"}


def test_speculative_decoding_passes_the_draft_model_as_json() -> None:
    vllm = _pod(render(spec_of(**NAMED["speculative"])))["containers"][0]
    (config,) = [a for a in vllm["args"] if a.startswith("--speculative-config=")]
    assert json.loads(config.removeprefix("--speculative-config=")) == {
        "model": "/models/pvc/drafts/qwen2.5-coder-0.5b",
        "num_speculative_tokens": 5,
    }
    assert "--gpu-memory-utilization=0.9" in vllm["args"]
    assert "--no-enforce-eager" in vllm["args"]
    mounts = {m["mountPath"] for m in vllm["volumeMounts"]}
    assert "/models/pvc/drafts" in mounts


def test_s3_models_are_copied_by_init_containers_into_a_local_volume() -> None:
    objects = render(spec_of(**NAMED["s3-model"]))
    pod = _pod(objects)
    vllm = pod["containers"][0]

    assert [c["name"] for c in pod["initContainers"]] == ["fetch-model", "fetch-draft-model"]
    fetch = pod["initContainers"][0]
    assert fetch["command"] == ["aws"]
    assert fetch["args"] == [
        "s3",
        "sync",
        "--no-progress",
        "--only-show-errors",
        "--endpoint-url=https://minio.storage.svc:9000",
        "s3://models/qwen2.5-coder-7b",
        "/models/s3/models/qwen2.5-coder-7b",
    ]
    assert fetch["envFrom"] == [{"secretRef": {"name": "model-store-credentials"}}]
    assert fetch["image"] == "registry.internal/aws-cli/aws-cli@sha256:" + "a" * 64
    assert "--model=/models/s3/models/qwen2.5-coder-7b" in vllm["args"]
    assert {"name": "s3-models", "mountPath": "/models/s3", "readOnly": True} in vllm[
        "volumeMounts"
    ]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "s3-models"]
    assert volume["emptyDir"] == {"sizeLimit": "200Gi"}
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["nodeSelector"] == {"topology.kubernetes.io/zone": "dc1-a"}
    assert pod["tolerations"][1:] == [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    ]


def test_network_policies_deny_everything_but_the_gateway_on_the_model_port() -> None:
    objects = render(spec_of(gateway_namespace="cove-system"))
    deny, allow = [o for o in objects if o["kind"] == "NetworkPolicy"]

    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert allow["spec"]["podSelector"] == {"matchLabels": STABLE_SELECTOR}
    assert allow["spec"]["policyTypes"] == ["Ingress"]
    assert allow["spec"]["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "cove-system"}
                    },
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/component": "gateway",
                            "app.kubernetes.io/name": "cove",
                        }
                    },
                }
            ],
            "ports": [{"protocol": "TCP", "port": 8000}],
        }
    ]


def test_namespace_enforces_the_restricted_pod_security_standard() -> None:
    namespace = render(spec_of())[0]
    assert namespace["metadata"]["name"] == "cove-bu-payments"
    for mode in ("enforce", "audit", "warn"):
        assert namespace["metadata"]["labels"][f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_service_exposes_port_8000_inside_the_cluster_only() -> None:
    spec = spec_of()
    (service,) = [o for o in render(spec) if o["kind"] == "Service"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 8000, "targetPort": "http"}
    ]
    assert service_url(spec) == "http://coder.cove-bu-payments.svc:8000"


@pytest.mark.parametrize(
    ("replicas", "budget"),
    [
        (0, {"maxUnavailable": 1}),
        (1, {"maxUnavailable": 1}),
        (2, {"minAvailable": 1}),
        (5, {"minAvailable": 4}),
    ],
)
def test_disruption_budget_never_blocks_drains_of_a_single_replica(
    replicas: int, budget: dict[str, int]
) -> None:
    (pdb,) = [o for o in render(spec_of(replicas=replicas)) if o["kind"] == "PodDisruptionBudget"]
    assert {
        k: v for k, v in pdb["spec"].items() if k in {"maxUnavailable", "minAvailable"}
    } == budget
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_scaling_changes_replicas_but_never_the_pod_template() -> None:
    one, three = render(spec_of(replicas=1)), render(spec_of(replicas=3))
    assert _pod(one) == _pod(three)
    assert one[4]["spec"]["replicas"] == 1
    assert three[4]["spec"]["replicas"] == 3


def test_deployments_of_one_bu_render_the_same_bu_wide_objects() -> None:
    first = render(spec_of())
    second = render(
        spec_of(name="completions", model={"name": "starcoder2-3b"}, gpu_type="NVIDIA-L4")
    )
    shared_first = [o for o in first if not is_deployment_scoped(o)]
    shared_second = [o for o in second if not is_deployment_scoped(o)]
    assert [o["kind"] for o in shared_first] == ["Namespace", "ResourceQuota", "NetworkPolicy"]
    assert to_yaml(shared_first) == to_yaml(shared_second)


def test_apply_plan_lists_each_object_in_apply_order() -> None:
    assert FIELD_MANAGER == "cove-reconciler"
    assert apply_plan(render(spec_of())) == [
        ("v1", "Namespace", None, "cove-bu-payments"),
        ("v1", "ResourceQuota", "cove-bu-payments", "cove-gpu-quota"),
        ("networking.k8s.io/v1", "NetworkPolicy", "cove-bu-payments", "default-deny-ingress"),
        ("networking.k8s.io/v1", "NetworkPolicy", "cove-bu-payments", "coder-allow-gateway"),
        ("apps/v1", "Deployment", "cove-bu-payments", "coder"),
        ("v1", "Service", "cove-bu-payments", "coder"),
        ("policy/v1", "PodDisruptionBudget", "cove-bu-payments", "coder"),
    ]


def test_the_same_spec_written_in_another_order_renders_byte_identical_yaml() -> None:
    data = merged(BASE, NAMED["s3-model"])
    data["vllm"]["extra_args"] = {"seed": 7, "dtype": "bfloat16", "max-num-seqs": 128}
    shuffled = {key: data[key] for key in reversed(list(data))}
    shuffled["labels"] = dict(reversed(list(data["labels"].items())))
    shuffled["node_selector"] = {"b.example.com/rack": "r1", **data["node_selector"]}
    data["node_selector"] = {**data["node_selector"], "b.example.com/rack": "r1"}
    shuffled["vllm"] = {
        **data["vllm"],
        "extra_args": dict(reversed(list(data["vllm"]["extra_args"].items()))),
    }

    first = to_yaml(render(DeploymentSpec.model_validate(data)))
    second = to_yaml(render(DeploymentSpec.model_validate(shuffled)))
    assert first == second
    assert to_json(render(DeploymentSpec.model_validate(data))) == to_json(
        render(DeploymentSpec.model_validate(shuffled))
    )


# ---- labels never reach selectors ----------------------------------------------------------------

HOSTILE_LABELS = {
    "app.kubernetes.io/instance": "someone-elses-model",
    "cove.dev/deployment": "other",
    "app.kubernetes.io/managed-by": "Helm",
    "team": "payments-core",
}


def test_user_labels_that_claim_coves_keys_are_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        spec_of(labels=HOSTILE_LABELS)
    message = "\n".join(describe_errors([dict(e) for e in caught.value.errors()]))
    assert (
        "labels: app.kubernetes.io/instance, app.kubernetes.io/managed-by, cove.dev/deployment"
        in message
    )
    assert "reserved" in message


def test_render_keeps_selectors_and_coves_labels_even_if_validation_was_bypassed() -> None:
    # `model_copy(update=...)` skips validation: render itself must still never let a user
    # label into a selector or over one of Cove's own labels.
    spec = spec_of(labels={"team": "payments-core"}).model_copy(update={"labels": HOSTILE_LABELS})
    objects = render(spec)

    for selector in _selectors(objects):
        assert selector == STABLE_SELECTOR
    assert selector_labels(spec) == STABLE_SELECTOR
    for obj in objects:
        if is_deployment_scoped(obj):
            labels = obj["metadata"]["labels"]
            assert labels["app.kubernetes.io/instance"] == "coder"
            assert labels["cove.dev/deployment"] == "coder"
            assert labels["app.kubernetes.io/managed-by"] == "cove"
            assert labels["team"] == "payments-core"
    template_labels = _pod_template_labels(objects)
    assert template_labels["app.kubernetes.io/instance"] == "coder"
    assert template_labels["team"] == "payments-core"


def _pod_template_labels(objects: list[dict[str, Any]]) -> dict[str, str]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


# ---- bad specs -----------------------------------------------------------------------------------

BAD_SPECS: list[tuple[str, dict[str, Any], str]] = [
    (
        "tensor-parallel-not-gpus",
        {"gpus_per_replica": 4, "vllm": {"tensor_parallel_size": 2}},
        "vllm.tensor_parallel_size (2) must equal gpus_per_replica (4)",
    ),
    (
        "tensor-parallel-on-one-gpu",
        {"vllm": {"tensor_parallel_size": 4}},
        "vllm.tensor_parallel_size (4) must equal gpus_per_replica (1)",
    ),
    ("negative-replicas", {"replicas": -1}, "replicas: Input should be greater than or equal to 0"),
    ("too-many-replicas", {"replicas": 65}, "replicas: Input should be less than or equal to 64"),
    (
        "nine-gpus",
        {"gpus_per_replica": 9},
        "gpus_per_replica: Input should be less than or equal to 8",
    ),
    ("latest-image", {"image": {"tag": "latest"}}, "image: tag 'latest' is refused"),
    ("latest-image-uppercase", {"image": {"tag": "LATEST"}}, "image: tag 'latest' is refused"),
    (
        "unpinned-image",
        {"image": {"repository": "registry.internal/vllm/vllm-openai", "tag": None}},
        "image: give a tag or a digest",
    ),
    (
        "unknown-extra-arg",
        {"vllm": {"extra_args": {"trust-remote-code": True}}},
        "vllm.extra_args: 'trust-remote-code' is not an allowed vLLM flag",
    ),
    (
        "extra-arg-owned-by-cove",
        {"vllm": {"extra_args": {"max-model-len": 4096}}},
        "'max-model-len' is set by Cove; use vllm.max_model_len",
    ),
    (
        "extra-arg-with-dashes",
        {"vllm": {"extra_args": {"--dtype": "half"}}},
        "'--dtype': write the flag without leading dashes",
    ),
    (
        "extra-arg-out-of-range",
        {"vllm": {"extra_args": {"gpu-memory-utilization": 1.5}}},
        "'gpu-memory-utilization': must be between 0.05 and 1",
    ),
    (
        "extra-arg-bad-choice",
        {"vllm": {"extra_args": {"dtype": "int3"}}},
        "'dtype': must be one of auto, bfloat16",
    ),
    ("uppercase-bu", {"bu": "Payments"}, "bu: 'Payments' is not a BU slug"),
    ("bu-too-long-for-a-namespace", {"bu": "a" * 56}, "is not a BU slug"),
    ("bu-ending-in-dash", {"bu": "payments-"}, "is not a BU slug"),
    ("uppercase-name", {"name": "Coder"}, "name: 'Coder' is not a deployment name"),
    (
        "adapters-in-dedicated-mode",
        {"adapters": [{"name": "sdk", "location": "adapters/sdk"}]},
        "adapters: only a shared (multi-LoRA) deployment serves adapters; set mode: shared",
    ),
    (
        "lora-options-in-dedicated-mode",
        {"vllm": {"max_loras": 2}},
        "vllm.max_loras applies only to mode: shared",
    ),
    (
        "adapter-from-s3",
        {
            "mode": "shared",
            "s3": S3,
            "adapters": [{"name": "sdk", "location": "s3://adapters/sdk"}],
        },
        "adapters.0.location: adapters are hot-loaded from a mounted volume",
    ),
    (
        "duplicate-adapters",
        {
            "mode": "shared",
            "adapters": [{"name": "sdk", "location": "a/1"}, {"name": "sdk", "location": "a/2"}],
        },
        "adapters: duplicate names sdk",
    ),
    (
        "adapter-named-like-the-base",
        {"mode": "shared", "adapters": [{"name": "qwen2.5-coder-7b", "location": "a/1"}]},
        "'qwen2.5-coder-7b' is already the base model's name",
    ),
    (
        "rank-vllm-does-not-offer",
        {"mode": "shared", "vllm": {"max_lora_rank": 12}},
        "vllm.max_lora_rank",
    ),
    (
        "cpu-loras-below-max-loras",
        {"mode": "shared", "vllm": {"max_loras": 8, "extra_args": {"max-cpu-loras": 4}}},
        "max-cpu-loras (4) must be at least max_loras (8)",
    ),
    (
        "s3-without-settings",
        {"model": {"location": "s3://models/qwen"}},
        "s3: required by the s3:// location of model.location",
    ),
    (
        "absolute-path",
        {"model": {"location": "/mnt/models/qwen"}},
        "give a path relative to the model volume",
    ),
    ("path-escape", {"model": {"location": "base/../../etc"}}, "is not a clean relative path"),
    (
        "other-scheme",
        {"model": {"location": "https://hub/qwen"}},
        "only s3:// and pvc:// locations",
    ),
    (
        "pvc-without-path",
        {"model": {"location": "pvc://models"}},
        "give the model's path inside the claim",
    ),
    (
        "max-model-len-over-context",
        {"vllm": {"max_model_len": 65536}},
        "vllm.max_model_len (65536) exceeds model.context_length (32768)",
    ),
    (
        "over-the-gpu-quota",
        {"replicas": 3, "gpus_per_replica": 4, "gpu_quota": 8},
        "replicas x gpus_per_replica = 3 x 4 = 12 GPUs, over the BU's gpu_quota of 8",
    ),
    (
        "gpu-type-on-cpu",
        {"gpus_per_replica": 0, "gpu_type": "NVIDIA-L4"},
        "gpu_type: a CPU-only deployment",
    ),
    (
        "cpu-kv-cache-on-gpu",
        {"vllm": {"cpu_kvcache_space_gib": 4}},
        "vllm.cpu_kvcache_space_gib applies only to CPU-only deployments",
    ),
    (
        "cpu-kv-cache-over-memory",
        {"gpus_per_replica": 0, "vllm": {"cpu_kvcache_space_gib": 64}},
        "vllm.cpu_kvcache_space_gib (64 GiB) must fit in the memory limit (32Gi)",
    ),
    ("shm-over-memory", {"shm_size": "32Gi"}, "shm_size (32Gi) is memory-backed"),
    ("unknown-field", {"replica": 2}, "replica: Extra inputs are not permitted"),
    (
        "unknown-nested-field",
        {"model": {"path": "x"}},
        "model.path: Extra inputs are not permitted",
    ),
    (
        "gpu-product-in-node-selector",
        {"node_selector": {"nvidia.com/gpu.product": "NVIDIA-L4"}},
        "node_selector: set nvidia.com/gpu.product through gpu_type",
    ),
    (
        "limits-below-requests",
        {"resources": {"limits": {"memory": "16Gi"}}},
        "limits.memory (16Gi) is below requests.memory (32Gi)",
    ),
    (
        "bad-quantity",
        {"resources": {"requests": {"cpu": "four"}}},
        "'four' is not a Kubernetes quantity",
    ),
    (
        "toleration-exists-with-value",
        {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]},
        "operator Exists takes no value",
    ),
    ("bad-label-value", {"labels": {"team": "payments core"}}, "label value 'payments core'"),
    ("bad-label-key", {"labels": {"-team": "x"}}, "label key '-team'"),
    ("no-gateway-labels", {"gateway_pod_labels": {}}, "gateway_pod_labels"),
    ("bad-gateway-namespace", {"gateway_namespace": "Cove_System"}, "is not a DNS label"),
    (
        "zero-speculative-tokens",
        {"vllm": {"speculative_decoding": {"model": "d/x", "num_speculative_tokens": 0}}},
        "num_speculative_tokens",
    ),
]


@pytest.mark.parametrize(
    ("case", "overrides", "expected"), BAD_SPECS, ids=[c for c, _, _ in BAD_SPECS]
)
def test_bad_specs_are_rejected_with_a_message_naming_the_field(
    case: str, overrides: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        spec_of(**overrides)
    lines = describe_errors([dict(e) for e in caught.value.errors()])
    assert any(expected in line for line in lines), lines


def test_every_problem_of_a_spec_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        spec_of(
            gpus_per_replica=4,
            replicas=3,
            vllm={"tensor_parallel_size": 2},
            adapters=[{"name": "sdk", "location": "a/sdk"}],
        )
    lines = describe_errors([dict(e) for e in caught.value.errors()])
    assert len(lines) == 3
    assert lines[0].startswith("vllm.tensor_parallel_size (2)")
    assert lines[1].startswith("replicas x gpus_per_replica = 3 x 4 = 12 GPUs")
    assert lines[2].startswith("adapters: only a shared")
