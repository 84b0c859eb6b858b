"""`cove bu export|delete|restore` against the real database and broker."""

from __future__ import annotations

import tarfile
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from cove.platform.cli import app
from cove.platform.core.settings import CoveSettings
from cove.platform.lifecycle import service
from tests.platform.deployments_support import broker_url, queued_tasks


@pytest.fixture
def cli_env(settings: CoveSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COVE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("COVE_SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv("COVE_REDIS_URL", broker_url(settings))
    monkeypatch.setenv("COVE_HOME", str(tmp_path))
    import redis

    redis.Redis.from_url(broker_url(settings)).flushdb()


def test_delete_exports_first_and_restore_cancels(
    cli_env: None, settings: CoveSettings, tmp_path: Path
) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["bu", "create", "payments"]).exit_code == 0
    out = tmp_path / "exports"

    exported = runner.invoke(app, ["bu", "export", "payments", "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    archive = Path(orjson.loads(exported.stdout)["file"])
    assert archive.parent == out
    with tarfile.open(archive) as tar:
        assert any(name.endswith("/manifest.json") for name in tar.getnames())

    deleted = runner.invoke(
        app, ["bu", "delete", "payments", "--grace-days", "3", "--out", str(out)]
    )
    assert deleted.exit_code == 0, deleted.output
    body = orjson.loads(deleted.stdout)
    assert body["business_unit"]["status"] == "deleting"
    assert Path(body["export"]["file"]).is_file()
    assert "purge" not in body
    assert len(list(out.glob("cove-bu-payments-*.tar.gz"))) >= 1

    again = runner.invoke(app, ["bu", "delete", "payments", "--now", "--out", str(out)])
    assert again.exit_code == 1
    assert "bu_already_deleting" in again.output

    restored = runner.invoke(app, ["bu", "restore", "payments"])
    assert restored.exit_code == 0, restored.output
    assert orjson.loads(restored.stdout)["status"] == "active"
    not_deleting = runner.invoke(app, ["bu", "restore", "payments"])
    assert not_deleting.exit_code == 1
    assert "bu_not_deleting" in not_deleting.output

    now = runner.invoke(app, ["bu", "delete", "payments", "--now", "--out", str(out)])
    assert now.exit_code == 0, now.output
    assert orjson.loads(now.stdout)["purge"] == "sent"
    bu_id = orjson.loads(now.stdout)["business_unit"]["id"]
    assert (service.PURGE, [bu_id]) in queued_tasks(broker_url(settings))


def test_bad_input_exits_non_zero_with_the_code(cli_env: None) -> None:
    runner = CliRunner()
    for args in (["export", "ghost"], ["delete", "ghost"], ["restore", "ghost"]):
        result = runner.invoke(app, ["bu", *args])
        assert result.exit_code == 1, args
        assert "bu_not_found" in result.output
    both = runner.invoke(app, ["bu", "delete", "ghost", "--now", "--grace-days", "3"])
    assert both.exit_code == 2
    negative = runner.invoke(app, ["bu", "delete", "ghost", "--grace-days", "-1"])
    assert negative.exit_code == 2
