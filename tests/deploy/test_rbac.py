"""The reconciler's RBAC is exactly what its Kubernetes client asks the API server for.

Every call the production code makes on `KubernetesApplier` (found by reading the modules that
use it) is replayed here with the objects production passes, against the recording API server
of tests/platform/test_k8s_client.py (no cluster runs here; the official client builds every
request). Each recorded request becomes what the API server's authorizer checks — verb, API
group, resource, namespace, name; a server-side apply is checked as `patch` and, when the
object does not exist yet, as `create` of that name — and is then authorized against the RBAC
objects the chart renders, as RBAC evaluates them. Both ways: every request is allowed, and
every rule the chart grants the reconciler is used by some request. A new client call, or a
grant nobody uses, fails here until the other side follows.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import pytest
from helm_python import Chart
from kubernetes.client import Configuration

from cove.platform.deployments.k8s.client import APPLY_CONTENT_TYPE, KubernetesApplier
from cove.platform.deployments.k8s.spec import SHARED_NAMESPACE, DeploymentSpec
from cove.platform.deployments.repository import PLATFORM_SLUG
from cove.platform.finetuning import k8s as finetune_k8s
from cove.platform.finetuning.settings import FinetuneSettings
from tests.platform.test_k8s_client import (
    FakeApiServer,
    Recorded,
    api_server,  # noqa: F401 - a fixture
)

from .conftest import (
    NAMESPACE,
    RELEASE,
    REPO,
    SCENARIOS,
    Manifest,
    Render,
    find,
    one,
    parse_manifests,
    scenario_values,
)

SOURCE_ROOTS = ["platform", "tenants", "gateway", "finetune"]
CLIENT_MODULE = REPO / "platform/cove/platform/deployments/k8s/client.py"
RECONCILER_ACCOUNT = "cove-reconciler"
# How a module that uses the client shows it.
CLIENT_MARKS = ("k8s.client", "k8s import client", "KubernetesApplier")


@dataclass(frozen=True, order=True)
class Access:
    """What the authorizer checks for one request."""

    verb: str
    group: str
    resource: str
    namespace: str | None
    name: str | None


# ---- the calls production makes --------------------------------------------------------------

Call = tuple[str, tuple[tuple[str, Any], ...]]


def production_calls() -> set[Call]:
    """(method, constant keyword arguments) of every call, in a module that uses the client,
    to a method named like one of KubernetesApplier's public methods (on whatever receiver: a
    namesake on another object shows up here too, and is then listed on purpose)."""
    methods = {
        name
        for name, member in inspect.getmembers(KubernetesApplier, inspect.isfunction)
        if not name.startswith("_") and name not in {"close"}
    }
    calls: set[Call] = set()
    users = 0
    for root in SOURCE_ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            if path == CLIENT_MODULE:
                continue
            source = path.read_text()
            if not any(
                s in source for s in ("k8s.client", "k8s import client", "KubernetesApplier")
            ):
                continue
            users += 1
            for node in ast.walk(ast.parse(source)):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                if node.func.attr not in methods:
                    continue
                keywords = tuple(
                    sorted(
                        (k.arg, k.value.value if isinstance(k.value, ast.Constant) else "?")
                        for k in node.keywords
                        if k.arg is not None
                    )
                )
                calls.add((node.func.attr, keywords))
    assert users >= 2, "the reconciler's modules no longer import the client?"
    return calls


def _spec(bu: str, *, shared: bool = False) -> DeploymentSpec:
    return DeploymentSpec.model_validate(
        {
            "bu": bu,
            "name": "coder",
            "mode": "shared",
            "shared_across_bus": shared,
            "model": {"name": "qwen2.5-coder-7b", "location": "base/qwen", "context_length": 8192},
            "adapters": [{"name": "sdk", "location": "adapters/sdk"}],
            "replicas": 2,
            "gpus_per_replica": 1,
            "gpu_quota": 4,
            "image": {"repository": "registry.internal/vllm/vllm-openai", "tag": "v0.32.0"},
        }
    )


# A base instance shared across BUs: the driver renders it for the platform (no BU) in
# SHARED_NAMESPACE (cove.platform.deployments.service, create_shared_instance).
SHARED = _spec(PLATFORM_SLUG, shared=True)


def _job_objects(bu: str) -> list[dict[str, Any]]:
    settings = FinetuneSettings(finetune_runtime="kubernetes")
    job = finetune_k8s.render_job(settings, bu=bu, job_id="0" * 32, job="sdk", attempt=1, gpus=1)
    return [finetune_k8s.render_namespace(bu), job]


def _job_key(bu: str) -> tuple[str, str, str, str]:
    job = _job_objects(bu)[1]
    return ("batch/v1", "Job", job["metadata"]["namespace"], job["metadata"]["name"])


# Each production call, made with what production passes to it: the model-serving driver
# (cove.platform.deployments.runtime.kubernetes), for a BU's instance and for a shared one, and
# the fine-tuning tasks (cove.platform.finetuning.tasks, which read and delete only their Jobs,
# always in a BU's namespace).
CASES: dict[Call, Callable[[KubernetesApplier, DeploymentSpec], object]] = {
    ("apply", ()): lambda client, spec: client.apply(spec),
    ("read_status", ()): lambda client, spec: client.read_status(spec),
    ("list_pods", ()): lambda client, spec: client.list_pods(spec),
    ("recent_events", ()): lambda client, spec: client.recent_events(spec),
    ("delete", ()): lambda client, spec: client.delete(spec),
    ("apply_objects", ()): lambda client, spec: client.apply_objects(_job_objects(spec.bu)),
    ("read_object", ()): lambda client, spec: client.read_object(_job_key(spec.bu)),
    ("delete_object", ()): lambda client, spec: client.delete_object(_job_key(spec.bu)),
}
FINETUNE_CALLS = {("apply_objects", ()), ("read_object", ()), ("delete_object", ())}


def test_every_call_the_reconciler_makes_is_replayed() -> None:
    assert production_calls() == set(CASES)


# ---- from requests to what RBAC checks ---------------------------------------------------------


def access_of(request: Recorded) -> list[Access]:
    parts = request.path.strip("/").split("/")
    if parts[0] == "api":
        group, rest = "", parts[2:]
    else:
        assert parts[0] == "apis", request.path
        group, rest = parts[1], parts[3:]
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    query = parse_qs(request.query)
    if request.method == "GET":
        verb = ("watch" if query.get("watch") == ["true"] else "list") if name is None else "get"
    elif request.method == "DELETE":
        verb = "delete" if name is not None else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}[request.method]
    accesses = [Access(verb, group, resource, namespace, name)]
    if request.method == "PATCH" and request.headers.get("content-type") == APPLY_CONTENT_TYPE:
        accesses.append(Access("create", group, resource, namespace, name))
    return accesses


def replay(api_server: FakeApiServer, bu: str) -> set[Access]:
    configuration = Configuration(
        host=api_server.url,
        api_key={"authorization": "test-token"},
        api_key_prefix={"authorization": "Bearer"},
    )
    with KubernetesApplier.from_configuration(configuration, timeout_seconds=5) as client:
        for case in CASES.values():
            case(client, _spec(bu))
        for call, case in CASES.items():
            if call not in FINETUNE_CALLS:
                case(client, SHARED)
    return {access for request in api_server.requests for access in access_of(request)}


# ---- what the chart grants ---------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    role: str
    namespace: str | None  # None: cluster-wide (ClusterRoleBinding)
    rule: dict[str, Any]

    def allows(self, access: Access) -> bool:
        rule = self.rule
        if self.namespace is not None and access.namespace != self.namespace:
            return False
        names = rule.get("resourceNames")
        return (
            access.group in rule.get("apiGroups", [])
            and access.resource in rule["resources"]
            and access.verb in rule["verbs"]
            and (not names or access.name in names)
        )


def reconciler_grants(objects: list[Manifest]) -> list[Grant]:
    def bound(binding: Manifest) -> bool:
        subject = {"kind": "ServiceAccount", "name": RECONCILER_ACCOUNT, "namespace": NAMESPACE}
        return subject in binding["subjects"]

    grants = []
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for binding in find(objects, kind):
            if not bound(binding):
                continue
            ref = binding["roleRef"]
            if ref["kind"] == "ClusterRole":
                role = one(objects, "ClusterRole", ref["name"])
            else:
                role = one(objects, "Role", ref["name"])
            namespace = binding["metadata"].get("namespace") if kind == "RoleBinding" else None
            grants += [Grant(ref["name"], namespace, rule) for rule in role["rules"]]
    return grants


def _business_units(scenario: str) -> list[str]:
    units = scenario_values(scenario).get("tenancy", {}).get("businessUnits", [])
    return [unit["name"] for unit in units]


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if _business_units(s)])
def test_the_reconciler_may_do_what_it_does_and_nothing_more(
    scenario: str,
    rendered_scenarios: dict[str, list[Manifest]],
    api_server: FakeApiServer,
) -> None:
    objects = rendered_scenarios[scenario]
    bu = _business_units(scenario)[0]
    needed = replay(api_server, bu)
    grants = reconciler_grants(objects)

    refused = sorted(a for a in needed if not any(g.allows(a) for g in grants))
    assert refused == [], f"the chart does not allow: {refused}"

    # Every verb of every rule is some request's: nothing is granted "just in case".
    for grant in grants:
        rule = grant.rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    used = any(
                        (a.group, a.resource, a.verb) == (group, resource, verb) for a in needed
                    )
                    assert used, f"{grant.role} grants {verb} {group}/{resource}; nothing uses it"

    # Cluster-wide, only the business units' own namespaces and the shared one, by name.
    for grant in grants:
        if grant.namespace is None:
            assert grant.rule["resources"] == ["namespaces"], grant
            assert sorted(grant.rule["resourceNames"]) == sorted(
                [f"cove-bu-{unit}" for unit in _business_units(scenario)] + [SHARED_NAMESPACE]
            )
    assert {a.namespace for a in needed if a.namespace} == {f"cove-bu-{bu}", SHARED_NAMESPACE}

    # And not in a namespace the chart did not bind: another team's namespace is out of reach.
    elsewhere = {
        Access(a.verb, a.group, a.resource, "kube-system" if a.namespace else None, "kube-system")
        for a in needed
    }
    assert not any(g.allows(a) for a in elsewhere for g in grants)


def test_without_business_units_the_reconciler_works_only_in_the_shared_namespace(
    rendered_scenarios: dict[str, list[Manifest]], render: Render
) -> None:
    grants = reconciler_grants(rendered_scenarios["defaults"])
    assert {g.namespace for g in grants} == {None, SHARED_NAMESPACE}
    assert {n for g in grants for n in g.rule.get("resourceNames", [])} == {SHARED_NAMESPACE}
    off = render({"modelServing": {"sharedInstances": {"enabled": False}}})
    assert reconciler_grants(off) == []
    assert find(off, "Namespace") == []


def test_cluster_wide_names_carry_the_release_namespace(chart: Chart) -> None:
    """Two releases in two namespaces of one cluster must not share (or overwrite) a
    ClusterRole."""
    values = {"tenancy": {"businessUnits": [{"name": "payments"}]}}
    names = {}
    for namespace in ("cove", "cove-staging"):
        objects = parse_manifests(chart.render(values, name=RELEASE, namespace=namespace))
        cluster_scoped = [
            o["metadata"]["name"]
            for o in objects
            if o["kind"] in {"ClusterRole", "ClusterRoleBinding"}
        ]
        assert cluster_scoped, namespace
        assert all(name.startswith(f"{namespace}-") for name in cluster_scoped), cluster_scoped
        names[namespace] = set(cluster_scoped)
    assert not names["cove"] & names["cove-staging"]


def test_a_request_outside_the_grants_is_refused(
    rendered_scenarios: dict[str, list[Manifest]],
) -> None:
    """The authorizer of this test refuses what RBAC refuses."""
    grants = reconciler_grants(rendered_scenarios["ha"])
    allowed = Access("patch", "apps", "deployments", "cove-bu-payments", "coder")
    assert any(g.allows(allowed) for g in grants)
    for refused in [
        Access("delete", "", "namespaces", None, "cove-bu-payments"),
        Access("get", "", "secrets", "cove-bu-payments", "cove-finetune"),
        Access("patch", "apps", "deployments", "cove-bu-unknown", "coder"),
        Access("patch", "", "namespaces", None, "kube-system"),
        Access("delete", "", "resourcequotas", "cove-bu-payments", "cove-gpu-quota"),
    ]:
        assert not any(g.allows(refused) for g in grants), refused


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_binding_is_named_after_its_role(
    scenario: str, rendered_scenarios: dict[str, list[Manifest]]
) -> None:
    """A binding's roleRef cannot change in place: the API server refuses the update, and a
    `helm upgrade` that renames a role would stop there. Naming the binding after the role makes
    a new role come with a new binding."""
    objects = rendered_scenarios[scenario]
    for binding in find(objects, "RoleBinding") + find(objects, "ClusterRoleBinding"):
        assert binding["metadata"]["name"] == binding["roleRef"]["name"], binding["metadata"]
