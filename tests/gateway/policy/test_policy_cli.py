"""`cove policy scan`: the offline dry run, in-process and as a real subprocess."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cove.gateway.policy.cli import policy_app
from cove.gateway.policy.secrets import RULES
from tests.gateway.policy.fakes import Fakes

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def fakes() -> Fakes:
    return Fakes(random.Random(11))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_scan_whole_stdin_prints_one_json_object(runner: CliRunner, fakes: Fakes) -> None:
    token = fakes.github_token()
    text = f"import os\nGITHUB_TOKEN = '{token}'\n"
    result = runner.invoke(policy_app, ["scan"], input=text)

    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out == {
        "findings": [
            {
                "type": "github_token",
                "start": text.index(token),
                "end": text.index(token) + len(token),
                "action": "redact",
                "rule": "github.token",
            }
        ],
        "blocked": False,
        "excluded": False,
        "text": "import os\nGITHUB_TOKEN = '<redacted:github_token>'\n",
    }
    assert result.stdout.count("\n") == 1


def test_scan_with_an_excluded_path(runner: CliRunner) -> None:
    result = runner.invoke(policy_app, ["scan", "--path", "deploy/.env.prod"], input="A=1\n")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "findings": [],
        "blocked": False,
        "excluded": True,
        "text": "",
    }


def test_scan_with_a_policy_file_that_blocks(
    runner: CliRunner, fakes: Fakes, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default_action": "audit", "actions": {"jwt": "block"}}))
    text = f"Authorization: Bearer {fakes.jwt()}\n"
    result = runner.invoke(policy_app, ["scan", "--policy-file", str(policy)], input=text)
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert out["blocked"] is True
    assert out["text"] == ""
    assert [(f["type"], f["action"], f["rule"]) for f in out["findings"]] == [
        ("jwt", "block", "jwt.token")
    ]


def test_invalid_policy_file_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default_action": "shred", "exclude": ["*.pem"]}))
    result = runner.invoke(policy_app, ["scan", "--policy-file", str(policy)], input="x")
    assert result.exit_code == 2
    assert "invalid policy file" in result.stderr
    assert "default_action" in result.stderr
    assert "exclude" in result.stderr
    assert result.stdout == ""


def test_missing_policy_file_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        policy_app, ["scan", "--policy-file", str(tmp_path / "nope.json")], input="x"
    )
    assert result.exit_code == 2
    assert "cannot read policy file" in result.stderr


def test_tenant_without_a_database_says_so_and_exits_2(runner: CliRunner) -> None:
    result = runner.invoke(policy_app, ["scan", "--tenant", "payments"], input="x")
    assert result.exit_code == 2
    assert "--tenant payments" in result.stderr
    assert "database" in result.stderr
    assert "--policy-file" in result.stderr
    assert result.stdout == ""


def test_tenant_with_a_policy_file_uses_the_file(runner: CliRunner, tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text("{}")
    result = runner.invoke(
        policy_app, ["scan", "--tenant", "payments", "--policy-file", str(policy)], input="x = 1"
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["text"] == "x = 1"


def test_jsonl_answers_each_line_and_reports_bad_ones(runner: CliRunner, fakes: Fakes) -> None:
    token = fakes.npm_token()
    lines = [
        json.dumps({"text": f"NPM_TOKEN={token}", "path": "ci/publish.sh"}),
        "{not json",
        json.dumps({"text": "x = 1", "path": "config/secrets/x.py"}),
        json.dumps(["text"]),
        json.dumps({"path": "a.py"}),
        json.dumps({"text": "y = 2", "path": 5}),
        "",
        json.dumps({"text": "password = os.environ['PASSWORD']"}),
    ]
    result = runner.invoke(policy_app, ["scan", "--jsonl"], input="\n".join(lines) + "\n")

    assert result.exit_code == 1
    assert "5 malformed input line(s)" in result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == len(lines)

    assert out[0]["text"] == "NPM_TOKEN=<redacted:npm_token>"
    assert [f["type"] for f in out[0]["findings"]] == ["npm_token"]
    assert out[2] == {"findings": [], "blocked": False, "excluded": True, "text": ""}
    assert out[7] == {
        "findings": [],
        "blocked": False,
        "excluded": False,
        "text": "password = os.environ['PASSWORD']",
    }
    errors = {i: o["error"] for i, o in enumerate(out) if "error" in o}
    assert sorted(errors) == [1, 3, 4, 5, 6]
    for index, error in errors.items():
        assert error["code"] == "invalid_line"
        assert error["line"] == index + 1
        assert error["message"]
    assert "JSON" in errors[1]["message"]
    assert '"text"' in errors[4]["message"]
    assert '"path"' in errors[5]["message"]
    assert errors[6]["message"] == "empty line"


def test_jsonl_all_good_exits_0_and_default_path_applies(runner: CliRunner) -> None:
    lines = [json.dumps({"text": "a = 1"}), json.dumps({"text": "b = 2", "path": "src/b.py"})]
    result = runner.invoke(
        policy_app, ["scan", "--jsonl", "--path", "keys/server.pem"], input="\n".join(lines)
    )
    assert result.exit_code == 0
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["excluded"] for o in out] == [True, False]


def test_non_utf8_stdin_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(policy_app, ["scan"], input=b"password = '\xff\xfe'")
    assert result.exit_code == 2
    assert "UTF-8" in result.stderr


def test_rules_lists_every_detector(runner: CliRunner) -> None:
    result = runner.invoke(policy_app, ["rules"])
    assert result.exit_code == 0
    listed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["rule"] for r in listed] == [r.rule for r in RULES]


def test_scan_runs_as_a_module_without_the_stack(fakes: Fakes, tmp_path: Path) -> None:
    password = fakes.password("!*")
    lines = [
        json.dumps({"text": f"DATABASE_URL=postgres://app:{password}@db:5432/app"}),
        "oops",
    ]
    # No database or network settings: the dry run needs neither.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "cove.gateway.policy.cli", "scan", "--jsonl"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    first, second = (json.loads(line) for line in proc.stdout.splitlines())
    assert (
        first["text"]
        == "DATABASE_URL=postgres://app:<redacted:connection_string_password>@db:5432/app"
    )
    assert second["error"]["line"] == 2

    whole = subprocess.run(
        [sys.executable, "-m", "cove.gateway.policy.cli", "scan"],
        input="nothing to see\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=True,
    )
    assert json.loads(whole.stdout)["text"] == "nothing to see\n"
