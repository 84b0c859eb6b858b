"""Applying a tenant's policy to a text: redact, block or audit each secret; exclude paths.

A `Policy` says what to do with each type of secret and which file paths never reach a
model. `apply_policy` is what the gateway runs on a prompt, a suffix or a chat message;
`contains_secret` is what it runs on a completion before returning it (a suggestion holding a
credential is dropped whatever the policy says: the model must not hand out secrets it memorised).

Policies are stored per BU and layer on the organisation's defaults with
`Policy.merged_over(parent)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

import pathspec
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cove.gateway.policy.secrets import SECRET_TYPES, SecretMatch, scan_secrets
from cove.gateway.policy.secrets import contains_secret as _contains_secret


class Action(StrEnum):
    """What happens to a request carrying a secret of a given type."""

    # Replace the secret with `<redacted:type>` and forward the rest.
    REDACT = "redact"
    # Refuse the whole request (the gateway answers 403 naming the rule).
    BLOCK = "block"
    # Forward unchanged; only the audit log records the finding.
    AUDIT = "audit"


def redaction_placeholder(secret_type: str) -> str:
    return f"<redacted:{secret_type}>"


@lru_cache(maxsize=256)
def _compile_exclusions(patterns: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    # Patterns are compiled once per distinct list, not per request.
    return pathspec.GitIgnoreSpec.from_lines(p.lower() for p in patterns)


def normalize_path(path: str) -> str:
    """An IDE's file path as a relative, forward-slash, lower-case path.

    Clients send paths relative to the workspace (Tabby), absolute (`/home/me/repo/x.py`),
    Windows-style (`C:\\repo\\x.py`) or as `file://` URIs; exclusions must hold for all of them.
    """
    p = path.strip().replace("\\", "/")
    if p.lower().startswith("file://"):
        p = p[7:]
    if len(p) >= 2 and p[1] == ":" and p[0].isalpha():
        p = p[2:]
    while p.startswith("./"):
        p = p[2:]
    return p.strip("/").lower()


@lru_cache(maxsize=8192)
def _is_excluded(patterns: tuple[str, ...], path: str) -> bool:
    # An IDE asks about the same few files over and over; matching every glob against every
    # tail of the path costs tens of microseconds per request.
    normalized = normalize_path(path)
    if not normalized:
        return False
    spec = _compile_exclusions(patterns)
    return any(spec.match_file(tail) for tail in _path_suffixes(normalized))


def _path_suffixes(path: str) -> list[str]:
    # The gateway does not know where the repository root is inside an absolute path, so an
    # anchored pattern (`config/*.pem`) is tried against every tail of the path.
    parts = path.split("/")
    return ["/".join(parts[i:]) for i in range(len(parts))]


class Policy(BaseModel):
    """Secret and content-exclusion policy of an organisation or a BU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_action: Action = Field(
        default=Action.REDACT, description="Action for secret types not listed in `actions`."
    )
    actions: dict[str, Action] = Field(
        default_factory=dict,
        description="Action per secret type (see `cove policy rules`), overriding the default.",
    )
    exclude_paths: tuple[str, ...] = Field(
        default=(),
        description="gitignore-style globs (case-insensitive); a request for a matching file "
        "gets no completion. `!` negations are not allowed: exclusions only add up.",
    )

    @field_validator("actions")
    @classmethod
    def _known_types(cls, value: dict[str, Action]) -> dict[str, Action]:
        unknown = sorted(set(value) - SECRET_TYPES)
        if unknown:
            raise ValueError(
                f"unknown secret type(s) {', '.join(unknown)}; "
                f"known types: {', '.join(sorted(SECRET_TYPES))}"
            )
        return value

    @field_validator("exclude_paths")
    @classmethod
    def _valid_globs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not pattern.strip() or pattern.strip().startswith("#"):
                raise ValueError("empty or comment-only exclusion pattern")
            if pattern.startswith("!"):
                # A BU policy layered on the organisation's must not be able to re-include
                # what the organisation excluded.
                raise ValueError(f"negated pattern {pattern!r} is not allowed")
            if "\n" in pattern or "\r" in pattern:
                raise ValueError("an exclusion pattern must be a single line")
            try:
                _compile_exclusions((pattern,))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"invalid exclusion pattern {pattern!r}: {exc}") from exc
        return value

    def action_for(self, secret_type: str) -> Action:
        return self.actions.get(secret_type, self.default_action)

    def is_excluded(self, path: str | None) -> bool:
        if not path or not self.exclude_paths:
            return False
        return _is_excluded(self.exclude_paths, path)

    def merged_over(self, parent: Policy) -> Policy:
        """This policy layered on `parent` (a BU's on the organisation's defaults).

        The default action is this policy's if it set one, else the parent's; per-type actions
        are the parent's overridden type by type; exclusions add up (a child cannot remove one).
        """
        explicit = self.model_fields_set
        return Policy(
            default_action=(
                self.default_action if "default_action" in explicit else parent.default_action
            ),
            actions={**parent.actions, **self.actions},
            exclude_paths=tuple(dict.fromkeys((*parent.exclude_paths, *self.exclude_paths))),
        )


