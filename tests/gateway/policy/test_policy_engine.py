"""Policies: per-type actions, redaction output, path exclusion and layering."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from cove.gateway.policy.engine import (
    DEFAULT_POLICY,
    Action,
    Policy,
    apply_policy,
    contains_secret,
    normalize_path,
)
from cove.gateway.policy.secrets import SECRET_TYPES, scan_secrets
from tests.gateway.policy.fakes import Fakes


@pytest.fixture
def fakes() -> Fakes:
    return Fakes(random.Random(7))


def test_redaction_replaces_each_secret_with_its_typed_placeholder(fakes: Fakes) -> None:
    token, password = fakes.github_token(), fakes.password("!*")
    text = f'GITHUB_TOKEN="{token}"\nDB_PASSWORD={password}\nretries = 3\n'
    result = apply_policy(Policy(), text)

    assert not result.blocked
    assert not result.excluded
    assert result.text == (
        'GITHUB_TOKEN="<redacted:github_token>"\nDB_PASSWORD=<redacted:password>\nretries = 3\n'
    )
    # Offsets point into the original text, not the redacted one.
    assert [text[f.start : f.end] for f in result.findings] == [token, password]
    assert [(f.type, f.action) for f in result.findings] == [
        ("github_token", Action.REDACT),
        ("password", Action.REDACT),
    ]


def test_text_without_secrets_is_forwarded_unchanged() -> None:
    text = "def add(a: int, b: int) -> int:\n    return a + b\n"
    result = apply_policy(DEFAULT_POLICY, text, "src/math.py")
    assert result.findings == ()
    assert result.text == text
    assert not result.blocked
    assert not result.excluded


def test_block_action_blocks_the_whole_request(fakes: Fakes) -> None:
    policy = Policy(actions={"private_key": Action.BLOCK})
    key = fakes.pem("RSA PRIVATE KEY")
    result = apply_policy(policy, f"KEY = '''{key}'''\npassword = 'Qw3!{fakes.s('abc', 8)}x'")
    assert result.blocked
    assert result.text == ""
    assert {(f.type, f.action) for f in result.findings} == {
        ("private_key", Action.BLOCK),
        ("password", Action.REDACT),
    }


def test_audit_action_forwards_the_secret_but_reports_it(fakes: Fakes) -> None:
    policy = Policy(default_action=Action.AUDIT)
    token = fakes.npm_token()
    text = f"//registry.npmjs.org/:_authToken={token}\n"
    result = apply_policy(policy, text)
    assert result.text == text
    assert not result.blocked
    assert [(f.type, f.action, f.rule) for f in result.findings] == [
        ("npm_token", Action.AUDIT, "npm.token")
    ]


def test_per_type_override_beats_the_default_action(fakes: Fakes) -> None:
    policy = Policy(default_action=Action.BLOCK, actions={"jwt": Action.REDACT})
    result = apply_policy(policy, f"id_token = '{fakes.jwt()}'")
    assert not result.blocked
    assert result.text == "id_token = '<redacted:jwt>'"


def test_findings_serialise_without_the_secret(fakes: Fakes) -> None:
    token = fakes.stripe_secret_key()
    data = apply_policy(Policy(), f"stripe.api_key = '{token}'").to_dict()
    assert data["findings"] == [
        {
            "type": "stripe_secret_key",
            "start": 18,
            "end": 18 + len(token),
            "action": "redact",
            "rule": "stripe.secret_key",
        }
    ]
    assert token not in str(data)


def test_redacted_output_scans_clean(fakes: Fakes) -> None:
    text = (
        f"aws_access_key_id = {fakes.aws_access_key_id()}\n"
        f"aws_secret_access_key = {fakes.aws_secret_access_key()}\n"
        f"url = 'postgres://app:{fakes.password('!*')}@db/app'\n"
    )
    once = apply_policy(Policy(), text).text
    assert len(scan_secrets(text)) == 3
    assert scan_secrets(once) == []
    assert apply_policy(Policy(), once).text == once


@pytest.mark.parametrize(
    ("pattern", "path", "excluded"),
    [
        ("**/secrets/**", "config/secrets/prod.yaml", True),
        ("**/secrets/**", "secrets/prod.yaml", True),
        ("**/secrets/**", "/home/dev/repo/app/secrets/db.json", True),
        ("**/secrets/**", "src/secretsmanager/client.py", False),
        ("*.pem", "certs/server.pem", True),
        ("*.pem", "server.pem", True),
        ("*.pem", "docs/pem-format.md", False),
        (".env*", ".env", True),
        (".env*", "services/api/.env.production", True),
        (".env*", "src/environment.ts", False),
        ("config/*.yaml", "/home/dev/repo/config/prod.yaml", True),
        ("config/*.yaml", "config/nested/prod.yaml", False),
        ("/terraform/*.tfvars", "terraform/prod.tfvars", True),
        ("*.PEM", "certs/Server.pem", True),
        ("**/secrets/**", "C:\\Users\\dev\\repo\\secrets\\key.txt", True),
        ("**/secrets/**", "file:///home/dev/repo/secrets/key.txt", True),
        ("id_rsa*", "/home/dev/.ssh/id_rsa.pub", True),
    ],
)
def test_exclusion_globs(pattern: str, path: str, excluded: bool) -> None:
    assert Policy(exclude_paths=(pattern,)).is_excluded(path) is excluded


def test_an_excluded_path_gets_nothing_forwarded(fakes: Fakes) -> None:
    policy = Policy(exclude_paths=("**/secrets/**",))
    result = apply_policy(policy, "db_host = 'db'\n", "deploy/secrets/values.yaml")
    assert result.excluded
    assert not result.blocked
    assert result.text == ""
    assert result.findings == ()
    # Same text elsewhere is forwarded.
    assert apply_policy(policy, "db_host = 'db'\n", "deploy/values.yaml").text == "db_host = 'db'\n"


def test_no_path_means_no_exclusion() -> None:
    assert not DEFAULT_POLICY.is_excluded(None)
    assert not DEFAULT_POLICY.is_excluded("")


@pytest.mark.parametrize(
    "path",
    [".env", "app/.env.local", "certs/tls.key", "keys/server.pem", ".ssh/id_ed25519", "x.tfstate"],
)
def test_default_policy_excludes_credential_files(path: str) -> None:
    assert DEFAULT_POLICY.is_excluded(path)


@pytest.mark.parametrize("path", ["src/main.py", "README.md", "web/src/env.ts", "keys.py"])
def test_default_policy_keeps_ordinary_files(path: str) -> None:
    assert not DEFAULT_POLICY.is_excluded(path)


def test_normalize_path() -> None:
    assert normalize_path("C:\\Repo\\Src\\App.PY") == "repo/src/app.py"
    assert normalize_path("file:///home/me/x.py") == "home/me/x.py"
    assert normalize_path("./a/b.py") == "a/b.py"


def test_policy_rejects_unknown_fields_types_and_bad_globs() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Policy.model_validate({"default_action": "redact", "mode": "strict"})
    with pytest.raises(ValidationError, match="unknown secret type"):
        Policy(actions={"aws_key": Action.BLOCK})
    with pytest.raises(ValidationError, match="Input should be 'redact', 'block' or 'audit'"):
        Policy.model_validate({"default_action": "drop"})
    with pytest.raises(ValidationError, match="negated pattern"):
        Policy(exclude_paths=("!keep.pem",))
    with pytest.raises(ValidationError, match="empty"):
        Policy(exclude_paths=("  ",))


def test_every_detectable_type_can_be_configured() -> None:
    policy = Policy(actions=dict.fromkeys(SECRET_TYPES, Action.AUDIT))
    assert all(policy.action_for(t) is Action.AUDIT for t in SECRET_TYPES)


def test_policy_round_trips_through_json() -> None:
    policy = Policy(
        default_action=Action.AUDIT,
        actions={"private_key": Action.BLOCK},
        exclude_paths=("*.pem",),
    )
    assert Policy.model_validate_json(policy.model_dump_json()) == policy


def test_bu_policy_layers_over_org_defaults() -> None:
    org = Policy(
        default_action=Action.REDACT,
        actions={"private_key": Action.BLOCK, "jwt": Action.AUDIT},
        exclude_paths=("**/secrets/**", "*.pem"),
    )
    bu = Policy.model_validate({"actions": {"jwt": "block"}, "exclude_paths": ["*.p12", "*.pem"]})
    merged = bu.merged_over(org)

    # The BU did not set a default action: the org's stays.
    assert merged.default_action is Action.REDACT
    assert merged.actions == {"private_key": Action.BLOCK, "jwt": Action.BLOCK}
    # Exclusions add up, without duplicates, org first.
    assert merged.exclude_paths == ("**/secrets/**", "*.pem", "*.p12")

    strict_bu = Policy(default_action=Action.BLOCK)
    assert strict_bu.merged_over(org).default_action is Action.BLOCK
    # Merging is repeatable (org -> BU -> team).
    assert Policy().merged_over(merged) == merged


def test_contains_secret_drops_completions_with_credentials(fakes: Fakes) -> None:
    assert contains_secret(f"    client = OpenAI(api_key='{fakes.openai_api_key()}')\n")
    assert contains_secret(f"aws_access_key_id={fakes.aws_access_key_id()}")
    assert not contains_secret("    client = OpenAI(api_key=os.environ['OPENAI_API_KEY'])\n")
