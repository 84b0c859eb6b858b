"""The Helm chart rendered by the real Helm engine: lint, schemas and the invariants it promises."""

from __future__ import annotations

import base64
import copy
import re
from typing import Any

import helm_python
import kubernetes_validate
import pytest
from helm_python import HelmRenderError

from cove.platform.deployments.k8s.spec import SHARED_NAMESPACE

from .conftest import (
    CHART_DIR,
    KUBE_VERSION,
    NAMESPACE,
    SCENARIOS,
    Manifest,
    Render,
    containers,
    env_value,
    find,
    one,
    pod_specs,
    scenario_values,
)

# --------------------------------------------------------------------------------------------
# Lint and Kubernetes schemas
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_is_clean(scenario: str) -> None:
    report = helm_python.lint(
        CHART_DIR,
        scenario_values(scenario) or None,
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{KUBE_VERSION}",
    )
    assert report["errors"] == []
    # Only informational messages (severity 1) are accepted, e.g. "icon is recommended".
    assert [m for m in report["messages"] if m["severity"] != 1] == []


def _validate(obj: Manifest) -> None:
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def _validate_service_monitor(obj: Manifest) -> None:
    # A CRD of the Prometheus Operator: no official schema, so check the fields it needs.
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    spec = obj["spec"]
    assert spec["selector"]["matchLabels"]
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
        assert re.fullmatch(r"[0-9]+(ms|s|m|h)", endpoint["interval"])


def _validate_prometheus_rule(obj: Manifest) -> None:
    # Also a Prometheus Operator CRD; tests/deploy/test_alerts.py parses the expressions.
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    for group in obj["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert isinstance(rule["expr"], str)
            assert all(isinstance(v, str) for v in rule["annotations"].values())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_validates_against_kubernetes(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]]
) -> None:
    objects = rendered_scenarios[scenario]
    assert len(objects) > 15
    for obj in objects:
        if obj["kind"] == "ServiceMonitor":
            _validate_service_monitor(obj)
        elif obj["kind"] == "PrometheusRule":
            _validate_prometheus_rule(obj)
        else:
            _validate(obj)


