"""`cove deployments render`: what an admin runs to review the objects before they are applied."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cove.platform.deployments.k8s.cli import deployments_app
from cove.platform.deployments.k8s.render import render, to_yaml
from cove.platform.deployments.k8s.spec import DeploymentSpec

SPEC: dict[str, Any] = {
    "bu": "payments",
    "name": "coder",
    "mode": "shared",
    "model": {
        "name": "qwen2.5-coder-7b",
        "location": "base/qwen2.5-coder-7b",
        "context_length": 32768,
    },
    "replicas": 2,
    "gpus_per_replica": 2,
    "gpu_type": "NVIDIA-L40S",
    "gpu_quota": 4,
    "vllm": {"tensor_parallel_size": 2, "max_loras": 4},
    "adapters": [{"name": "payments-sdk-v3", "location": "adapters/payments/sdk-v3"}],
    "image": {"repository": "registry.internal/vllm/vllm-openai", "tag": "v0.11.0"},
}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_render_prints_exactly_the_objects_the_reconciler_applies(
    runner: CliRunner, tmp_path: Path
) -> None:
    spec_file = tmp_path / "coder.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))

    result = runner.invoke(deployments_app, ["render", "--spec", str(spec_file)])

    assert result.exit_code == 0, result.output
    expected = render(DeploymentSpec.model_validate(SPEC))
    assert result.stdout == to_yaml(expected)
    assert list(yaml.safe_load_all(result.stdout)) == expected
    again = runner.invoke(deployments_app, ["render", "--spec", str(spec_file)])
    assert again.stdout == result.stdout


def test_render_reads_json_specs_and_prints_a_json_list(runner: CliRunner, tmp_path: Path) -> None:
    spec_file = tmp_path / "coder.json"
    spec_file.write_text(json.dumps(SPEC))

    result = runner.invoke(
        deployments_app, ["render", "--spec", str(spec_file), "--output", "json"]
    )

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["kind"] == "List"
    assert document["items"] == render(DeploymentSpec.model_validate(SPEC))


def test_an_invalid_spec_exits_2_with_one_line_per_problem(
    runner: CliRunner, tmp_path: Path
) -> None:
    bad = {
        **SPEC,
        "bu": "Payments",
        "replicas": -1,
        "vllm": {"tensor_parallel_size": 4, "extra_args": {"trust-remote-code": True}},
        "image": {"repository": "registry.internal/vllm/vllm-openai", "tag": "latest"},
    }
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(yaml.safe_dump(bad))

    result = runner.invoke(deployments_app, ["render", "--spec", str(spec_file)])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"error: invalid deployment spec in {spec_file}:" in result.stderr
    for line in (
        "  bu: 'Payments' is not a BU slug",
        "  replicas: Input should be greater than or equal to 0",
        "  vllm.extra_args: 'trust-remote-code' is not an allowed vLLM flag",
        "  image: tag 'latest' is refused",
    ):
        assert line in result.stderr
    assert "Traceback" not in result.output


def test_cross_field_problems_are_reported_by_field(runner: CliRunner, tmp_path: Path) -> None:
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(yaml.safe_dump({**SPEC, "vllm": {"tensor_parallel_size": 4}}))

    result = runner.invoke(deployments_app, ["render", "--spec", str(spec_file)])

    assert result.exit_code == 2
    assert "  vllm.tensor_parallel_size (4) must equal gpus_per_replica (2)" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("bu: [unclosed", "is not valid YAML or JSON"),
        ("- a list\n- not a spec\n", "must hold one mapping"),
        ("", "must hold one mapping"),
    ],
)
def test_unreadable_spec_files_exit_2_with_a_message(
    runner: CliRunner, tmp_path: Path, content: str, message: str
) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(content)

    result = runner.invoke(deployments_app, ["render", "--spec", str(spec_file)])

    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_a_missing_spec_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(deployments_app, ["render", "--spec", str(tmp_path / "nope.yaml")])

    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def test_the_module_runs_as_a_command(tmp_path: Path) -> None:
    spec_file = tmp_path / "coder.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))

    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "cove.platform.deployments.k8s.cli",
            "render",
            "--spec",
            str(spec_file),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == to_yaml(render(DeploymentSpec.model_validate(SPEC)))
