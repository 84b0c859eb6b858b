"""Shared fixtures of the deployment tests: the chart rendered by the real Helm engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_python import Chart

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "cove"
CI_DIR = CHART_DIR / "ci"
TERRAFORM_DIR = REPO / "terraform"
DOCKER_DIR = REPO / "docker"

RELEASE = "cove"
NAMESPACE = "cove"
KUBE_VERSION = "1.30.0"

# "defaults" is the chart with no values file; the others are the scenario files under ci/.
SCENARIOS = [
    "defaults",
    *sorted(p.name.removesuffix("-values.yaml") for p in CI_DIR.glob("*.yaml")),
]

Manifest = dict[str, Any]


def scenario_values(scenario: str) -> dict[str, Any]:
    if scenario == "defaults":
        return {}
    values = yaml.safe_load((CI_DIR / f"{scenario}-values.yaml").read_text())
    assert isinstance(values, dict)
    return values


def parse_manifests(rendered: dict[str, str]) -> list[Manifest]:
    """Every object of a render, in template order, NOTES.txt left out."""
    objects: list[Manifest] = []
    for path in sorted(rendered):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(rendered[path]) if doc)
    return objects


@pytest.fixture(scope="session")
def chart() -> Iterator[Chart]:
    with Chart.load(CHART_DIR) as loaded:
        yield loaded


Render = Callable[..., list[Manifest]]


@pytest.fixture(scope="session")
def render(chart: Chart) -> Render:
    def _render(values: dict[str, Any] | None = None, **options: Any) -> list[Manifest]:
        rendered = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, **options)
        return parse_manifests(rendered)

    return _render


@pytest.fixture(scope="session")
def rendered_scenarios(render: Render) -> dict[str, list[Manifest]]:
    return {scenario: render(scenario_values(scenario)) for scenario in SCENARIOS}


def find(objects: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[Manifest], kind: str, name: str) -> Manifest:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}


def pod_specs(objects: list[Manifest]) -> Iterator[tuple[Manifest, Manifest]]:
    """(object, pod spec) for every object that runs pods."""
    for o in objects:
        if o["kind"] in WORKLOAD_KINDS:
            yield o, o["spec"]["template"]["spec"]
        elif o["kind"] == "Pod":
            yield o, o["spec"]


def containers(spec: Manifest) -> list[Manifest]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_value(container: Manifest, name: str) -> Manifest | None:
    for entry in container.get("env", []):
        if entry["name"] == name:
            return entry
    return None