def test_the_validator_rejects_broken_objects(
    rendered_scenarios: dict[str, list[Manifest]],
) -> None:
    deployment = copy.deepcopy(one(rendered_scenarios["defaults"], "Deployment", "cove-gateway"))
    _validate(deployment)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["revisionHistoryLimit"] = "five"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(wrong_type)
    unknown_field = copy.deepcopy(deployment)
    unknown_field["spec"]["template"]["spec"]["containers"][0]["imagePolicy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(unknown_field)


def test_notes_render_for_every_scenario(chart: helm_python.Chart) -> None:
    for scenario in SCENARIOS:
        rendered = chart.render(scenario_values(scenario), name="cove", namespace=NAMESPACE)
        notes = rendered["cove/templates/NOTES.txt"]
        assert "helm test cove -n cove" in notes
        units = scenario_values(scenario).get("tenancy", {}).get("businessUnits", [])
        # Without business units the reconciler holds no rights: the install must say so.
        assert ("tenancy.businessUnits is empty" in notes) == (not units), scenario
        for unit in units:
            assert f"cove-bu-{unit['name']}" in notes


# --------------------------------------------------------------------------------------------
# Selectors
# --------------------------------------------------------------------------------------------


def _selectors(objects: list[Manifest]) -> dict[str, Any]:
    """Every label selector of a render, keyed by object and field."""
    found: dict[str, Any] = {}
    for o in objects:
        key = f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"
        spec = o.get("spec", {})
        if o["kind"] in {"Deployment", "StatefulSet", "PodDisruptionBudget", "ServiceMonitor"}:
            found[f"{key}.selector"] = spec["selector"]
        if o["kind"] == "Service":
            found[f"{key}.selector"] = spec["selector"]
        if o["kind"] == "NetworkPolicy":
            found[f"{key}.podSelector"] = spec["podSelector"]
            found[f"{key}.ingress"] = spec.get("ingress")
            found[f"{key}.egress"] = spec.get("egress")
        if o["kind"] in {"Deployment", "StatefulSet"}:
            pod = spec["template"]["spec"]
            found[f"{key}.spread"] = pod.get("topologySpreadConstraints")
    return found


USER_LABELS = {
    "cost-center": "cc-1234",
    "team": "payments-platform",
    # Attempts to take over the chart's own keys: they must neither win nor reach a selector.
    "app.kubernetes.io/name": "hijacked",
    "app.kubernetes.io/instance": "hijacked",
    "app.kubernetes.io/component": "hijacked",
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_selectors_do_not_change_with_user_labels(scenario: str, render: Render) -> None:
    values = scenario_values(scenario)
    plain = render(values)
    labelled = render({**values, "commonLabels": USER_LABELS})

    assert _selectors(labelled) == _selectors(plain)
    selectors_text = repr(_selectors(labelled))
    assert "hijacked" not in selectors_text
    assert "cc-1234" not in selectors_text

    gateway = one(labelled, "Deployment", "cove-gateway")
    labels = gateway["metadata"]["labels"]
    assert labels["cost-center"] == "cc-1234"
    assert labels["app.kubernetes.io/name"] == "cove"
    assert labels["app.kubernetes.io/component"] == "gateway"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pods_match_their_selectors(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]]
) -> None:
    objects = rendered_scenarios[scenario]
    for o in objects:
        if o["kind"] in {"Deployment", "StatefulSet"}:
            selector = o["spec"]["selector"]["matchLabels"]
            pod_labels = o["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= pod_labels.items(), o["metadata"]["name"]
    workloads = [o for o in objects if o["kind"] in {"Deployment", "StatefulSet"}]
    for service in find(objects, "Service"):
        selector = service["spec"]["selector"]
        matched = [
            w
            for w in workloads
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matched) == 1, service["metadata"]["name"]


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------

IMAGE_REF = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9.:/_-]*?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def _all_image_refs(objects: list[Manifest]) -> list[str]:
    refs = []
    for _, spec in pod_specs(objects):
        for container in containers(spec):
            refs.append(container["image"])
            # Images the reconciler will start in the BU namespaces.
            for name in ("COVE_VLLM_IMAGE", "COVE_TRAINER_IMAGE"):
                entry = env_value(container, name)
                if entry is not None:
                    refs.append(entry["value"])
    return refs


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_images_are_pinned(scenario: str, rendered_scenarios: dict[str, list[Manifest]]) -> None:
    refs = _all_image_refs(rendered_scenarios[scenario])
    assert any("vllm" in r for r in refs)
    assert any("trainer" in r for r in refs)
    for ref in refs:
        match = IMAGE_REF.match(ref)
        assert match, f"unparseable image reference {ref}"
        assert match["tag"] or match["digest"], f"{ref} has neither a tag nor a digest"
        assert match["tag"] != "latest", ref
        assert "latest" not in ref


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_model_instances_run_the_vllm_release_the_tests_run(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]]
) -> None:
    """The rendered vLLM command line is checked against this release's own parser
    (tests/platform/test_k8s_vllm_args.py); the image must be that release."""
    from cove.platform.local.stack import VLLM_VERSION

    worker = one(rendered_scenarios[scenario], "Deployment", "cove-worker")
    image = env_value(worker["spec"]["template"]["spec"]["containers"][0], "COVE_VLLM_IMAGE")
    assert image is not None
    match = IMAGE_REF.match(image["value"])
    assert match, image
    assert match["tag"] == f"v{VLLM_VERSION}", image["value"]


def test_airgapped_images_come_from_the_mirror_by_digest(
    rendered_scenarios: dict[str, list[Manifest]],
) -> None:
    mirror = scenario_values("airgapped")["global"]["imageRegistry"]
    refs = _all_image_refs(rendered_scenarios["airgapped"])
    assert len(refs) >= 8
    for ref in refs:
        assert ref.startswith(mirror + "/"), ref
        assert re.search(r"@sha256:[a-f0-9]{64}$", ref), ref
    for _, spec in pod_specs(rendered_scenarios["airgapped"]):
        assert spec["imagePullSecrets"] == [{"name": "corp-registry"}]


