"""`cove policy`: dry-run the gateway's secret detection and content exclusion offline.

    cove policy scan [--policy-file P] [--tenant T] [--path P] [--jsonl] < input
    cove policy rules

Runs without the stack (no database, no network). Exit codes: 0 done; 1 some `--jsonl` input
lines were malformed (each got an error line, the others were answered); 2 usage error (bad
policy file, `--tenant` without a policy store, stdin that is not UTF-8).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import orjson
import typer
from pydantic import ValidationError

from cove.gateway.policy.engine import DEFAULT_POLICY, Policy, apply_policy
from cove.gateway.policy.secrets import RULES

policy_app = typer.Typer(
    help="Dry-run secret detection and content exclusion on text from stdin, offline.",
    no_args_is_help=True,
    add_completion=False,
)


@policy_app.callback()
def _policy() -> None:
    """Dry-run the gateway's secret detection and content exclusion, offline."""


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def _load_policy(policy_file: Path | None, tenant: str | None) -> Policy:
    if policy_file is not None:
        try:
            return Policy.model_validate_json(policy_file.read_bytes())
        except OSError as exc:
            raise _fail(f"cannot read policy file {policy_file}: {exc.strerror or exc}") from exc
        except ValidationError as exc:
            details = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise _fail(f"invalid policy file {policy_file}: {details}") from exc
    if tenant is not None:
        # A BU's policy lives in Postgres, which this offline command does not reach.
        raise _fail(
            f"--tenant {tenant}: reading a BU's stored policy needs the Cove database, which "
            "`cove policy scan` does not use yet; export the BU's policy as JSON and pass it "
            "with --policy-file"
        )
    return DEFAULT_POLICY


def _emit(obj: dict[str, Any]) -> None:
    typer.echo(orjson.dumps(obj).decode())


def _stdin_bytes() -> BinaryIO:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        raise _fail("stdin is not readable as bytes")
    stream: BinaryIO = buffer
    return stream


def _line_error(line: int, message: str) -> dict[str, Any]:
    return {"error": {"code": "invalid_line", "message": message, "line": line}}


def _scan_line(policy: Policy, raw: bytes, line: int, default_path: str | None) -> dict[str, Any]:
    if not raw.strip():
        return _line_error(line, "empty line")
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _line_error(line, f"not valid JSON: {exc}")
    if not isinstance(item, dict):
        return _line_error(line, 'expected a JSON object like {"text": "...", "path": "..."}')
    text = item.get("text")
    if not isinstance(text, str):
        return _line_error(line, '"text" is required and must be a string')
    path = item.get("path", default_path)
    if path is not None and not isinstance(path, str):
        return _line_error(line, '"path" must be a string or null')
    return apply_policy(policy, text, path).to_dict()


@policy_app.command("scan")
def scan(
    policy_file: Annotated[
        Path | None,
        typer.Option(
            "--policy-file",
            help="Policy JSON (default_action, actions, exclude_paths); default: the built-in "
            "default policy.",
            dir_okay=False,
        ),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            help="Use this BU's stored policy. Needs the Cove database; until the policy store "
            "exists it exits with code 2 unless --policy-file is given.",
        ),
    ] = None,
    path: Annotated[
        str | None,
        typer.Option(
            "--path",
            help="File path the text comes from (checked against exclude_paths); with --jsonl, "
            "the default for lines without a path.",
        ),
    ] = None,
    jsonl: Annotated[
        bool,
        typer.Option(
            "--jsonl",
            help='Read one {"text": ..., "path": ...} object per line and answer each line.',
        ),
    ] = False,
) -> None:
    """Apply a policy to stdin and print what the gateway would forward, as JSON."""
    policy = _load_policy(policy_file, tenant)
    stdin = _stdin_bytes()
    if not jsonl:
        try:
            text = stdin.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(f"stdin is not valid UTF-8 (byte {exc.start})") from exc
        _emit(apply_policy(policy, text, path).to_dict())
        return
    bad = 0
    for number, raw in enumerate(stdin, start=1):
        result = _scan_line(policy, raw, number, path)
        if "error" in result:
            bad += 1
        _emit(result)
    if bad:
        typer.echo(f"{bad} malformed input line(s)", err=True)
        raise typer.Exit(code=1)


@policy_app.command("rules")
def rules() -> None:
    """List the detectors: rule id, secret type (the key for per-type actions), description."""
    for rule in RULES:
        _emit({"rule": rule.rule, "type": rule.type, "description": rule.description})


if __name__ == "__main__":
    policy_app()
