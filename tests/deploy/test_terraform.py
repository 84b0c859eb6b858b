"""The Terraform module: formatting, and structure checked on the parsed HCL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

from .conftest import CHART_DIR, TERRAFORM_DIR

EXAMPLES = ["minimal", "complete"]


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals; expressions come as ${...}."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _load(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        parsed: dict[str, Any] = hcl2.load(handle)
    return parsed


def _blocks(parsed: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """Labelled blocks (variable, output, module) by their label."""
    found: dict[str, dict[str, Any]] = {}
    for entry in parsed.get(kind, []):
        for label, body in entry.items():
            found[_unquote(label)] = body
    return found


@pytest.fixture(scope="module")
def module() -> dict[str, dict[str, Any]]:
    return {
        name: _load(TERRAFORM_DIR / name)
        for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf")
    }


@pytest.fixture(scope="module")
def variables(module: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return _blocks(module["variables.tf"], "variable")


@pytest.fixture(scope="module")
def outputs(module: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return _blocks(module["outputs.tf"], "output")


# --------------------------------------------------------------------------------------------
# terraform fmt
# --------------------------------------------------------------------------------------------

TERRAFORM = shutil.which("terraform")
needs_terraform = pytest.mark.skipif(
    TERRAFORM is None,
    reason="the terraform binary is not on PATH (it cannot be downloaded here); "
    "the HCL structure tests below still run",
)


def _fmt_check(directory: Path) -> subprocess.CompletedProcess[str]:
    assert TERRAFORM is not None
    return subprocess.run(
        [TERRAFORM, "fmt", "-check", "-recursive", "-diff", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_terraform
def test_terraform_is_formatted() -> None:
    result = _fmt_check(TERRAFORM_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_terraform
def test_fmt_check_catches_unformatted_files(tmp_path: Path) -> None:
    (tmp_path / "bad.tf").write_text('variable "x" {\ntype=string\n}\n')
    assert _fmt_check(tmp_path).returncode != 0


# --------------------------------------------------------------------------------------------
# Layout, variables, outputs, providers
# --------------------------------------------------------------------------------------------


def test_module_layout() -> None:
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
        assert (TERRAFORM_DIR / name).is_file(), name
    for example in EXAMPLES:
        assert (TERRAFORM_DIR / "examples" / example / "main.tf").is_file(), example


def test_every_variable_is_typed_and_described(variables: dict[str, dict[str, Any]]) -> None:
    assert len(variables) >= 30
    for name, body in variables.items():
        assert body.get("type"), f"variable {name} has no type"
        assert "any" not in str(body["type"]), f"variable {name} is typed `any`"
        description = _unquote(body.get("description", ""))
        assert len(description) >= 15, f"variable {name} has no real description"


def test_every_variable_that_can_be_validated_is(variables: dict[str, dict[str, Any]]) -> None:
    # A bool has nothing to validate; everything else has a validation block.
    for name, body in variables.items():
        if body["type"] == "bool":
            assert "validation" not in body, name
            continue
        validations = body.get("validation", [])
        assert validations, f"variable {name} is not validated"
        for validation in validations:
            assert f"var.{name}" in validation["condition"], f"{name}: validation ignores it"
            message = _unquote(validation["error_message"])
            # Terraform's rule: a full sentence, capitalised, ending with a period.
            assert re.match(r"^[A-Z].*[.?]$", message, re.DOTALL), f"{name}: {message!r}"


SECRET_NAME = re.compile(r"(password|secret|private_key|database_url|database_app_url|redis_url)")


def test_secret_inputs_are_sensitive(variables: dict[str, dict[str, Any]]) -> None:
    # Names of Secrets (tls_secret_name, image_pull_secret_names) are not secret themselves.
    secret_inputs = [
        name
        for name in variables
        if SECRET_NAME.search(name) and not name.endswith(("_name", "_names"))
    ]
    assert len(secret_inputs) == 6, secret_inputs
    for name in secret_inputs:
        assert variables[name].get("sensitive") is True, name


def test_every_output_is_described(outputs: dict[str, dict[str, Any]]) -> None:
    expected = {
        "console_url",
        "gateway_url",
        "openai_base_url",
        "keycloak_issuer_url",
        "console_client_id",
        "cli_client_id",
        "gateway_client_id",
    }
    assert expected <= outputs.keys()
    for name, body in outputs.items():
        assert len(_unquote(body.get("description", ""))) >= 10, name


def test_required_providers_are_pinned(module: dict[str, dict[str, Any]]) -> None:
    (terraform,) = module["versions.tf"]["terraform"]
    assert ">= 1.9" in _unquote(terraform["required_version"])
    (declared,) = terraform["required_providers"]
    providers = {k: v for k, v in declared.items() if not k.startswith("__")}
    sources = {name: _unquote(spec["source"]) for name, spec in providers.items()}
    assert sources == {
        "kubernetes": "hashicorp/kubernetes",
        "helm": "hashicorp/helm",
        "keycloak": "keycloak/keycloak",
        "random": "hashicorp/random",
    }
    for name, spec in providers.items():
        constraint = _unquote(spec["version"])
        assert ">=" in constraint, name
        assert "<" in constraint.replace("<=", ""), name


def test_readme_lists_every_input_and_output(
    variables: dict[str, dict[str, Any]], outputs: dict[str, dict[str, Any]]
) -> None:
    readme = (TERRAFORM_DIR / "README.md").read_text()
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", readme, re.MULTILINE))
    assert set(variables) <= rows, sorted(set(variables) - rows)
    assert set(outputs) <= rows, sorted(set(outputs) - rows)
    assert rows <= set(variables) | set(outputs), sorted(rows - set(variables) - set(outputs))


# --------------------------------------------------------------------------------------------
# Examples
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_calls_the_module_with_declared_inputs(
    example: str, variables: dict[str, dict[str, Any]]
) -> None:
    parsed = _load(TERRAFORM_DIR / "examples" / example / "main.tf")
    modules = _blocks(parsed, "module")
    assert list(modules) == ["cove"]
    call = modules["cove"]
    assert _unquote(call["source"]) == "../.."
    arguments = {k for k in call if k not in {"source", "__is_block__"}}
    assert arguments <= set(variables), sorted(arguments - set(variables))
    required = {name for name, body in variables.items() if "default" not in body}
    assert required <= arguments, sorted(required - arguments)


def test_the_examples_cover_both_database_modes() -> None:
    modes = set()
    for example in EXAMPLES:
        call = _blocks(_load(TERRAFORM_DIR / "examples" / example / "main.tf"), "module")["cove"]
        modes.add(_unquote(call["database_mode"]))
    assert modes == {"bundled", "external"}


# --------------------------------------------------------------------------------------------
# What the module creates
# --------------------------------------------------------------------------------------------


def _resources(module: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for entry in module["main.tf"]["resource"]:
        for kind, named in entry.items():
            for name, body in named.items():
                found[f"{_unquote(kind)}.{_unquote(name)}"] = body
    return found


def test_keycloak_clients_have_the_right_flows(module: dict[str, dict[str, Any]]) -> None:
    resources = _resources(module)
    console = resources["keycloak_openid_client.console"]
    assert _unquote(console["access_type"]) == "PUBLIC"
    assert console["standard_flow_enabled"] is True
    assert _unquote(console["pkce_code_challenge_method"]) == "S256"
    assert console["implicit_flow_enabled"] is False
    assert console["direct_access_grants_enabled"] is False

    cli = resources["keycloak_openid_client.cli"]
    assert _unquote(cli["access_type"]) == "PUBLIC"
    assert cli["oauth2_device_authorization_grant_enabled"] is True
    assert cli["direct_access_grants_enabled"] is False

    gateway = resources["keycloak_openid_client.gateway"]
    assert _unquote(gateway["access_type"]) == "CONFIDENTIAL"
    assert gateway["standard_flow_enabled"] is False

    audience = resources["keycloak_openid_audience_protocol_mapper.gateway_audience"]
    assert "keycloak_openid_client.gateway.client_id" in audience["included_client_audience"]


def test_business_unit_groups_nest_under_cove(module: dict[str, dict[str, Any]]) -> None:
    main = module["main.tf"]
    (local_values,) = [entry for entry in main["locals"] if "bu_roles" in entry]
    assert local_values["bu_roles"] == ['"admins"', '"developers"', '"viewers"']
    resources = _resources(module)
    assert _unquote(resources["keycloak_group.cove"]["name"]) == "cove"
    assert "keycloak_group.cove.id" in resources["keycloak_group.business_unit"]["parent_id"]
    role_parent = resources["keycloak_group.business_unit_role"]["parent_id"]
    assert "keycloak_group.business_unit[each.value.bu].id" in role_parent


def test_secrets_reach_the_chart_by_name_only(module: dict[str, dict[str, Any]]) -> None:
    release = _resources(module)["helm_release.cove"]
    text = json.dumps(release)
    assert "set_sensitive" not in release
    for secret_input in ("password", "client_secret", "database_url", "redis_url", "private_key"):
        assert secret_input not in text, secret_input


def _schema_paths(schema: dict[str, Any]) -> set[str]:
    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = schema
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    paths: set[str] = set()

    def walk(node: dict[str, Any], prefix: str) -> None:
        node = resolve(node)
        for key, child in node.get("properties", {}).items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            walk(child, path)

    walk(schema, "")
    return paths


def _value_paths(values: Any, prefix: str = "") -> set[str]:
    if not isinstance(values, dict):
        return set()
    paths: set[str] = set()
    for key, child in values.items():
        path = f"{prefix}.{key}" if prefix else key
        paths.add(path)
        # Free-form maps (selectors' labels, annotations) end the walk.
        if key not in {"matchLabels", "annotations", "nodeSelector"}:
            paths |= _value_paths(child, path)
    return paths


def test_chart_values_from_terraform_exist_in_the_chart_schema(
    module: dict[str, dict[str, Any]],
) -> None:
    (chart_values,) = [
        e["chart_values"] for e in module["main.tf"]["locals"] if "chart_values" in e
    ]
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    unknown = _value_paths(chart_values) - _schema_paths(schema)
    assert not unknown, sorted(unknown)
