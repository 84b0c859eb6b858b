"""The policy checks a request passes before it reaches a model, in order of cost:
content exclusion, prompt size, routing and model access, the `max_tokens` cap, rate limits,
then the secret scan (which may rewrite text). `enforce_request` runs them all, the same way
for every endpoint. The secret scan runs while Redis answers the rate-limit check; its
findings are acted on (audited, blocked, redacted) only once the limits let the request by,
so the outcome is the same as scanning after the check."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from cove.gateway.audit import DecisionLog
from cove.gateway.caches import Route
from cove.gateway.errors import ContentExcluded, PromptTooLarge, SecretBlocked
from cove.gateway.guard import FILTERED
from cove.gateway.limits import PendingLimits, RateLimiter, estimated_tokens
from cove.gateway.policies import GatewayPolicy
from cove.gateway.policy.engine import Action, ScanResult, apply_policy, contains_secret
from cove.gateway.policy.secrets import SecretMatch, scan_secrets
from cove.gateway.promptlog import PromptLogEntry, start_entry
from cove.platform.core.errors import RateLimited
from cove.tenants.principal import Principal


def _actor(principal: Principal) -> str:
    return principal.username


def check_path(
    policy: GatewayPolicy, principal: Principal, path: str | None, decisions: DecisionLog
) -> None:
    if path and policy.content.is_excluded(path):
        assert principal.tenant_id is not None
        decisions.record(
            tenant_id=principal.tenant_id,
            actor=_actor(principal),
            action="policy.exclude",
            target="request",
            details={"rule": "exclude_paths"},
        )
        raise ContentExcluded("Completions are disabled for this file by your policy")


def check_size(
    policy: GatewayPolicy, principal: Principal, chars: int, decisions: DecisionLog
) -> None:
    cap = policy.limits.max_prompt_chars
    if cap is not None and chars > cap:
        assert principal.tenant_id is not None
        decisions.record(
            tenant_id=principal.tenant_id,
            actor=_actor(principal),
            action="policy.limit",
            target="request",
            details={"rule": "max_prompt_chars", "chars": chars, "cap": cap},
        )
        raise PromptTooLarge(
            f"The prompt has {chars} characters; your policy allows {cap}",
            details={"limit": cap, "chars": chars},
        )


def clamp_max_tokens(policy: GatewayPolicy, body: dict[str, Any]) -> None:
    cap = policy.limits.max_tokens
    if cap is None:
        return
    requested = body.get("max_tokens") or body.get("max_completion_tokens")
    if requested is None or requested > cap:
        body["max_tokens"] = cap
        body.pop("max_completion_tokens", None)


async def begin_rates(
    policy: GatewayPolicy,
    principal: Principal,
    limiter: RateLimiter,
    prompt_chars: int,
    max_tokens: int | None,
) -> PendingLimits:
    """Send the request's rate-limit check; `settle_rates` reads the answer."""
    assert principal.tenant_id is not None
    user = str(principal.user_id or principal.subject)
    checks = limiter.checks(
        policy.limits, str(principal.tenant_id), user, estimated_tokens(prompt_chars, max_tokens)
    )
    return await limiter.begin(checks)


async def settle_rates(
    principal: Principal, limiter: RateLimiter, pending: PendingLimits, decisions: DecisionLog
) -> None:
    assert principal.tenant_id is not None
    try:
        await limiter.settle(pending)
    except RateLimited as exc:
        decisions.record(
            tenant_id=principal.tenant_id,
            actor=_actor(principal),
            action="policy.limit",
            target="request",
            details={"rule": exc.error_code},
        )
        raise


def act_on_scan(
    principal: Principal,
    text: str,
    result: ScanResult,
    field: str,
    decisions: DecisionLog,
    fired: list[dict[str, str]] | None = None,
) -> str:
    """Return the text to forward given its scan `result`, or raise when a finding's action is
    `block`. The rules that fired are added to `fired` (the request's prompt log, when the BU
    keeps one)."""
    if not result.findings:
        return text
    assert principal.tenant_id is not None
    found = [{"type": f.type, "rule": f.rule, "action": str(f.action)} for f in result.findings]
    if fired is not None:
        fired.extend(found)
    if result.blocked:
        blocking = next(f for f in result.findings if f.action == Action.BLOCK)
        decisions.record(
            tenant_id=principal.tenant_id,
            actor=_actor(principal),
            action="policy.block",
            target=field,
            details={"findings": found},
        )
        raise SecretBlocked(
            f"The {field} contains a credential ({blocking.type}); rule '{blocking.rule}' "
            "blocks such requests",
            param=field,
            details={"rule": blocking.rule, "type": blocking.type},
        )
    action = (
        "policy.redact"
        if any(f.action == Action.REDACT for f in result.findings)
        else "policy.audit"
    )
    decisions.record(
        tenant_id=principal.tenant_id,
        actor=_actor(principal),
        action=action,
        target=field,
        details={"findings": found},
    )
    return result.text