def test_cove_images_default_to_the_app_version(
    rendered_scenarios: dict[str, list[Manifest]],
) -> None:
    gateway = one(rendered_scenarios["defaults"], "Deployment", "cove-gateway")
    image = gateway["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith("/cove-gateway:0.1.0")


def test_a_latest_tag_is_refused(chart: helm_python.Chart, render: Render) -> None:
    values = {"gateway": {"image": {"tag": "latest"}}}
    with pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(values)
    with pytest.raises((helm_python.HelmValuesError, HelmRenderError)):
        render(values)


# --------------------------------------------------------------------------------------------
# Security contexts, resources, probes, tokens
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_container_is_locked_down(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]]
) -> None:
    specs = list(pod_specs(rendered_scenarios[scenario]))
    assert len(specs) >= 6
    for obj, spec in specs:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        pod_context = spec["securityContext"]
        assert pod_context["runAsNonRoot"] is True, where
        assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod_context.get("runAsUser", 1) != 0, where
        assert not spec.get("hostNetwork"), where
        assert not spec.get("hostPID"), where
        for container in containers(spec):
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["privileged"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= resources[bound].keys(), where


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_servers_have_probes(scenario: str, rendered_scenarios: dict[str, list[Manifest]]) -> None:
    objects = rendered_scenarios[scenario]
    servers = [
        o
        for o in objects
        if o["kind"] in {"Deployment", "StatefulSet"}
        and o["metadata"]["labels"]["app.kubernetes.io/component"]
        in {"gateway", "platform", "postgresql", "redis"}
    ]
    assert len(servers) >= 2
    for server in servers:
        for container in server["spec"]["template"]["spec"]["containers"]:
            assert "readinessProbe" in container, server["metadata"]["name"]
            assert "livenessProbe" in container, server["metadata"]["name"]


def test_health_probes_use_the_documented_endpoints(
    rendered_scenarios: dict[str, list[Manifest]],
) -> None:
    objects = rendered_scenarios["defaults"]
    gateway = one(objects, "Deployment", "cove-gateway")["spec"]["template"]["spec"]
    platform = one(objects, "Deployment", "cove-platform")["spec"]["template"]["spec"]
    assert gateway["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert platform["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert platform["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_only_the_reconciler_gets_an_api_token(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]]
) -> None:
    for obj, spec in pod_specs(rendered_scenarios[scenario]):
        if obj["metadata"]["name"] == "cove-worker":
            assert spec["automountServiceAccountToken"] is True
            assert spec["serviceAccountName"] == "cove-reconciler"
        else:
            assert spec["automountServiceAccountToken"] is False, obj["metadata"]["name"]
    for account in find(rendered_scenarios[scenario], "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


# --------------------------------------------------------------------------------------------
# Processes, hooks and replicas
# --------------------------------------------------------------------------------------------

COMMANDS = {
    "cove-gateway": "uvicorn --factory cove.gateway.app:main_app --host 0.0.0.0 --port 8080"
    " --timeout-keep-alive 75",
    "cove-platform": "uvicorn --factory cove.platform.api.app:main_app --host 0.0.0.0 --port 8000"
    " --timeout-keep-alive 75",
    "cove-worker": "celery -A cove.platform.worker worker --loglevel INFO",
    "cove-beat": "celery -A cove.platform.worker beat --loglevel INFO",
    "cove-migrations": "cove db migrate",
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_processes_run_the_documented_commands(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]]
) -> None:
    seen = {}
    for obj, spec in pod_specs(rendered_scenarios[scenario]):
        if obj["metadata"]["name"] in COMMANDS:
            seen[obj["metadata"]["name"]] = " ".join(spec["containers"][0]["command"])
    assert seen == COMMANDS


def test_migrations_use_the_platform_image(rendered_scenarios: dict[str, list[Manifest]]) -> None:
    objects = rendered_scenarios["defaults"]
    job = one(objects, "Job", "cove-migrations")["spec"]["template"]["spec"]
    platform = one(objects, "Deployment", "cove-platform")["spec"]["template"]["spec"]
    assert job["containers"][0]["image"] == platform["containers"][0]["image"]
    assert env_value(job["containers"][0], "COVE_DATABASE_URL") is not None


@pytest.mark.parametrize("scenario", ["external-services", "ha"])
def test_migrations_run_before_install_and_upgrade_with_an_external_database(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]]
) -> None:
    annotations = one(rendered_scenarios[scenario], "Job", "cove-migrations")["metadata"][
        "annotations"
    ]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    assert "hook-failed" not in annotations["helm.sh/hook-delete-policy"]