# What an install starts with: every secret is redacted, and the files that exist to hold
# credentials never reach a model.
DEFAULT_POLICY = Policy(
    default_action=Action.REDACT,
    exclude_paths=(
        ".env*",
        "*.pem",
        "*.key",
        "*.p12",
        "*.pfx",
        "*.jks",
        "*.keystore",
        "id_rsa*",
        "id_dsa*",
        "id_ecdsa*",
        "id_ed25519*",
        ".netrc",
        ".pgpass",
        ".pypirc",
        ".aws/credentials",
        ".docker/config.json",
        "*.tfstate",
        "*.tfstate.backup",
        "**/secrets/**",
    ),
)


@dataclass(frozen=True, slots=True)
class Finding:
    """A secret found by the policy, with what the policy does about it. Never the secret."""

    type: str
    start: int
    end: int
    action: Action
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "start": self.start,
            "end": self.end,
            "action": self.action.value,
            "rule": self.rule,
        }


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The outcome of a policy on one text.

    `text` is what would be forwarded to the model: the input with each redacted secret
    replaced by its placeholder, or "" when the request is blocked or its path is excluded
    (nothing is forwarded). Offsets in `findings` refer to the original text.
    """

    findings: tuple[Finding, ...]
    blocked: bool
    excluded: bool
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "findings": [f.to_dict() for f in self.findings],
            "blocked": self.blocked,
            "excluded": self.excluded,
            "text": self.text,
        }


def _redact(text: str, findings: tuple[Finding, ...]) -> str:
    pieces: list[str] = []
    pos = 0
    for f in findings:
        if f.action is Action.REDACT:
            pieces.append(text[pos : f.start])
            pieces.append(redaction_placeholder(f.type))
            pos = f.end
    if not pieces:
        return text
    pieces.append(text[pos:])
    return "".join(pieces)


def findings_for(policy: Policy, matches: list[SecretMatch]) -> tuple[Finding, ...]:
    return tuple(
        Finding(m.type, m.start, m.end, policy.action_for(m.type), m.rule) for m in matches
    )


def apply_policy(policy: Policy, text: str, path: str | None = None) -> ScanResult:
    """Scan `text` (from the file at `path`, if known) and apply `policy` to what is found."""
    if policy.is_excluded(path):
        return ScanResult(findings=(), blocked=False, excluded=True, text="")
    matches = scan_secrets(text)
    if not matches:
        return ScanResult(findings=(), blocked=False, excluded=False, text=text)
    findings = findings_for(policy, matches)
    if any(f.action is Action.BLOCK for f in findings):
        return ScanResult(findings=findings, blocked=True, excluded=False, text="")
    return ScanResult(
        findings=findings, blocked=False, excluded=False, text=_redact(text, findings)
    )


def contains_secret(text: str) -> bool:
    """Whether a completion holds a credential and must be dropped (independent of policy)."""
    return _contains_secret(text)
