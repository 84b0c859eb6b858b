"""`cove finetune …` as an admin runs it: JSON on the last line, clear exits on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cove.finetune.cli import finetune_app, resolve_repos
from cove.finetune.errors import InvalidDataset
from cove.finetune.sources import RepoSpec
from tests.finetune.synthetic import write_consumers, write_sdk

runner = CliRunner()


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    return write_sdk(root / "ledgerlink"), write_consumers(root / "payments", files=24, seed=2)


def _last_json(output: str) -> dict[str, Any]:
    value = json.loads(output.strip().splitlines()[-1])
    assert isinstance(value, dict)
    return value


def test_sdk_names_a_repo_by_path_or_name_or_adds_one(tmp_path: Path) -> None:
    assert resolve_repos(["/r/ledgerlink", "/r/payments"], ["ledgerlink"]) == [
        RepoSpec("/r/ledgerlink", "sdk"),
        RepoSpec("/r/payments", "consumer"),
    ]
    assert resolve_repos(["/r/payments"], [str(tmp_path)]) == [
        RepoSpec(str(tmp_path), "sdk"),
        RepoSpec("/r/payments", "consumer"),
    ]
    with pytest.raises(InvalidDataset, match="neither one of the --repo values"):
        resolve_repos(["/r/payments"], ["ledgerlink"])
    with pytest.raises(InvalidDataset, match="name the SDK"):
        resolve_repos(["/r/payments"], [])


def test_dataset_command_builds_and_prints_a_summary(
    repos: tuple[Path, Path], tmp_path: Path
) -> None:
    sdk, consumers = repos
    out = tmp_path / "dataset"
    result = runner.invoke(
        finetune_app,
        [
            "dataset",
            "--repo",
            str(sdk),
            "--repo",
            str(consumers),
            "--sdk",
            "ledgerlink",
            "--out",
            str(out),
            "--min-train-examples",
            "10",
            "--min-eval-examples",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = _last_json(result.stdout)
    assert summary["state"] == "succeeded"
    assert summary["dataset_hash"].startswith("sha256:")
    assert summary["examples"]["train"] > 10
    assert (out / "train.jsonl").is_file()


def test_dataset_command_explains_an_unreachable_repository(
    repos: tuple[Path, Path], tmp_path: Path
) -> None:
    result = runner.invoke(
        finetune_app,
        [
            "dataset",
            "--repo",
            str(repos[1]),
            "--sdk",
            "https://127.0.0.1:9/acme/ledgerlink.git",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 1
    summary = _last_json(result.stdout)
    assert summary["reason"]["code"] == "repository_unreachable"
    assert "cannot clone https://127.0.0.1:9/acme/ledgerlink.git" in result.output


def test_run_command_fails_the_gate_and_registers_nothing(
    repos: tuple[Path, Path], tiny_model: Path, tmp_path: Path
) -> None:
    sdk, consumers = repos
    result = runner.invoke(
        finetune_app,
        [
            "run",
            "--repo",
            str(consumers),
            "--sdk",
            str(sdk),
            "--base-model",
            str(tiny_model),
            "--out",
            str(tmp_path / "job"),
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--context-length",
            "128",
            "--min-recall-gain",
            "0.99",
            "--eval-max-examples",
            "4",
            "--cpu-threads",
            "1",
        ],
    )
    assert result.exit_code == 1, result.output
    summary = _last_json(result.stdout)
    assert summary["state"] == "failed"
    assert summary["reason"]["code"] in ("promotion_gate_failed", "too_little_data")
    assert summary["registered"] is None
    assert not (tmp_path / "registry.json").exists()


def test_the_module_runs_as_a_command() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "cove.finetune.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    for command in ("dataset", "train", "eval", "run", "bench"):
        assert command in completed.stdout


def test_train_then_eval_stage_by_stage(
    repos: tuple[Path, Path], tiny_model: Path, tmp_path: Path
) -> None:
    sdk, consumers = repos
    dataset = tmp_path / "dataset"
    sources = ["--repo", str(sdk), "--repo", str(consumers), "--sdk", "ledgerlink"]
    floors = ["--min-train-examples", "10", "--min-eval-examples", "2"]
    built = runner.invoke(finetune_app, ["dataset", *sources, "--out", str(dataset), *floors])
    assert built.exit_code == 0, built.output
    train = ["train", "--base-model", str(tiny_model), "--dataset", str(dataset)]
    small = ["--batch-size", "2", "--context-length", "128", "--cpu-threads", "1"]
    trained = runner.invoke(
        finetune_app,
        [*train, "--out", str(tmp_path / "training"), "--max-steps", "3", "--rank", "4", *small],
    )
    assert trained.exit_code == 0, trained.output
    training = _last_json(trained.stdout)
    assert (training["state"], training["steps"]) == ("succeeded", 3)
    adapter = Path(training["adapter_dir"])
    assert (adapter / "adapter_model.safetensors").is_file()

    evaluate = ["eval", "--base-model", str(tiny_model), "--adapter", str(adapter)]
    evaluate += ["--dataset", str(dataset), "--out", str(tmp_path / "eval")]
    evaluate += ["--max-examples", "4", "--max-new-tokens", "8", "--cpu-threads", "1"]
    evaluate += ["--min-edit-gain", "-1", "--max-syntax-drop", "1"]
    # Three steps teach nothing: a gate asking for a gain fails (exit 3), a lenient one passes.
    strict = runner.invoke(finetune_app, [*evaluate, "--min-recall-gain", "0.5"])
    assert strict.exit_code == 3, strict.output
    report = _last_json(strict.stdout)
    assert report["gate"]["passed"] is False
    assert report["examples"] == 4
    metrics = {"exact_match", "edit_similarity", "sdk_api_recall", "syntax_validity"}
    assert set(report["base"]) == metrics
    assert set(report["adapter_scores"]) == metrics
    assert (tmp_path / "eval" / "eval_report.md").is_file()
    lenient = runner.invoke(finetune_app, [*evaluate, "--min-recall-gain", "-1"])
    assert lenient.exit_code == 0, lenient.output
    assert _last_json(lenient.stdout)["gate"]["passed"] is True

    explode = ["--max-steps", "40", "--lr", "1.0", "--target-modules", "q_proj,v_proj,lm_head"]
    wild = runner.invoke(finetune_app, [*train, "--out", str(tmp_path / "wild"), *explode, *small])
    assert wild.exit_code == 1, wild.output
    assert "diverged" in wild.output
    assert not (tmp_path / "wild" / "adapter").exists()