@pytest.mark.parametrize("scenario", ["defaults", "minimal", "airgapped"])
def test_migrations_with_bundled_postgres_run_after_install_and_before_upgrade(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]]
) -> None:
    # The bundled Postgres is part of the release: before install it does not exist yet.
    objects = rendered_scenarios[scenario]
    job = one(objects, "Job", "cove-migrations")
    secret = one(objects, "Secret", "cove")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    # Within pre-upgrade, the chart's Secret is (re)created before the Job that reads it.
    assert "pre-upgrade" in secret["metadata"]["annotations"]["helm.sh/hook"]
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )


def test_beat_is_a_single_replica_that_never_overlaps(
    rendered_scenarios: dict[str, list[Manifest]],
) -> None:
    for scenario, objects in rendered_scenarios.items():
        beat = one(objects, "Deployment", "cove-beat")
        assert beat["spec"]["replicas"] == 1, scenario
        assert beat["spec"]["strategy"] == {"type": "Recreate"}, scenario


def test_the_autoscaler_owns_the_gateway_replica_count(
    rendered_scenarios: dict[str, list[Manifest]],
) -> None:
    ha = rendered_scenarios["ha"]
    assert "replicas" not in one(ha, "Deployment", "cove-gateway")["spec"]
    hpa = one(ha, "HorizontalPodAutoscaler", "cove-gateway")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    assert one(ha, "PodDisruptionBudget", "cove-gateway")["spec"]["minAvailable"] == 2
    assert one(ha, "PodDisruptionBudget", "cove-platform")["spec"]["maxUnavailable"] == 1

    minimal = rendered_scenarios["minimal"]
    assert one(minimal, "Deployment", "cove-gateway")["spec"]["replicas"] == 1
    assert find(minimal, "HorizontalPodAutoscaler") == []
    assert find(minimal, "PodDisruptionBudget") == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"gateway": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}},
            "minReplicas must not exceed maxReplicas",
        ),
        (
            {"platform": {"podDisruptionBudget": {"enabled": True, "maxUnavailable": 1}}},
            "set minAvailable or maxUnavailable, not both",
        ),
        (
            {"tenancy": {"businessUnits": [{"name": "risk"}, {"name": "risk", "gpuQuota": 2}]}},
            '"risk" is listed twice',
        ),
    ],
)
def test_contradictory_values_fail_the_render(
    render: Render, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmRenderError, match=message):
        render(values)


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------


def test_generated_secrets_are_strong(rendered_scenarios: dict[str, list[Manifest]]) -> None:
    secret = one(rendered_scenarios["minimal"], "Secret", "cove")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert set(data) == {"secret-key", "postgres-password", "redis-password"}
    assert len(data["secret-key"]) >= 32
    assert all(len(v) >= 32 and v.isalnum() for v in data.values())


@pytest.mark.parametrize("scenario", ["external-services", "ha"])
def test_existing_secrets_are_referenced_not_copied(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]]
) -> None:
    objects = rendered_scenarios[scenario]
    assert find(objects, "Secret") == []
    platform = one(objects, "Deployment", "cove-platform")["spec"]["template"]["spec"]
    container = platform["containers"][0]
    for name, secret in [
        ("COVE_SECRET_KEY", "cove-app-secrets"),
        ("COVE_DATABASE_URL", "cove-app-secrets"),
        ("COVE_REDIS_URL", "cove-app-secrets"),
    ]:
        entry = env_value(container, name)
        assert entry is not None, name
        assert entry["valueFrom"]["secretKeyRef"]["name"] == secret, name


def test_inline_external_urls_go_to_the_chart_secret(render: Render) -> None:
    url = "postgresql://cove:s3cret@db.corp:5432/cove"
    objects = render(
        {
            "postgresql": {"enabled": False},
            "externalDatabase": {"url": url},
            "redis": {"enabled": False},
            "externalRedis": {"url": "rediss://:pw@redis.corp:6380/0"},
        }
    )
    secret = one(objects, "Secret", "cove")
    assert base64.b64decode(secret["data"]["database-url"]).decode() == url
    for obj, _ in pod_specs(objects):
        assert "s3cret" not in repr(obj), obj["metadata"]["name"]
    assert find(objects, "StatefulSet") == []


