"""checkov over the rendered chart, the Terraform module and the Dockerfiles: no findings.

checkov lives in its own virtual environment (scripts/ensure-checkov.sh): its pins would move
the versions of libraries Cove runs with. Offline it cannot fetch severities, so no finding is
filtered by severity: every check passes, or is skipped in the scanned tree's .checkov.yaml with
the reason written next to it.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helm_python import Chart

from .conftest import (
    CHART_DIR,
    DOCKER_DIR,
    NAMESPACE,
    RELEASE,
    REPO,
    SCENARIOS,
    TERRAFORM_DIR,
    scenario_values,
)

HELM_CONFIG = CHART_DIR.parent / ".checkov.yaml"
TERRAFORM_CONFIG = TERRAFORM_DIR / ".checkov.yaml"
DOCKER_CONFIG = DOCKER_DIR / ".checkov.yaml"


@pytest.fixture(scope="session")
def checkov() -> Path:
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "ensure-checkov.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/ensure-checkov.sh failed:\n{result.stderr[-3000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def run_checkov(checkov: Path, *args: str) -> dict[str, Any]:
    """Run checkov and add up the summaries of every framework it reports."""
    result = subprocess.run(
        [str(checkov), *args, "--output", "json", "--soft-fail", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "LOG_LEVEL": "ERROR"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: Any = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    total: dict[str, Any] = {"passed": 0, "failed": 0, "parsing_errors": 0, "resource_count": 0}
    failures: list[str] = []
    for entry in reports:
        summary = entry.get("summary", entry)
        for key in list(total):
            total[key] += int(summary.get(key, 0))
        for check in entry.get("results", {}).get("failed_checks", []):
            failures.append(f"{check['check_id']} {check['resource']} ({check['file_path']})")
    total["failures"] = failures
    return total


def render_to(directory: Path, scenarios: list[str]) -> None:
    with Chart.load(CHART_DIR) as chart:
        for scenario in scenarios:
            rendered = chart.render(scenario_values(scenario), name=RELEASE, namespace=NAMESPACE)
            target = directory / scenario
            target.mkdir(parents=True)
            for path, text in rendered.items():
                if path.endswith(".yaml") and text.strip():
                    (target / path.replace("/", "_")).write_text(text)


def test_chart_has_no_findings(checkov: Path, tmp_path: Path) -> None:
    render_to(tmp_path, SCENARIOS)
    summary = run_checkov(checkov, "--config-file", str(HELM_CONFIG), "--directory", str(tmp_path))
    assert summary["failures"] == []
    assert summary["failed"] == 0
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 100
    assert summary["passed"] >= 1000


def test_airgapped_scenario_pins_every_image_by_digest(checkov: Path, tmp_path: Path) -> None:
    # The helm config skips CKV_K8S_43 (digests) for tag-based scenarios; enforce it here.
    render_to(tmp_path, ["airgapped", "defaults"])
    only_digests = ["--framework", "kubernetes", "--check", "CKV_K8S_43"]
    pinned = run_checkov(checkov, *only_digests, "--directory", str(tmp_path / "airgapped"))
    assert pinned["failures"] == []
    assert pinned["passed"] >= 8
    by_tag = run_checkov(checkov, *only_digests, "--directory", str(tmp_path / "defaults"))
    assert by_tag["failed"] > 0  # the check is live: tag-only images fail it


def test_checkov_catches_an_insecure_manifest(checkov: Path, tmp_path: Path) -> None:
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  namespace: cove\nspec:\n"
        "  containers:\n    - name: bad\n      image: busybox:1.36\n"
        "      securityContext:\n        privileged: true\n"
    )
    summary = run_checkov(checkov, "--config-file", str(HELM_CONFIG), "--directory", str(tmp_path))
    assert any(f.startswith("CKV_K8S_16 ") for f in summary["failures"])  # privileged


def test_terraform_has_no_findings(checkov: Path) -> None:
    summary = run_checkov(
        checkov, "--config-file", str(TERRAFORM_CONFIG), "--directory", str(TERRAFORM_DIR)
    )
    assert summary["failures"] == []
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 10


def test_dockerfiles_have_no_findings(checkov: Path) -> None:
    summary = run_checkov(
        checkov, "--config-file", str(DOCKER_CONFIG), "--directory", str(DOCKER_DIR)
    )
    assert summary["failures"] == []
    assert summary["parsing_errors"] == 0
    assert summary["passed"] >= 4 * 10


@pytest.mark.parametrize("config", [HELM_CONFIG, TERRAFORM_CONFIG, DOCKER_CONFIG])
def test_every_skipped_check_is_explained(config: Path) -> None:
    lines = config.read_text().splitlines()
    for index, line in enumerate(lines):
        skipped = re.fullmatch(r"\s*-\s*(CKV2?_[A-Z0-9]+_[0-9]+)\s*", line)
        if not skipped:
            continue
        # The comment block above the entry (or above the group it belongs to) names the check.
        above = []
        for previous in reversed(lines[:index]):
            if previous.strip().startswith("#"):
                above.append(previous)
            elif re.fullmatch(r"\s*-\s*CKV2?_[A-Z0-9_]+\s*", previous):
                continue
            else:
                break
        explanation = " ".join(above)
        assert skipped[1] in explanation, f"{config}: {skipped[1]} is skipped without a reason"
        assert len(explanation) > 120, f"{config}: {skipped[1]} needs a real reason"
