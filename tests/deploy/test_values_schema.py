"""values.schema.json: every supported shape passes, every invalid values file is refused."""

from __future__ import annotations

import json
from typing import Any

import helm_python
import pytest
import yaml

from .conftest import CHART_DIR, SCENARIOS, Render, scenario_values


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_supported_scenarios_pass_the_schema(chart: helm_python.Chart, scenario: str) -> None:
    chart.validate_schema(scenario_values(scenario))


def test_defaults_file_passes_the_schema(chart: helm_python.Chart) -> None:
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    chart.validate_schema(defaults)


def test_the_schema_is_strict_everywhere() -> None:
    """Every object the schema describes refuses unknown keys (typos fail the install)."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    open_maps = {"stringMap", "labelMap", "affinity"}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, path
            for key, child in node.items():
                if path.endswith("/definitions") and key in open_maps:
                    continue
                walk(child, f"{path}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{path}/{index}")

    walk(schema, "#")


EXTERNAL_DB = {"postgresql": {"enabled": False}, "externalDatabase": {"url": "postgresql://c@db/c"}}

# Each case is a values file a user could write, and where the schema must point when it refuses it.
INVALID_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "replica count is a string": ({"gateway": {"replicaCount": "two"}}, "/gateway/replicaCount"),
    "replica count is zero": ({"platform": {"replicaCount": 0}}, "/platform/replicaCount"),
    "unknown environment": ({"cove": {"env": "staging"}}, "/cove/env"),
    "unknown log level": ({"cove": {"logLevel": "LOUD"}}, "/cove/logLevel"),
    "log json is a string": ({"cove": {"logJson": "yes"}}, "/cove/logJson"),
    "typo in a top-level key": ({"gatewy": {"replicaCount": 2}}, "'gatewy' not allowed"),
    "typo in a nested key": (
        {"gateway": {"autoscaling": {"enable": True}}},
        "'enable' not allowed",
    ),
    "beat cannot be scaled": ({"beat": {"replicaCount": 2}}, "'replicaCount' not allowed"),
    "external database without url or secret": (
        {"postgresql": {"enabled": False}},
        "/externalDatabase",
    ),
    "external database url is not postgres": (
        {
            "postgresql": {"enabled": False},
            "externalDatabase": {"url": "mysql://db/cove"},
        },
        "/externalDatabase/url",
    ),
    "external redis without url or secret": ({"redis": {"enabled": False}}, "/externalRedis"),
    "external redis url is not redis": (
        {
            "redis": {"enabled": False},
            "externalRedis": {"url": "http://redis:6379"},
        },
        "/externalRedis/url",
    ),
    "image tag latest": ({"worker": {"image": {"tag": "latest"}}}, "/worker/image/tag"),
    "vllm image tag latest": (
        {"modelServing": {"vllm": {"image": {"tag": "latest"}}}},
        "/modelServing/vllm/image/tag",
    ),
    "malformed digest": ({"gateway": {"image": {"digest": "sha256:abc"}}}, "/gateway/image/digest"),
    "digest without algorithm": (
        {"platform": {"image": {"digest": "0" * 64}}},
        "/platform/image/digest",
    ),
    "registry with a scheme": (
        {"global": {"imageRegistry": "https://registry.corp"}},
        "/global/imageRegistry",
    ),
    "pull secrets not a list": (
        {"global": {"imagePullSecrets": "corp-registry"}},
        "/global/imagePullSecrets",
    ),
    "short secret key": ({"secretKey": {"value": "too-short"}}, "/secretKey/value"),
    "oidc without issuer": (
        {"oidc": {"enabled": True, "existingSecret": "cove-oidc"}},
        "/oidc/issuerUrl",
    ),
    "reconciler token without the cluster's url": (
        {"reconciler": {"kubernetes": {"existingSecret": "gpu-cluster-token"}}},
        "/reconciler/kubernetes/apiUrl",
    ),
    "reconciler api url over plain http": (
        {"reconciler": {"kubernetes": {"apiUrl": "http://gpu-cluster.corp:6443"}}},
        "/reconciler/kubernetes/apiUrl",
    ),
    "members list without oidc": (
        {"oidc": {"members": {"enabled": True}}},
        "/oidc/enabled",
    ),
    "members list without the client secret": (
        {
            "oidc": {
                "enabled": True,
                "issuerUrl": "https://sso.corp/realms/cove",
                "members": {"enabled": True},
            }
        },
        "/oidc/existingSecret",
    ),
    "members list with an issuer that names no realm": (
        {
            "oidc": {
                "enabled": True,
                "issuerUrl": "https://sso.corp/oauth2",
                "existingSecret": "cove-oidc",
                "members": {"enabled": True},
            }
        },
        "/oidc/issuerUrl",
    ),
    "negative shared-instance gpu ceiling": (
        {"modelServing": {"sharedInstances": {"gpuQuota": -1}}},
        "/modelServing/sharedInstances/gpuQuota",
    ),
    "alert error ratio above one": (
        {"metrics": {"prometheusRule": {"errorRatio": 5}}},
        "/metrics/prometheusRule/errorRatio",
    ),
    "alert runbook url with an anchor": (
        {"metrics": {"prometheusRule": {"runbookUrl": "https://wiki.corp/cove#alerts"}}},
        "/metrics/prometheusRule/runbookUrl",
    ),
    "negative deletion grace period": (
        {"tenancy": {"deletionGraceDays": -1}},
        "/tenancy/deletionGraceDays",
    ),
    "reconciler timeout of zero": (
        {"reconciler": {"kubernetes": {"timeoutSeconds": 0}}},
        "/reconciler/kubernetes/timeoutSeconds",
    ),
    "oidc issuer is not a url": (
        {"oidc": {"enabled": True, "issuerUrl": "sso.corp/realms/cove", "existingSecret": "s"}},
        "/oidc/issuerUrl",
    ),
    "ingress without hosts": ({"ingress": {"enabled": True}}, "/ingress/console/host"),
    "ingress host with a scheme": (
        {
            "ingress": {
                "enabled": True,
                "console": {"host": "https://cove.corp"},
                "gateway": {"host": "api.cove.corp"},
            }
        },
        "/ingress/console/host",
    ),
    "autoscaling max below one": (
        {"gateway": {"autoscaling": {"maxReplicas": 0}}},
        "/gateway/autoscaling/maxReplicas",
    ),
    "cpu target above 100": (
        {"gateway": {"autoscaling": {"targetCPUUtilizationPercentage": 150}}},
        "/gateway/autoscaling/targetCPUUtilizationPercentage",
    ),
    "pdb min available is a word": (
        {"gateway": {"podDisruptionBudget": {"minAvailable": "half"}}},
        "/gateway/podDisruptionBudget/minAvailable",
    ),
    "resources without limits": (
        {"gateway": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": None}}},
        "missing property 'limits'",
    ),
    "cpu quantity is a list": (
        {
            "worker": {
                "resources": {"requests": {"cpu": ["1"], "memory": "1Gi"}, "limits": {"cpu": "1"}}
            }
        },
        "/worker/resources/requests/cpu",
    ),
    "memory quantity malformed": (
        {"worker": {"resources": {"limits": {"cpu": "1", "memory": "lots"}}}},
        "/worker/resources/limits/memory",
    ),
    "business unit with uppercase name": (
        {"tenancy": {"businessUnits": [{"name": "Payments", "gpuQuota": 1}]}},
        "/tenancy/businessUnits/0/name",
    ),
    "business unit with negative quota": (
        {"tenancy": {"businessUnits": [{"name": "payments", "gpuQuota": -1}]}},
        "/tenancy/businessUnits/0/gpuQuota",
    ),
    "business unit with fractional quota": (
        {"tenancy": {"businessUnits": [{"name": "payments", "gpuQuota": 1.5}]}},
        "/tenancy/businessUnits/0/gpuQuota",
    ),
    "business unit without name": (
        {"tenancy": {"businessUnits": [{"gpuQuota": 1}]}},
        "missing property 'name'",
    ),
    "business unit starting with a digit": (
        {"tenancy": {"businessUnits": [{"name": "1st-line"}]}},
        "/tenancy/businessUnits/0/name",
    ),
    "network policy flag is a string": (
        {"networkPolicy": {"enabled": "yes"}},
        "/networkPolicy/enabled",
    ),
    "service type unknown": (
        {"gateway": {"service": {"type": "ExternalName", "port": 8080}}},
        "/gateway/service/type",
    ),
    "service port out of range": (
        {"platform": {"service": {"type": "ClusterIP", "port": 70000}}},
        "/platform/service/port",
    ),
    "toleration with unknown effect": (
        {
            "modelServing": {
                "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "Never"}]
            }
        },
        "/modelServing/tolerations/0/effect",
    ),
    "pod runs as root": ({"podSecurityContext": {"runAsUser": 0}}, "/podSecurityContext/runAsUser"),
    "otlp endpoint without scheme": (
        {"otel": {"endpoint": "otel-collector:4318"}},
        "/otel/endpoint",
    ),
    "servicemonitor interval malformed": (
        {"metrics": {"serviceMonitor": {"enabled": True, "interval": "often"}}},
        "/metrics/serviceMonitor/interval",
    ),
    "postgres password not url safe": (
        {"postgresql": {"auth": {"password": "p@ss:word"}}},
        "/postgresql/auth/password",
    ),
    "common label value not a string": (
        {"commonLabels": {"team": {"name": "x"}}},
        "/commonLabels/team",
    ),
    "extra env without name": ({"cove": {"extraEnv": [{"value": "x"}]}}, "missing property 'name'"),
    "pull policy unknown": ({"imagePullPolicy": "Sometimes"}, "/imagePullPolicy"),
}


@pytest.mark.parametrize(("values", "where"), INVALID_VALUES.values(), ids=INVALID_VALUES.keys())
def test_the_schema_refuses_invalid_values(
    chart: helm_python.Chart, render: Render, values: dict[str, Any], where: str
) -> None:
    with pytest.raises(helm_python.HelmValuesError) as refused:
        chart.validate_schema(values)
    assert where in str(refused.value)
    # And the install refuses them before rendering anything.
    with pytest.raises(helm_python.HelmValuesError):
        render(values)


VALID_EDGES: dict[str, dict[str, Any]] = {
    "external database by url": EXTERNAL_DB,
    "external database by secret": {
        "postgresql": {"enabled": False},
        "externalDatabase": {"existingSecret": "db"},
    },
    "image by digest only": {
        "gateway": {"image": {"tag": "", "digest": "sha256:" + "a" * 64}},
    },
    "percent pdb": {"gateway": {"podDisruptionBudget": {"minAvailable": "50%"}}},
    "numeric cpu": {
        "worker": {
            "resources": {
                "requests": {"cpu": 0.5, "memory": "1Gi"},
                "limits": {"cpu": 2, "memory": "2Gi"},
            }
        }
    },
    "openshift assigns ids": {
        "podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None}
    },
}


@pytest.mark.parametrize("values", VALID_EDGES.values(), ids=VALID_EDGES.keys())
def test_the_schema_accepts_valid_edge_cases(
    chart: helm_python.Chart, render: Render, values: dict[str, Any]
) -> None:
    chart.validate_schema(values)
    assert render(values)