def test_an_upgrade_never_regenerates_secrets_it_cannot_read(render: Render) -> None:
    # Offline, lookup() finds no live Secret: like a client-side dry run of an upgrade.
    with pytest.raises(HelmRenderError, match="would revoke every API key"):
        render({}, is_upgrade=True, is_install=False)
    pinned = {
        "secretKey": {"value": "x" * 40},
        "postgresql": {"auth": {"password": "pg-password-0123456789"}},
        "redis": {"auth": {"password": "redis-password-0123456789"}},
    }
    assert find(render(pinned, is_upgrade=True, is_install=False), "Secret", "cove")


def test_bundled_service_urls_are_composed_from_the_secret(
    rendered_scenarios: dict[str, list[Manifest]],
) -> None:
    gateway = one(rendered_scenarios["defaults"], "Deployment", "cove-gateway")
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    names = [e["name"] for e in container["env"]]
    # $(VAR) expansion only sees variables defined earlier in the list.
    assert names.index("COVE_POSTGRES_PASSWORD") < names.index("COVE_DATABASE_URL")
    assert names.index("COVE_REDIS_PASSWORD") < names.index("COVE_REDIS_URL")
    url = env_value(container, "COVE_DATABASE_URL")
    assert url is not None
    assert url["value"] == "postgresql://cove:$(COVE_POSTGRES_PASSWORD)@cove-postgresql:5432/cove"


# --------------------------------------------------------------------------------------------
# RBAC and tenancy
# --------------------------------------------------------------------------------------------

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rbac_is_least_privilege(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]]
) -> None:
    objects = rendered_scenarios[scenario]
    roles = find(objects, "ClusterRole") + find(objects, "Role")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            where = f"{role['metadata']['name']}: {rule}"
            assert "*" not in rule["verbs"], where
            assert "*" not in rule["resources"], where
            assert "*" not in rule.get("apiGroups", []), where
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), where
            assert "secrets" not in rule["resources"], where
            assert not {"roles", "rolebindings", "clusterroles", "clusterrolebindings"} & set(
                rule["resources"]
            ), where
            if "namespaces" in rule["resources"]:
                # Never delete one; create (apply) and patch only named BU namespaces.
                assert not {"delete", "deletecollection", "update"} & set(rule["verbs"]), where
                assert rule["resourceNames"], where
                for n in rule["resourceNames"]:
                    assert n.startswith("cove-bu-") or n == SHARED_NAMESPACE, where

    # Which verbs exactly: tests/deploy/test_rbac.py replays the reconciler's requests.
    units = scenario_values(scenario).get("tenancy", {}).get("businessUnits", [])
    bu_namespaces = sorted([f"cove-bu-{u['name']}" for u in units] + [SHARED_NAMESPACE])
    for binding in find(objects, "ClusterRoleBinding"):
        role = one(objects, "ClusterRole", binding["roleRef"]["name"])
        assert {r for rule in role["rules"] for r in rule["resources"]} == {"namespaces"}
        assert [sorted(r["resourceNames"]) for r in role["rules"]] == [bu_namespaces]

    # The workload rules are granted only inside the business units' namespaces.
    workloads = one(objects, "ClusterRole", f"{NAMESPACE}-cove-reconciler-workloads")
    granted = {r for rule in workloads["rules"] for r in rule["resources"]}
    assert granted == {
        "deployments",
        "services",
        "networkpolicies",
        "jobs",
        "resourcequotas",
        "poddisruptionbudgets",
        "pods",
        "events",
    }
    for rule in workloads["rules"]:
        if {"pods", "events"} & set(rule["resources"]):
            assert not WRITE_VERBS & set(rule["verbs"]), rule
    bindings = find(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == bu_namespaces
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": f"{NAMESPACE}-cove-reconciler-workloads",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "cove-reconciler", "namespace": NAMESPACE}
        ]


