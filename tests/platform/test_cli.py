"""The admin commands a platform operator runs, against the real database."""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from cove.platform.cli import app
from cove.platform.core.settings import CoveSettings


@pytest.fixture
def cli_env(settings: CoveSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("COVE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("COVE_SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv("COVE_HOME", str(tmp_path))


def test_bu_create_list_and_apikey_create(cli_env: None) -> None:
    runner = CliRunner()
    created = runner.invoke(app, ["bu", "create", "payments", "--name", "Payments"])
    assert created.exit_code == 0, created.output
    assert orjson.loads(created.stdout)["slug"] == "payments"
    listed = runner.invoke(app, ["bu", "list"])
    assert [bu["slug"] for bu in orjson.loads(listed.stdout)] == ["payments"]
    key = runner.invoke(
        app, ["apikey", "create", "--bu", "payments", "--name", "ci", "--scope", "completions"]
    )
    assert key.exit_code == 0, key.output
    body = orjson.loads(key.stdout)
    assert body["key"].startswith("cove_")
    assert body["scopes"] == ["completions"]


def test_bad_input_exits_non_zero_with_a_message(cli_env: None) -> None:
    runner = CliRunner()
    bad_slug = runner.invoke(app, ["bu", "create", "Not A Slug"])
    assert bad_slug.exit_code == 2
    assert "invalid business unit" in bad_slug.stderr
    runner.invoke(app, ["bu", "create", "dup"])
    duplicate = runner.invoke(app, ["bu", "create", "dup"])
    assert duplicate.exit_code == 1
    assert "slug_taken" in duplicate.stderr
    no_bu = runner.invoke(app, ["apikey", "create", "--bu", "ghost", "--name", "x"])
    assert no_bu.exit_code == 1
    assert "no business unit with slug 'ghost'" in no_bu.stderr
    bad_scope = runner.invoke(
        app, ["apikey", "create", "--bu", "dup", "--name", "x", "--scope", "root"]
    )
    assert bad_scope.exit_code == 2


def test_db_migrate_reports_a_database_that_does_not_answer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("COVE_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("COVE_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["db", "migrate"])
    assert result.exit_code == 1
    assert "the database does not answer" in result.stderr


def test_keycloak_realm_json_lists_the_bus_of_the_database(cli_env: None) -> None:
    runner = CliRunner()
    runner.invoke(app, ["bu", "create", "payments"])
    result = runner.invoke(app, ["keycloak", "realm-json", "--console-url", "https://c.example"])
    assert result.exit_code == 0, result.output
    realm = orjson.loads(result.stdout)
    clients = {c["clientId"] for c in realm["clients"]}
    assert {"cove-console", "cove-cli", "cove-gateway"} <= clients
    cove_group = next(g for g in realm["groups"] if g["name"] == "cove")
    payments = next(g for g in cove_group["subGroups"] if g["name"] == "payments")
    assert {g["name"] for g in payments["subGroups"]} == {"admins", "developers", "viewers"}
    bad = runner.invoke(
        app, ["keycloak", "realm-json", "--console-url", "https://c", "--bu", "Bad Slug"]
    )
    assert bad.exit_code == 2
