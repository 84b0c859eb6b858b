"""`cove models …` and `cove deployments …` against the real database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from typer.testing import CliRunner

from cove.platform.api.app import PlatformSettings, create_app
from cove.platform.core.settings import CoveSettings
from cove.platform.deployments.cli import deployments_app
from cove.platform.models.cli import models_app
from tests.conftest import ServerThread
from tests.factories import bearer
from tests.platform.deployments_support import FakeVllm
from tests.platform.test_k8s_cli import SPEC


@pytest.fixture
def cli_env(settings: CoveSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COVE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("COVE_SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv("COVE_HOME", str(tmp_path))
    monkeypatch.setenv("COVE_RUNTIME_STATE_DIR", str(tmp_path / "runtime"))


def test_models_add_grant_and_list(cli_env: None, world: dict[str, Any], tiny_model: Path) -> None:
    runner = CliRunner()
    added = runner.invoke(models_app, ["add", "cove-tiny", "--location", str(tiny_model)])
    assert added.exit_code == 0, added.output
    assert orjson.loads(added.stdout)["architecture"] == "LlamaForCausalLM"
    missing = runner.invoke(models_app, ["add", "ghost", "--location", "/nonexistent/ghost"])
    assert missing.exit_code == 1
    assert "does not exist" in missing.stderr
    granted = runner.invoke(models_app, ["grant", "cove-tiny", "--bu", "bu-a"])
    assert granted.exit_code == 0, granted.output
    assert orjson.loads(granted.stdout)["bu_slug"] == "bu-a"
    unknown = runner.invoke(models_app, ["grant", "cove-tiny", "--bu", "ghost"])
    assert unknown.exit_code == 1
    assert "no business unit with slug 'ghost'" in unknown.stderr
    listed = runner.invoke(models_app, ["list"])
    assert [m["name"] for m in orjson.loads(listed.stdout)] == ["cove-tiny"]
    revoked = runner.invoke(models_app, ["revoke", "cove-tiny", "--bu", "bu-a"])
    assert revoked.exit_code == 0, revoked.output


def test_deployments_list_and_reconcile(
    cli_env: None, world: dict[str, Any], tiny_model: Path, settings: CoveSettings
) -> None:
    runner = CliRunner()
    runner.invoke(models_app, ["add", "cove-tiny", "--location", str(tiny_model)])
    runner.invoke(models_app, ["grant", "cove-tiny", "--bu", "bu-a"])
    platform = create_app(PlatformSettings(**settings.model_dump()))
    with ServerThread(FakeVllm().app()) as instance, ServerThread(platform) as server:
        created = httpx.post(
            f"{server.url}/api/v1/bus/{world['a']['bu'].id}/deployments",
            json={"name": "main", "model": "cove-tiny", "endpoint_url": instance.url},
            headers=bearer(world["a"]["admin_key"]),
        )
        assert created.status_code == 201, created.text
        outcome = runner.invoke(deployments_app, ["reconcile", created.json()["id"]])
        assert outcome.exit_code == 0, outcome.output
        assert orjson.loads(outcome.stdout)["status"] == "ready"
    listed = runner.invoke(deployments_app, ["list", "--bu", "bu-a"])
    assert listed.exit_code == 0, listed.output
    assert [(d["name"], d["status"]) for d in orjson.loads(listed.stdout)] == [("main", "ready")]


def test_render_is_part_of_the_deployments_commands(tmp_path: Path) -> None:
    spec = tmp_path / "coder.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    result = CliRunner().invoke(deployments_app, ["render", "--spec", str(spec)])
    assert result.exit_code == 0, result.output
    assert "kind: Deployment" in result.stdout


def test_shared_instances_from_the_terminal(
    cli_env: None, world: dict[str, Any], tiny_model: Path
) -> None:
    runner = CliRunner()
    runner.invoke(models_app, ["add", "cove-tiny", "--location", str(tiny_model)])
    with ServerThread(FakeVllm().app()) as instance:
        created = runner.invoke(
            deployments_app,
            [
                "shared",
                "create",
                "tiny-shared",
                "--model",
                "cove-tiny",
                "--endpoint-url",
                instance.url,
                "--max-lora-rank",
                "16",
            ],
        )
        assert created.exit_code == 0, created.output
        shown = orjson.loads(created.stdout)
        assert (shown["tenant_id"], shown["mode"], shown["max_lora_rank"]) == (None, "shared", 16)
    unknown = runner.invoke(
        deployments_app,
        ["shared", "create", "other", "--model", "ghost", "--endpoint-url", "http://127.0.0.1:9"],
    )
    assert unknown.exit_code == 1
    assert "model_not_found" in unknown.stderr
    bad = runner.invoke(deployments_app, ["shared", "create", "Bad Name", "--model", "cove-tiny"])
    assert bad.exit_code == 2
    assert "name" in bad.stderr
    listed = runner.invoke(deployments_app, ["shared", "list"])
    assert [d["name"] for d in orjson.loads(listed.stdout)] == ["tiny-shared"]
    deleted = runner.invoke(deployments_app, ["shared", "delete", "tiny-shared"])
    assert deleted.exit_code == 0, deleted.output
    assert orjson.loads(deleted.stdout)["desired_state"] == "deleted"
    missing = runner.invoke(deployments_app, ["shared", "delete", "nope"])
    assert missing.exit_code == 1
    assert "no shared instance named 'nope'" in missing.stderr


def test_logs_prints_the_last_lines_of_a_local_instance(cli_env: None, tmp_path: Path) -> None:
    deployment = "0b5f2f3e-6a43-4bd5-9a53-7d1f00000001"
    directory = tmp_path / "runtime" / deployment
    directory.mkdir(parents=True)
    (directory / "vllm.log").write_text("".join(f"line {n}\n" for n in range(100)))
    runner = CliRunner()
    shown = runner.invoke(deployments_app, ["logs", deployment, "--lines", "3"])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == "line 97\nline 98\nline 99\n"
    missing = runner.invoke(deployments_app, ["logs", "0b5f2f3e-6a43-4bd5-9a53-7d1f00000002"])
    assert missing.exit_code == 1
    assert "no vLLM log" in missing.stderr
    bad = runner.invoke(deployments_app, ["logs", "not-a-uuid"])
    assert bad.exit_code == 2
