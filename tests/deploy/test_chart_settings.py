"""The chart's environment is read by Cove's own settings classes, as a pod would read it.

For every scenario and every container, each `COVE_*` variable the chart sets must be a field of
a settings class that container's process reads: a typo or a stale name would otherwise be
ignored (`extra="ignore"`) and the setting silently keep its default. The only exceptions are
variables used to compose another one (`$(COVE_POSTGRES_PASSWORD)` in the database URL).
Then the container's environment, resolved the way the kubelet resolves it (Secrets the chart
renders, stand-ins for Secrets the operator creates, `$(VAR)` expansion, the downward API), is
parsed by those classes, and what they produce is checked against the values it came from.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator

import httpx
import pytest
from pydantic_settings import BaseSettings

from cove.gateway.settings import GatewaySettings
from cove.platform.api.app import PlatformSettings, create_app
from cove.platform.core.settings import CoveSettings
from cove.platform.deployments.runtime.kubernetes import cluster_settings, kube_configuration
from cove.platform.deployments.settings import RuntimeSettings
from cove.platform.finetuning import k8s as finetune_k8s
from cove.platform.finetuning.settings import FinetuneSettings
from cove.platform.lifecycle.settings import LifecycleSettings
from cove.platform.worker import WorkerSettings

from .conftest import (
    NAMESPACE,
    REPO,
    SCENARIOS,
    Manifest,
    Render,
    find,
    one,
    pod_specs,
    scenario_values,
)

# The settings classes each of the chart's processes constructs (see the modules they run:
# cove.gateway.app, cove.platform.api.app, cove.platform.worker with the deployment and
# fine-tuning tasks it registers, which beat imports too, and `cove db migrate`).
READS: dict[str, tuple[type[BaseSettings], ...]] = {
    "cove-gateway": (GatewaySettings,),
    "cove-platform": (PlatformSettings, FinetuneSettings, LifecycleSettings),
    "cove-worker": (WorkerSettings, RuntimeSettings, FinetuneSettings, LifecycleSettings),
    "cove-beat": (WorkerSettings, RuntimeSettings, FinetuneSettings, LifecycleSettings),
    "cove-migrations": (CoveSettings,),
}

# What the operator's own Secrets hold in these tests (the chart only names them).
OPERATOR_SECRET = "operator-secret-value-that-is-long-enough-0123"
OPERATOR_URLS = {
    "database-url": "postgresql://cove:pw@db.corp:5432/cove",
    "app-database-url": "postgresql://cove_app:pw@db.corp:5432/cove",
    "redis-url": "rediss://:pw@redis.corp:6380/0",
}

_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _fields(classes: tuple[type[BaseSettings], ...]) -> set[str]:
    return {f"COVE_{name.upper()}" for cls in classes for name in cls.model_fields}


def _chart_secrets(objects: list[Manifest]) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for secret in find(objects, "Secret"):
        for key, value in (secret.get("data") or {}).items():
            found[(secret["metadata"]["name"], key)] = base64.b64decode(value).decode()
        for key, value in (secret.get("stringData") or {}).items():
            found[(secret["metadata"]["name"], key)] = value
    return found


def resolve_env(container: Manifest, objects: list[Manifest]) -> dict[str, str]:
    """The environment the kubelet would give the container."""
    secrets = _chart_secrets(objects)
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        name = entry["name"]
        if "value" in entry:
            value = str(entry["value"])
            # Kubernetes expands $(VAR) from variables defined earlier in the list.
            env[name] = _REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), value)
            continue
        source = entry["valueFrom"]
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "metadata.namespace", name
            env[name] = NAMESPACE
        else:
            ref = source["secretKeyRef"]
            key = (ref["name"], ref["key"])
            env[name] = secrets.get(key) or OPERATOR_URLS.get(ref["key"], OPERATOR_SECRET)
    return env


def cove_containers(objects: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for obj, spec in pod_specs(objects):
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            yield obj["metadata"]["name"], container


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith("COVE_"):
            monkeypatch.delenv(name)
    return monkeypatch


def _load(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], cls: type[BaseSettings]
) -> BaseSettings:
    with monkeypatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return cls()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_cove_variable_is_a_setting_its_process_reads(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]]
) -> None:
    objects = rendered_scenarios[scenario]
    seen = set()
    for owner, container in cove_containers(objects):
        names = [e["name"] for e in container.get("env", []) if e["name"].startswith("COVE_")]
        if owner not in READS:
            assert names == [], f"{owner} runs no Cove process but gets {names}"
            continue
        seen.add(owner)
        composed = {
            ref
            for e in container.get("env", [])
            for ref in _REFERENCE.findall(str(e.get("value", "")))
        }
        known = _fields(READS[owner])
        unknown = sorted(n for n in names if n not in known and n not in composed)
        assert unknown == [], f"{scenario}/{owner}: no settings field reads {unknown}"
        assert len(names) == len(set(names)), f"{scenario}/{owner}: a variable is set twice"
    assert seen == set(READS) - ({"cove-migrations"} if not _migrations(scenario) else set())


def _migrations(scenario: str) -> bool:
    return bool(scenario_values(scenario).get("migrations", {}).get("enabled", True))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_process_parses_its_environment(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]], clean_env: pytest.MonkeyPatch
) -> None:
    objects = rendered_scenarios[scenario]
    for owner, container in cove_containers(objects):
        env = resolve_env(container, objects)
        for cls in READS.get(owner, ()):
            settings = _load(clean_env, env, cls)
            assert isinstance(settings, CoveSettings)
            # Production refuses development secrets: the chart's must pass.
            assert settings.is_production, owner
            assert not settings.database_url.startswith("postgresql://postgres@127.0.0.1")
            assert "$(" not in settings.database_url + settings.redis_url, owner


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_reconciler_reads_the_values_it_was_given(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]], clean_env: pytest.MonkeyPatch
) -> None:
    objects = rendered_scenarios[scenario]
    values = scenario_values(scenario)
    serving = values.get("modelServing", {})
    registry = values.get("global", {}).get("imageRegistry")
    pull_secrets = values.get("global", {}).get("imagePullSecrets", [])
    worker = one(objects, "Deployment", "cove-worker")["spec"]["template"]["spec"]
    env = resolve_env(worker["containers"][0], objects)

    runtime = _load(clean_env, env, RuntimeSettings)
    assert isinstance(runtime, RuntimeSettings)
    # In the cluster: the worker's own service account (no URL, no kubeconfig).
    assert runtime.kube_api_url is None
    assert runtime.kubeconfig is None
    assert runtime.gateway_namespace == NAMESPACE
    cluster = cluster_settings(runtime)  # raises on an image or toleration it cannot use
    assert cluster.image.reference == env["COVE_VLLM_IMAGE"]
    assert cluster.image.pull_secret == (pull_secrets[0] if pull_secrets else None)
    vllm = serving.get("vllm", {}).get("image", {})
    if vllm.get("digest"):
        assert cluster.image.reference.endswith("@" + vllm["digest"])
    if registry:
        assert cluster.image.reference.startswith(registry + "/")
    assert dict(cluster.node_selector) == serving.get("nodeSelector", {})
    assert len(cluster.tolerations) == len(serving.get("tolerations", []))
    assert runtime.model_tolerations == serving.get("tolerations", [])
    assert cluster.gpu_resource == serving.get("gpuResourceName", "nvidia.com/gpu")

    finetune = _load(clean_env, env, FinetuneSettings)
    assert isinstance(finetune, FinetuneSettings)
    assert finetune.finetune_runtime == "kubernetes"
    job = finetune_k8s.render_job(
        finetune, bu="payments", job_id="0" * 32, job="sdk", attempt=1, gpus=1
    )
    pod = job["spec"]["template"]["spec"]
    image = pod["containers"][0]["image"]
    assert image == env["COVE_TRAINER_IMAGE"]
    trainer = values.get("trainer", {}).get("image", {})
    assert image.startswith(f"{registry or trainer.get('registry', 'ghcr.io')}/")
    if trainer.get("digest"):
        assert image.endswith("@" + trainer["digest"])
    assert pod.get("imagePullSecrets", []) == [{"name": s} for s in pull_secrets[:1]]
    for toleration in serving.get("tolerations", []):
        assert toleration in pod["tolerations"]
    assert pod.get("nodeSelector", {}) == serving.get("nodeSelector", {})


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_the_console_offers_the_sign_in_the_values_name(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]], clean_env: pytest.MonkeyPatch
) -> None:
    """What the console asks the platform on load (`/api/v1/console-config`)."""
    objects = rendered_scenarios[scenario]
    oidc = scenario_values(scenario).get("oidc", {})
    platform = one(objects, "Deployment", "cove-platform")["spec"]["template"]["spec"]
    settings = _load(clean_env, resolve_env(platform["containers"][0], objects), PlatformSettings)
    assert isinstance(settings, PlatformSettings)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cove") as client:
        config = (await client.get("/api/v1/console-config")).json()
    if oidc.get("enabled"):
        assert config["oidc"]["issuer"] == oidc["issuerUrl"]
        assert config["oidc"]["client_id"] == oidc.get("consoleClientId", "cove-console")
        assert config["dev_login"] is False  # production: no pasting API keys into the console
    else:
        assert config["oidc"] is None


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_members_list_reads_the_realm_of_the_issuer(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]], clean_env: pytest.MonkeyPatch
) -> None:
    objects = rendered_scenarios[scenario]
    oidc = scenario_values(scenario).get("oidc", {})
    platform = one(objects, "Deployment", "cove-platform")["spec"]["template"]["spec"]
    container = platform["containers"][0]
    settings = _load(clean_env, resolve_env(container, objects), PlatformSettings)
    assert isinstance(settings, PlatformSettings)
    if not oidc.get("members", {}).get("enabled"):
        assert settings.keycloak_url is None
        return
    # https://sso.corp.example.com/realms/cove -> the Admin API of realm cove at that host.
    base, realm = oidc["issuerUrl"].split("/realms/")
    assert (settings.keycloak_url, settings.keycloak_realm) == (base, realm)
    assert settings.keycloak_client_id == oidc["members"]["clientId"]
    assert settings.keycloak_client_secret is not None
    secret = next(e for e in container["env"] if e["name"] == "COVE_KEYCLOAK_CLIENT_SECRET")
    assert secret["valueFrom"]["secretKeyRef"] == {
        "name": oidc["existingSecret"],
        "key": oidc["members"]["clientSecretKey"],
    }
    for owner, other in cove_containers(objects):
        if owner != "cove-platform":
            assert not any(e["name"].startswith("COVE_KEYCLOAK_") for e in other.get("env", []))


def test_the_deletion_grace_period_reaches_the_api_and_the_purge(
    render: Render, clean_env: pytest.MonkeyPatch
) -> None:
    objects = render({"tenancy": {"businessUnits": [], "deletionGraceDays": 30}})
    for name in ("cove-platform", "cove-worker"):
        pod = one(objects, "Deployment", name)["spec"]["template"]["spec"]
        settings = _load(clean_env, resolve_env(pod["containers"][0], objects), LifecycleSettings)
        assert isinstance(settings, LifecycleSettings)
        assert settings.bu_deletion_grace_days == 30, name


def test_a_remote_cluster_is_reached_with_its_url_and_token(
    render: Render, clean_env: pytest.MonkeyPatch
) -> None:
    objects = render(
        {
            "reconciler": {
                "kubernetes": {
                    "apiUrl": "https://gpu-cluster.corp:6443",
                    "verifySsl": False,
                    "existingSecret": "gpu-cluster-token",
                    "timeoutSeconds": 12.5,
                }
            }
        }
    )
    worker = one(objects, "Deployment", "cove-worker")["spec"]["template"]["spec"]
    container = worker["containers"][0]
    token = next(e for e in container["env"] if e["name"] == "COVE_KUBE_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "gpu-cluster-token", "key": "token"}
    runtime = _load(clean_env, resolve_env(container, objects), RuntimeSettings)
    assert isinstance(runtime, RuntimeSettings)
    assert runtime.kube_timeout_seconds == 12.5
    configuration = kube_configuration(runtime)
    assert configuration.host == "https://gpu-cluster.corp:6443"
    assert configuration.verify_ssl is False
    assert configuration.get_api_key_with_prefix("authorization") == f"Bearer {OPERATOR_SECRET}"


def test_a_stale_variable_name_is_caught(rendered_scenarios: dict[str, list[Manifest]]) -> None:
    """The check above fails on the kind of name it exists for (the console's client id was
    once passed as COVE_OIDC_CONSOLE_CLIENT_ID, which nothing reads)."""
    known = _fields(READS["cove-platform"])
    assert "COVE_CONSOLE_OIDC_CLIENT_ID" in known
    assert "COVE_OIDC_CONSOLE_CLIENT_ID" not in known
    assert "COVE_VLLM_IMAGE" not in known  # the API never renders model instances
    rendered = json.dumps(rendered_scenarios["ha"])
    assert "COVE_OIDC_CONSOLE_CLIENT_ID" not in rendered


# The operator's documents of this area, and the chart's own comments.
DOCUMENTS = [
    "docs/install-helm.md",
    "docs/install-terraform.md",
    "docs/airgapped.md",
    "docs/upgrade.md",
    "docs/operations.md",
    "docs/sizing.md",
    "terraform/README.md",
    "helm/cove/values.yaml",
]
# Named in those documents without being a setting: a placeholder.
NOT_SETTINGS = {"COVE_X"}


def test_every_variable_the_install_docs_name_is_a_setting() -> None:
    """Operators copy these names into their values; a stale one silently does nothing."""
    known = _fields(
        (
            GatewaySettings,
            PlatformSettings,
            WorkerSettings,
            RuntimeSettings,
            FinetuneSettings,
            LifecycleSettings,
        )
    )
    seen = 0
    for document in DOCUMENTS:
        text = (REPO / document).read_text()
        named = set(re.findall(r"\bCOVE_[A-Z0-9_]+", text)) - NOT_SETTINGS
        # A family (COVE_KUBE_*) must be the prefix of some setting.
        unknown = [
            name
            for name in sorted(named - known)
            if not (name.endswith("_") and any(k.startswith(name) for k in known))
        ]
        assert unknown == [], document
        seen += len(named)
    assert seen > 10