def test_business_units_get_a_namespace_and_a_gpu_ceiling(
    rendered_scenarios: dict[str, list[Manifest]],
) -> None:
    objects = rendered_scenarios["external-services"]
    namespaces = {n["metadata"]["name"]: n for n in find(objects, "Namespace")}
    assert set(namespaces) == {
        "cove-bu-payments",
        "cove-bu-risk",
        "cove-bu-platform",
        "cove-shared",
    }
    payments = namespaces["cove-bu-payments"]
    assert payments["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    quotas = {q["metadata"]["namespace"]: q for q in find(objects, "ResourceQuota")}
    assert quotas["cove-bu-payments"]["spec"]["hard"] == {"requests.nvidia.com/gpu": "4"}
    assert quotas["cove-bu-risk"]["spec"]["hard"] == {"requests.nvidia.com/gpu": "2"}
    assert "cove-bu-platform" not in quotas  # no gpuQuota: no ceiling from the chart
    # The model servers' network policies are the reconciler's, per deployment.
    assert all(p["metadata"]["namespace"] == NAMESPACE for p in find(objects, "NetworkPolicy"))


def test_business_unit_namespaces_agree_with_the_reconciler(
    rendered_scenarios: dict[str, list[Manifest]],
) -> None:
    """The reconciler server-side-applies the same Namespace: no shared field may differ."""
    from cove.platform.deployments.k8s import render as reconciler

    assert reconciler.bu_namespace("payments") == "cove-bu-payments"
    objects = rendered_scenarios["ha"]  # with commonLabels that must not leak into its keys
    chart_namespace = one(objects, "Namespace", "cove-bu-payments")
    spec = _reconciler_spec("payments")
    (reconciler_namespace,) = [o for o in reconciler.render(spec) if o["kind"] == "Namespace"]
    chart_labels = chart_namespace["metadata"]["labels"]
    for key, value in reconciler_namespace["metadata"]["labels"].items():
        assert chart_labels.get(key) == value, key
    reconciler_names = {o["metadata"]["name"] for o in reconciler.render(spec)}
    for obj in objects:
        if obj["metadata"].get("namespace") == "cove-bu-payments":
            assert obj["metadata"]["name"] not in reconciler_names, obj["metadata"]["name"]


def test_the_shared_namespace_agrees_with_the_reconciler_and_the_gateway_reaches_it(
    rendered_scenarios: dict[str, list[Manifest]],
) -> None:
    """Shared base instances: the reconciler applies the Namespace the chart creates (same
    labels), and the gateway's restricted egress reaches it like a BU namespace."""
    from cove.platform.deployments.k8s import render as reconciler
    from cove.platform.deployments.repository import PLATFORM_SLUG

    objects = rendered_scenarios["external-services"]  # egress restricted
    chart_namespace = one(objects, "Namespace", SHARED_NAMESPACE)
    spec = _reconciler_spec(PLATFORM_SLUG, shared=True)
    (rendered,) = [o for o in reconciler.render(spec) if o["kind"] == "Namespace"]
    assert rendered["metadata"]["name"] == SHARED_NAMESPACE
    labels = chart_namespace["metadata"]["labels"]
    for key, value in rendered["metadata"]["labels"].items():
        assert labels.get(key) == value, key
    egress = one(objects, "NetworkPolicy", "cove-egress")
    selectors = [
        peer["namespaceSelector"]["matchLabels"]
        for rule in egress["spec"]["egress"]
        for peer in rule.get("to", [])
        if peer.get("namespaceSelector", {}).get("matchLabels")
    ]
    assert any(s.items() <= labels.items() for s in selectors)


def test_the_reconciler_default_gateway_selector_finds_the_gateway(
    rendered_scenarios: dict[str, list[Manifest]],
) -> None:
    from cove.platform.deployments.k8s.spec import (
        DEFAULT_GATEWAY_NAMESPACE,
        DEFAULT_GATEWAY_POD_LABELS,
    )

    assert DEFAULT_GATEWAY_NAMESPACE == NAMESPACE
    for scenario, objects in rendered_scenarios.items():
        for obj in find(objects, "Deployment"):
            labels = obj["spec"]["template"]["metadata"]["labels"]
            is_gateway = obj["metadata"]["name"] == "cove-gateway"
            assert (DEFAULT_GATEWAY_POD_LABELS.items() <= labels.items()) == is_gateway, scenario


def _reconciler_spec(bu: str, *, shared: bool = False) -> Any:
    from cove.platform.deployments.k8s.spec import DeploymentSpec

    return DeploymentSpec.model_validate(
        {
            "name": "chat",
            "bu": bu,
            "mode": "shared" if shared else "dedicated",
            "shared_across_bus": shared,
            "model": {"name": "base", "location": "models/base", "context_length": 4096},
            "gpu_quota": 1,
            "image": {"repository": "registry.corp/vllm/vllm-openai", "tag": "v0.11.0"},
        }
    )


def test_the_reconciler_learns_what_to_run(rendered_scenarios: dict[str, list[Manifest]]) -> None:
    worker = one(rendered_scenarios["ha"], "Deployment", "cove-worker")
    container = worker["spec"]["template"]["spec"]["containers"][0]
    expected = {
        "COVE_GPU_RESOURCE_NAME": "nvidia.com/gpu",
        "COVE_MODEL_NODE_SELECTOR": '{"nvidia.com/gpu.present":"true"}',
        "COVE_MODEL_TOLERATIONS": (
            '[{"effect":"NoSchedule","key":"nvidia.com/gpu","operator":"Exists"}]'
        ),
    }
    for name, value in expected.items():
        entry = env_value(container, name)
        assert entry is not None, name
        assert entry["value"] == value, name
    vllm = env_value(container, "COVE_VLLM_IMAGE")
    assert vllm is not None
    assert vllm["value"].startswith("docker.io/vllm/vllm-openai:")


# --------------------------------------------------------------------------------------------
# Network policies, Ingress, observability
# --------------------------------------------------------------------------------------------


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert "matchExpressions" not in selector
    return selector.get("matchLabels", {}).items() <= labels.items()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_long_running_pod_has_an_ingress_policy(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]]
) -> None:
    objects = rendered_scenarios[scenario]
    policies = [
        p for p in find(objects, "NetworkPolicy") if p["metadata"]["namespace"] == NAMESPACE
    ]
    for o in objects:
        if o["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        labels = o["spec"]["template"]["metadata"]["labels"]
        covering = [
            p
            for p in policies
            if _matches(p["spec"]["podSelector"], labels) and "Ingress" in p["spec"]["policyTypes"]
        ]
        assert covering, o["metadata"]["name"]


def test_bundled_datastores_accept_only_the_release(
    rendered_scenarios: dict[str, list[Manifest]],
) -> None:
    objects = rendered_scenarios["defaults"]
    for name, port in [("cove-postgresql", 5432), ("cove-redis", 6379)]:
        policy = one(objects, "NetworkPolicy", name)
        (rule,) = policy["spec"]["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": port}]
        assert rule["from"] == [
            {
                "podSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/name": "cove",
                        "app.kubernetes.io/instance": "cove",
                    }
                }
            }
        ]


