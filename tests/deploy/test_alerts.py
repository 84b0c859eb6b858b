"""The chart's PrometheusRule: the alerts docs/operations.md explains, on metrics that exist.

Every expression is parsed by a real PromQL parser (`promql-parser`, the Rust parser of
GreptimeDB); every metric it reads must be one the gateway exports (its own registry, as
`GET /metrics` serves it) or Prometheus' `up`, every label it matches or groups by must be one
that metric or its scrape target carries, and every selector is scoped to the release's
namespace, so two installs never alert on each other. Each alert has a runbook entry. No
Prometheus runs here, so the rules are not evaluated against a live series.
"""

from __future__ import annotations

import re
from typing import Any

import promql_parser
import pytest
from prometheus_client import CollectorRegistry

from cove.gateway.metrics import GatewayMetrics

from .conftest import NAMESPACE, REPO, Manifest, Render, find, one, scenario_values

OPERATIONS = REPO / "docs" / "operations.md"
# Labels Prometheus adds to every series scraped through the ServiceMonitor.
TARGET_LABELS = {"namespace", "service", "pod", "job", "instance", "container", "endpoint"}


def exported(registry: CollectorRegistry) -> dict[str, set[str]]:
    """Series names the registry exposes and the labels each carries."""
    suffixes = {
        "counter": ["_total", "_created"],
        "histogram": ["_bucket", "_sum", "_count", "_created"],
        "gauge": [""],
    }
    series: dict[str, set[str]] = {"up": set()}
    for collector in list(registry._collector_to_names):
        labels = set(getattr(collector, "_labelnames", ()))
        for family in collector.describe():
            for suffix in suffixes[family.type]:
                extra = {"le"} if suffix == "_bucket" else set()
                series[family.name + suffix] = labels | extra
    return series


def selectors(expr: Any) -> list[Any]:
    if isinstance(expr, promql_parser.VectorSelector):
        return [expr]
    if isinstance(expr, promql_parser.MatrixSelector):
        return [expr.vector_selector]
    found: list[Any] = []
    for attr in ("lhs", "rhs", "expr", "param"):
        child = getattr(expr, attr, None)
        if child is not None and not isinstance(child, int | float | str):
            found += selectors(child)
    if isinstance(expr, promql_parser.Call):
        for arg in expr.args:
            found += selectors(arg)
    return found


def grouping(expr: Any) -> set[str]:
    labels: set[str] = set()
    if isinstance(expr, promql_parser.AggregateExpr) and expr.modifier is not None:
        labels |= set(expr.modifier.labels)
    for attr in ("lhs", "rhs", "expr"):
        child = getattr(expr, attr, None)
        if child is not None:
            labels |= grouping(child)
    if isinstance(expr, promql_parser.Call):
        for arg in expr.args:
            labels |= grouping(arg)
    return labels


def _rules(objects: list[Manifest]) -> list[dict[str, Any]]:
    rule = one(objects, "PrometheusRule", "cove-gateway")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_every_alert_reads_metrics_the_gateway_exports(
    rendered_scenarios: dict[str, list[Manifest]],
) -> None:
    series = exported(GatewayMetrics().registry)
    rules = _rules(rendered_scenarios["external-services"])
    assert len(rules) >= 4
    for rule in rules:
        expr = promql_parser.parse(rule["expr"])  # raises on a syntax error
        found = selectors(expr)
        assert found, rule["alert"]
        for selector in found:
            assert selector.name in series, f"{rule['alert']}: nothing exports {selector.name}"
            allowed = series[selector.name] | TARGET_LABELS
            matchers = {m.name: m.value for m in selector.matchers.matchers}
            assert set(matchers) <= allowed, f"{rule['alert']}: {sorted(set(matchers) - allowed)}"
            assert matchers.get("namespace") == NAMESPACE, rule["alert"]
        for label in grouping(expr):
            assert any(label in series[s.name] | TARGET_LABELS for s in found), label
        assert re.fullmatch(r"[0-9]+[smh]", rule["for"]), rule
        assert rule["labels"]["severity"] in {"critical", "warning"}


def test_every_alert_has_a_runbook_entry(rendered_scenarios: dict[str, list[Manifest]]) -> None:
    headings = {
        line.removeprefix("### ").strip()
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("### ")
    }
    for rule in _rules(rendered_scenarios["external-services"]):
        assert rule["alert"] in headings, f"docs/operations.md has no ### {rule['alert']}"
        anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert rule["annotations"]["summary"]


def test_the_rule_is_picked_up_by_the_prometheus_the_values_name(
    rendered_scenarios: dict[str, list[Manifest]],
) -> None:
    rule = one(rendered_scenarios["external-services"], "PrometheusRule", "cove-gateway")
    wanted = scenario_values("external-services")["metrics"]["prometheusRule"]["labels"]
    assert wanted.items() <= rule["metadata"]["labels"].items()
    assert find(rendered_scenarios["defaults"], "PrometheusRule") == []


@pytest.mark.parametrize(
    ("values", "alert", "threshold"),
    [
        ({"errorRatio": 0.05}, "CoveGatewayErrors", "> 0.05"),
        ({"firstTokenSeconds": 0.4}, "CoveGatewaySlowFirstToken", "> 0.4"),
        ({"eventsPending": 20000}, "CoveGatewayEventsBacklog", "> 20000"),
    ],
)
def test_thresholds_come_from_the_values(
    render: Render, values: dict[str, Any], alert: str, threshold: str
) -> None:
    objects = render({"metrics": {"prometheusRule": {"enabled": True, **values}}})
    (rule,) = [r for r in _rules(objects) if r["alert"] == alert]
    assert rule["expr"].endswith(threshold), rule["expr"]
    promql_parser.parse(rule["expr"])
