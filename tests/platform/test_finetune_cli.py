"""`cove finetune jobs …` against the real database and the Redis broker (no job runs here:
the start task is read back from the broker's queue)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import yaml
from typer.testing import CliRunner

from cove.platform.core.settings import CoveSettings
from cove.platform.finetuning.cli import jobs_app
from cove.platform.finetuning.tasks import START
from cove.platform.models.cli import models_app
from tests.platform.deployments_support import broker_url, queued_tasks

SPEC = {
    "name": "sdk-v1",
    "repositories": [
        {"location": "/srv/code/acme-sdk", "role": "sdk"},
        {"location": "/srv/code/billing"},
    ],
    "base_model": "cove-tiny",
    "hyperparameters": {"max_steps": 50},
}


@pytest.fixture
def cli_env(
    settings: CoveSettings,
    world: dict[str, Any],
    tiny_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> str:
    """The CLI's environment, the tiny model granted to bu-a; returns the broker URL."""
    url = broker_url(settings)
    redis.Redis.from_url(url).flushdb()
    monkeypatch.setenv("COVE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("COVE_REDIS_URL", url)
    monkeypatch.setenv("COVE_SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv("COVE_HOME", str(tmp_path))
    runner = CliRunner()
    added = runner.invoke(models_app, ["add", "cove-tiny", "--location", str(tiny_model)])
    assert added.exit_code == 0, added.output
    granted = runner.invoke(models_app, ["grant", "cove-tiny", "--bu", "bu-a"])
    assert granted.exit_code == 0, granted.output
    return url


def _spec(tmp_path: Path, body: Any, name: str = "job.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body))
    return str(path)


def _jobs(*args: str) -> Any:
    return CliRunner().invoke(jobs_app, list(args))


def test_submit_list_show_cancel_retry_and_logs(cli_env: str, tmp_path: Path) -> None:
    submitted = _jobs("submit", _spec(tmp_path, SPEC), "--bu", "bu-a")
    assert submitted.exit_code == 0, submitted.output
    job = orjson.loads(submitted.stdout)
    assert job["status"] == "queued"
    assert job["name"] == "sdk-v1"
    assert job["adapter_name"] == "bu-a-sdk-v1"
    assert job["created_by"].startswith("cli:")
    # The start task went to the broker, as the API's does.
    assert queued_tasks(cli_env) == [(START, [job["id"], "1"])]

    listed = _jobs("list", "--bu", "bu-a")
    assert [j["id"] for j in orjson.loads(listed.stdout)] == [job["id"]]
    assert orjson.loads(_jobs("list", "--bu", "bu-a", "--status", "succeeded").stdout) == []
    shown = orjson.loads(_jobs("show", job["id"], "--bu", "bu-a").stdout)
    assert shown["spec"]["hyperparameters"]["max_steps"] == 50

    cancelled = _jobs("cancel", job["id"], "--bu", "bu-a")
    assert cancelled.exit_code == 0, cancelled.output
    assert orjson.loads(cancelled.stdout)["status"] == "cancelled"
    again = _jobs("cancel", job["id"], "--bu", "bu-a")
    assert again.exit_code == 1
    assert "(job_finished)" in again.stderr

    followed = _jobs("logs", job["id"], "--bu", "bu-a", "--follow", "--interval", "0.1")
    assert followed.exit_code == 1  # it ended, and not as succeeded
    lines = followed.stdout.strip().splitlines()
    assert any("cancel" in line for line in lines[:-1]), lines
    assert orjson.loads(lines[-1])["status"] == "cancelled"

    retried = _jobs("retry", job["id"], "--bu", "bu-a")
    assert retried.exit_code == 0, retried.output
    assert orjson.loads(retried.stdout)["attempt"] == 2
    assert sorted(queued_tasks(cli_env)) == [(START, [job["id"], "1"]), (START, [job["id"], "2"])]


def test_another_bu_cannot_see_or_touch_the_job(cli_env: str, tmp_path: Path) -> None:
    job = orjson.loads(_jobs("submit", _spec(tmp_path, SPEC), "--bu", "bu-a").stdout)
    for command in ("show", "cancel", "retry", "logs"):
        seen = _jobs(command, job["id"], "--bu", "bu-b")
        assert seen.exit_code == 1, (command, seen.output)
        assert "(job_not_found)" in seen.stderr
    assert orjson.loads(_jobs("list", "--bu", "bu-b").stdout) == []
    # bu-b was not granted the base model.
    refused = _jobs("submit", _spec(tmp_path, SPEC), "--bu", "bu-b")
    assert refused.exit_code == 1
    assert "(model_not_granted)" in refused.stderr
    assert orjson.loads(_jobs("show", job["id"], "--bu", "bu-a").stdout)["status"] == "queued"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({**SPEC, "name": "Bad Name"}, "name: String should match pattern"),
        ({k: v for k, v in SPEC.items() if k != "repositories"}, "repositories: Field required"),
        ({**SPEC, "preset": "huge"}, "preset: Input should be"),
        ({**SPEC, "hyperparameters": {"rank": 0}}, "hyperparameters.rank"),
        ({**SPEC, "surprise": 1}, "surprise: Extra inputs are not permitted"),
        (["not", "a", "job"], "must hold a mapping"),
    ],
)
def test_an_invalid_spec_file_is_refused_before_anything_is_written(
    cli_env: str, tmp_path: Path, body: Any, expected: str
) -> None:
    refused = _jobs("submit", _spec(tmp_path, body), "--bu", "bu-a")
    assert refused.exit_code == 2, refused.output
    assert expected in refused.stderr
    assert "(invalid_spec)" in refused.stderr
    assert orjson.loads(_jobs("list", "--bu", "bu-a").stdout) == []
    assert queued_tasks(cli_env) == []


def test_admission_errors_and_unknown_bus(cli_env: str, tmp_path: Path) -> None:
    only_sdk = {**SPEC, "repositories": [{"location": "/srv/code/acme-sdk", "role": "sdk"}]}
    refused = _jobs("submit", _spec(tmp_path, only_sdk), "--bu", "bu-a")
    assert refused.exit_code == 1
    assert "(consumer_repository_required)" in refused.stderr
    leaky = {
        **SPEC,
        "repositories": [
            {"location": "https://bot:s3cret@git.acme.internal/sdk.git", "role": "sdk"},
            {"location": "/srv/code/billing"},
        ],
    }
    refused = _jobs("submit", _spec(tmp_path, leaky), "--bu", "bu-a")
    assert refused.exit_code == 1
    assert "(credentials_in_url)" in refused.stderr
    assert "s3cret" not in refused.output
    ghost = _jobs("list", "--bu", "ghost")
    assert ghost.exit_code == 1
    assert "no business unit with slug 'ghost'" in ghost.stderr
    missing = _jobs("submit", str(tmp_path / "nope.yaml"), "--bu", "bu-a")
    assert missing.exit_code == 2
    assert "cannot read" in missing.stderr
    assert orjson.loads(_jobs("list", "--bu", "bu-a").stdout) == []