def drop_secret_suggestions(raw: bytes) -> tuple[bytes, list[SecretMatch]]:
    """Blank every choice whose text holds a credential (its `finish_reason` becomes
    `content_filter`); returns the body and what was found in the dropped choices."""
    if b'"text"' not in raw and b'"content"' not in raw:
        return raw, []
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw, []
    found: list[SecretMatch] = []
    for choice in body.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        text = choice.get("text")
        if isinstance(text, str) and text and contains_secret(text):
            found.extend(scan_secrets(text))
            choice["text"] = ""
            choice["finish_reason"] = FILTERED
            # Log probabilities name the completion's tokens.
            choice["logprobs"] = None
        message = choice.get("message")
        if isinstance(message, dict):
            content = message.get("content")
            if isinstance(content, str) and content and contains_secret(content):
                found.extend(scan_secrets(content))
                message["content"] = ""
                choice["finish_reason"] = FILTERED
                choice["logprobs"] = None
    return (orjson.dumps(body), found) if found else (raw, [])


def record_dropped(
    principal: Principal,
    decisions: DecisionLog,
    found: list[SecretMatch],
    *,
    streamed: bool,
    fired: list[dict[str, str]] | None = None,
) -> None:
    """Audit a suggestion dropped for holding a credential: the rule and type, not the text."""
    assert principal.tenant_id is not None
    findings = [{"type": m.type, "rule": m.rule, "action": "drop"} for m in found]
    if fired is not None:
        fired.extend(findings)
    decisions.record(
        tenant_id=principal.tenant_id,
        actor=_actor(principal),
        action="policy.drop",
        target="completion",
        details={"findings": findings, "streamed": streamed},
    )


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request that passed the policy: where it goes, the texts to forward (in the order
    given, redacted where the policy says so) and its prompt log entry, if the BU keeps one."""

    route: Route
    texts: list[str]
    log: PromptLogEntry | None


async def enforce_request(
    policy: GatewayPolicy,
    principal: Principal,
    *,
    texts: Sequence[tuple[str, str]],
    path: str | None,
    resolve: Callable[[], Route],
    body: dict[str, Any] | None,
    max_tokens: int | None,
    limiter: RateLimiter,
    decisions: DecisionLog,
    feature: str,
    language: str | None = None,
) -> Admitted:
    """Every check a request passes before it reaches a model. `texts` are (field, text)
    pairs (`prompt`, `suffix`, `messages`, ...); `body`, when given, has its `max_tokens`
    lowered to the policy's cap, and that value is what the token-rate limit counts, else
    `max_tokens`. Raises the error the client sees (audited) when a check fails."""
    check_path(policy, principal, path, decisions)
    chars = sum(len(text) for _, text in texts)
    check_size(policy, principal, chars, decisions)
    route = resolve()
    if body is not None:
        clamp_max_tokens(policy, body)
        max_tokens = body.get("max_tokens")
    pending = await begin_rates(policy, principal, limiter, chars, max_tokens)
    # Redis is counting now; scan meanwhile, act on the findings after the answer.
    scans = [apply_policy(policy.content, text) for _, text in texts]
    await settle_rates(principal, limiter, pending, decisions)
    suffix_chars = sum(len(text) for field, text in texts if field == "suffix")
    log = start_entry(
        policy,
        principal,
        feature=feature,
        path=path,
        language=language,
        prompt_chars=chars - suffix_chars,
        suffix_chars=suffix_chars,
    )
    fired = log.rules if log is not None else None
    cleaned = [
        act_on_scan(principal, text, scan, field, decisions, fired)
        for (field, text), scan in zip(texts, scans, strict=True)
    ]
    if log is not None:
        log.model_version = route.model
    return Admitted(route, cleaned, log)
