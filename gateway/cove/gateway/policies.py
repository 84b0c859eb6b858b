"""A business unit's data-plane policy: model access, task routing, limits, content rules and
prompt logging.

The organisation's default document is the base; a BU stores only what it overrides. A BU can
tighten, never loosen, what the organisation set: limits take the smaller value, exclusions
add up, and a content rule inherits the organisation's per-type actions unless overridden.
Prompt logging is the BU's own choice: each field it sets replaces the organisation's default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cove.gateway.policy.engine import Action
from cove.gateway.policy.engine import Policy as ContentPolicy
from cove.gateway.policy.secrets import SECRET_TYPES


class ModelAccess(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description=(
            "Keycloak group path (e.g. /cove/payments/developers) or role (developer, bu-admin) "
            "→ models it may use ('*' for all). No rules: every model of the BU is allowed."
        ),
    )

    def allows(self, model: str, groups: tuple[str, ...], roles: frozenset[str]) -> bool:
        if not self.rules:
            return True
        for subject in (*groups, *roles):
            allowed = self.rules.get(subject)
            if allowed is not None and ("*" in allowed or model in allowed):
                return True
        return False


class Routing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    completion: str | None = Field(
        default=None, description="Model for code completion when the client names none"
    )
    chat: str | None = Field(default=None, description="Model for chat when the client names none")


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_prompt_chars: int | None = Field(default=64_000, ge=1)
    max_tokens: int | None = Field(
        default=2048, ge=1, description="Cap on max_tokens; larger requests are lowered to it"
    )
    user_requests_per_minute: int | None = Field(default=600, ge=1)
    bu_requests_per_minute: int | None = Field(default=None, ge=1)
    user_tokens_per_minute: int | None = Field(default=None, ge=1)
    bu_tokens_per_day: int | None = Field(default=None, ge=1)


class PromptLogging(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["off", "metadata", "full"] = Field(
        default="off",
        description=(
            "off: nothing is kept; metadata: time, user, model version, path, language, sizes, "
            "token counts and the policy rules that fired, without text; full: also the prompt, "
            "suffix and completion as the model saw them and the IDE got them (after redaction)"
        ),
    )
    retention_days: int = Field(
        default=30, ge=1, le=3650, description="Prompt logs older than this are deleted"
    )


class GatewayPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_access: ModelAccess = Field(default_factory=ModelAccess)
    routing: Routing = Field(default_factory=Routing)
    limits: Limits = Field(default_factory=Limits)
    content: ContentPolicy = Field(default_factory=ContentPolicy)
    logging: PromptLogging = Field(default_factory=PromptLogging)


class PolicyInvalid(ValueError):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid policy")
        self.errors = errors


def validate_document(document: dict[str, Any]) -> GatewayPolicy:
    try:
        return GatewayPolicy.model_validate(document)
    except ValidationError as exc:
        raise PolicyInvalid(
            [
                {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors()
            ]
        ) from exc


def _smaller(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


_STRICTNESS = {Action.AUDIT: 0, Action.REDACT: 1, Action.BLOCK: 2}


def _no_weaker(merged: ContentPolicy, org: ContentPolicy) -> ContentPolicy:
    """A BU may make a secret rule stricter than the organisation's, never weaker."""
    default = max(merged.default_action, org.default_action, key=_STRICTNESS.__getitem__)
    actions = {}
    for secret_type in SECRET_TYPES:
        wanted = merged.action_for(secret_type)
        floor = org.action_for(secret_type)
        chosen = max(wanted, floor, key=_STRICTNESS.__getitem__)
        if chosen != default:
            actions[secret_type] = chosen
    return ContentPolicy(
        default_action=default, actions=actions, exclude_paths=merged.exclude_paths
    )


def effective_policy(org: dict[str, Any], bu: dict[str, Any] | None) -> GatewayPolicy:
    """Layer a BU's (sparse) document on the organisation's."""
    base = validate_document(org)
    if not bu:
        return base
    override = validate_document(bu)
    fields = bu.keys()
    limits = base.limits
    if "limits" in fields:
        set_fields = bu["limits"].keys()
        limits = Limits(
            **{
                name: _smaller(getattr(base.limits, name), getattr(override.limits, name))
                if name in set_fields
                else getattr(base.limits, name)
                for name in Limits.model_fields
            }
        )
    content = base.content
    if "content" in fields:
        content = _no_weaker(
            ContentPolicy.model_validate(bu["content"]).merged_over(base.content), base.content
        )
    routing = base.routing
    if "routing" in fields:
        routing = base.routing.model_copy(
            update={k: getattr(override.routing, k) for k in bu["routing"]}
        )
    model_access = base.model_access
    if "model_access" in fields:
        model_access = ModelAccess(rules={**base.model_access.rules, **override.model_access.rules})
    logging = base.logging
    if "logging" in fields:
        logging = base.logging.model_copy(
            update={k: getattr(override.logging, k) for k in bu["logging"]}
        )
    return GatewayPolicy(
        model_access=model_access,
        routing=routing,
        limits=limits,
        content=content,
        logging=logging,
    )