def test_ingress_serves_both_hosts_over_tls(rendered_scenarios: dict[str, list[Manifest]]) -> None:
    objects = rendered_scenarios["external-services"]
    console = one(objects, "Ingress", "cove-console")
    gateway = one(objects, "Ingress", "cove-gateway")
    assert console["spec"]["tls"] == [
        {"hosts": ["cove.corp.example.com"], "secretName": "cove-tls"}
    ]
    assert gateway["spec"]["rules"][0]["host"] == "cove-api.corp.example.com"
    backend = gateway["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "cove-gateway", "port": {"name": "http"}}
    # Streamed completions must not be buffered by the ingress controller.
    assert (
        gateway["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    )
    assert console["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "corp-ca"
    assert find(rendered_scenarios["defaults"], "Ingress") == []


def test_observability_settings_reach_every_process(
    rendered_scenarios: dict[str, list[Manifest]],
) -> None:
    objects = rendered_scenarios["external-services"]
    for name in ("cove-gateway", "cove-platform", "cove-worker", "cove-beat"):
        container = one(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        otlp = env_value(container, "COVE_OTLP_ENDPOINT")
        assert otlp is not None
        assert otlp["value"] == "http://otel-collector.observability.svc:4318"
        issuer = env_value(container, "COVE_OIDC_ISSUER")
        assert issuer is not None
        assert issuer["value"].endswith("/realms/cove")
    monitor = one(objects, "ServiceMonitor", "cove-gateway")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert find(rendered_scenarios["defaults"], "ServiceMonitor") == []


def test_helm_test_checks_both_services(rendered_scenarios: dict[str, list[Manifest]]) -> None:
    pod = one(rendered_scenarios["defaults"], "Pod", "cove-test-health")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    command = pod["spec"]["containers"][0]["command"]
    assert command[0] == "curl"
    assert "--fail" in command
    assert "http://cove-gateway:8080/healthz" in command
    assert "http://cove-platform:8000/healthz" in command
    assert "http://cove-platform:8000/readyz" in command


# Every optional branch of the templates at once, under another release name.
KITCHEN_SINK: dict[str, Any] = {
    "fullnameOverride": "acme-cove",
    "commonLabels": {"team": "dev-platform"},
    "commonAnnotations": {"owner": "dev-platform@corp.example.com"},
    "global": {"imageRegistry": "mirror.corp:5000", "imagePullSecrets": ["pull-a", "pull-b"]},
    "podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None},
    "serviceAccount": {"annotations": {"iam.corp/role": "cove"}},
    "reconciler": {
        "serviceAccount": {"annotations": {"iam.corp/role": "cove-reconciler"}},
        "kubernetes": {"apiUrl": "https://gpu.corp:6443", "existingSecret": "gpu-cluster"},
    },
    "cove": {"extraEnv": [{"name": "COVE_FEATURE_X", "value": "on"}]},
    "gateway": {
        "podAnnotations": {"sidecar.istio.io/inject": "false"},
        "nodeSelector": {"pool": "web"},
        "tolerations": [{"key": "web", "operator": "Exists", "effect": "NoSchedule"}],
        "spreadAcrossNodes": False,
        "podDisruptionBudget": {"minAvailable": "50%"},
        "extraEnv": [{"name": "COVE_MAX_BODY_BYTES", "value": "2097152"}],
    },
    "platform": {
        "podDisruptionBudget": {"enabled": True, "minAvailable": None, "maxUnavailable": 1}
    },
    "worker": {"affinity": {"nodeAffinity": {}}},
    "redis": {"persistence": {"enabled": True, "storageClass": "fast"}},
    "postgresql": {"persistence": {"storageClass": "fast"}},
    "secretKey": {"value": "k" * 40},
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "console": {"host": "cove.acme.test", "annotations": {"a": "b"}},
        "gateway": {"host": "api.cove.acme.test"},
        "tls": {"enabled": False},
    },
    "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
    "networkPolicy": {"egress": {"restrict": True}},
    "oidc": {
        "enabled": True,
        "issuerUrl": "http://keycloak.sso:8080/realms/acme",
        "existingSecret": "o",
    },
    "tenancy": {
        "businessUnits": [{"name": "alpha", "gpuQuota": None}, {"name": "beta", "gpuQuota": 0}],
    },
    "tests": {"enabled": True},
}


def test_every_optional_branch_renders_valid_objects(render: Render) -> None:
    report = helm_python.lint(CHART_DIR, KITCHEN_SINK, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    objects = render(KITCHEN_SINK)
    for obj in objects:
        if obj["kind"] == "ServiceMonitor":
            _validate_service_monitor(obj)
        elif obj["kind"] == "PrometheusRule":
            _validate_prometheus_rule(obj)
        else:
            _validate(obj)
    gateway = one(objects, "Deployment", "acme-cove-gateway")
    pod = gateway["spec"]["template"]
    assert pod["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    assert "runAsUser" not in pod["spec"]["securityContext"]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "pull-a"}, {"name": "pull-b"}]
    assert gateway["metadata"]["annotations"] == {"owner": "dev-platform@corp.example.com"}
    assert "topologySpreadConstraints" not in pod["spec"]
    assert (
        one(objects, "PersistentVolumeClaim", "acme-cove-redis")["spec"]["storageClassName"]
        == "fast"
    )
    # A null gpuQuota (what Terraform passes for "no ceiling") creates no quota; 0 is a ceiling.
    assert (
        one(objects, "ResourceQuota", "cove-gpu-ceiling")["metadata"]["namespace"] == "cove-bu-beta"
    )
    console = one(objects, "Ingress", "acme-cove-console")
    assert "tls" not in console["spec"]
    assert console["metadata"]["annotations"]["a"] == "b"
    platform_env = one(objects, "Deployment", "acme-cove-platform")["spec"]["template"]["spec"]
    console_client = env_value(platform_env["containers"][0], "COVE_CONSOLE_OIDC_CLIENT_ID")
    assert console_client == {"name": "COVE_CONSOLE_OIDC_CLIENT_ID", "value": "cove-console"}
    worker_env = one(objects, "Deployment", "acme-cove-worker")["spec"]["template"]["spec"]
    token = env_value(worker_env["containers"][0], "COVE_KUBE_TOKEN")
    assert token is not None
    assert token["valueFrom"]["secretKeyRef"] == {"name": "gpu-cluster", "key": "token"}
    assert find(objects, "Secret")[0]["metadata"]["name"] == "acme-cove"
