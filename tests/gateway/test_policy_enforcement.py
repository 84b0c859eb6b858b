"""The gateway enforces each BU's policy, and a changed policy applies without a restart."""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cove.gateway.app import create_app
from cove.gateway.settings import GatewaySettings
from cove.platform.core.db import Database
from cove.platform.policies import service as policy_service
from cove.tenants.principal import Principal, Role, Scope
from tests.conftest import ServerThread
from tests.gateway.conftest import add_deployment

pytestmark = pytest.mark.vllm

ADMIN = Principal(
    subject="t:admin",
    username="policy-admin",
    tenant_id=None,
    user_id=None,
    roles=frozenset({Role.PLATFORM_ADMIN}),
    scopes=frozenset({Scope.ADMIN_WRITE}),
)


def github_token() -> str:
    alphabet = string.ascii_letters + string.digits
    return "ghp_" + "".join(secrets.choice(alphabet) for _ in range(36))


@pytest.fixture
async def gateway(
    db: Database, world: dict[str, Any], vllm_url: str, gateway_settings: GatewaySettings
) -> Any:
    await add_deployment(db, world["a"]["bu"].id, vllm_url)
    with ServerThread(create_app(gateway_settings)) as server:
        yield server


def _post(gateway: ServerThread, key: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=30,
    )


def _until(check: Any, timeout: float = 5.0) -> Any:
    """Poll until `check()` returns a truthy value: policy changes arrive by notification."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


async def _set_policy(db: Database, bu: Any, document: dict[str, Any]) -> None:
    await policy_service.put_bu(db, ADMIN, bu, document, None)


async def test_secrets_are_redacted_by_default_and_blocked_when_the_policy_says_so(
    gateway: ServerThread, world: dict[str, Any], db: Database
) -> None:
    key = world["a"]["dev_key"]
    token = github_token()
    prompt = f'GITHUB_TOKEN = "{token}"\ndef main():'
    redacted = _post(
        gateway, key, {"model": "cove-tiny", "prompt": prompt, "max_tokens": 1, "echo": True}
    )
    assert redacted.status_code == 200, redacted.text
    forwarded = redacted.json()["choices"][0]["text"]
    assert token not in forwarded
    assert "<redacted:github_token>" in forwarded

    await _set_policy(db, world["a"]["bu"].id, {"content": {"actions": {"github_token": "block"}}})
    blocked = _until(
        lambda: (
            (
                r := _post(gateway, key, {"model": "cove-tiny", "prompt": prompt, "max_tokens": 1})
            ).status_code
            == 403
            and r
        )
    )
    assert blocked, "the blocking policy did not apply within 5 s"
    error = blocked.json()["error"]
    assert error["code"] == "secret_blocked"
    assert "github_token" in error["message"]
    assert token not in blocked.text
    # BU b keeps the default (redact) policy.
    async with db.platform() as conn:
        rows = await (
            await conn.execute(
                "SELECT action, diff::text FROM audit_log WHERE action LIKE 'policy.%%'"
                " AND tenant_id = %s",
                (world["a"]["bu"].id,),
            )
        ).fetchall()
    deadline = time.monotonic() + 5
    while {"policy.redact", "policy.block"} - {r[0] for r in rows} and time.monotonic() < deadline:
        time.sleep(0.3)
        async with db.platform() as conn:
            rows = await (
                await conn.execute(
                    "SELECT action, diff::text FROM audit_log WHERE action LIKE 'policy.%%'"
                    " AND tenant_id = %s",
                    (world["a"]["bu"].id,),
                )
            ).fetchall()
    assert {"policy.redact", "policy.block"} <= {r[0] for r in rows}
    assert all(token not in r[1] for r in rows)


async def test_excluded_paths_get_no_completion(
    gateway: ServerThread, world: dict[str, Any], db: Database
) -> None:
    await _set_policy(
        db, world["a"]["bu"].id, {"content": {"exclude_paths": ["**/secrets/**", "*.pem", ".env*"]}}
    )
    key = world["a"]["dev_key"]
    body = {"model": "cove-tiny", "prompt": "x", "max_tokens": 1}
    excluded = _until(
        lambda: (
            (
                r := _post(gateway, key, body, **{"x-cove-file-path": "app/secrets/db.py"})
            ).status_code
            == 403
            and r
        )
    )
    assert excluded.json()["error"]["code"] == "content_excluded"
    assert _post(gateway, key, body, **{"x-cove-file-path": ".env.local"}).status_code == 403
    assert _post(gateway, key, body, **{"x-cove-file-path": "src/app.py"}).status_code == 200
    tabby = httpx.post(
        f"{gateway.url}/v1/completions",
        json={"language": "python", "segments": {"prefix": "x", "filepath": "certs/server.pem"}},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert tabby.status_code == 200
    assert tabby.json()["choices"][0]["text"] == ""


async def test_limits_prompt_size_rate_and_max_tokens(
    gateway: ServerThread, world: dict[str, Any], db: Database
) -> None:
    await _set_policy(
        db,
        world["a"]["bu"].id,
        {"limits": {"max_prompt_chars": 100, "user_requests_per_minute": 3, "max_tokens": 2}},
    )
    key = world["a"]["dev_key"]
    too_big = _until(
        lambda: (
            (r := _post(gateway, key, {"model": "cove-tiny", "prompt": "x" * 101})).status_code
            == 413
            and r
        )
    )
    assert too_big.json()["error"]["code"] == "prompt_too_large"
    answers = [
        _post(gateway, key, {"model": "cove-tiny", "prompt": "y", "max_tokens": 50})
        for _ in range(4)
    ]
    statuses = [a.status_code for a in answers]
    assert 429 in statuses, statuses
    limited = answers[statuses.index(429)]
    assert limited.json()["error"]["code"] == "user_rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    ok = answers[0] if statuses[0] == 200 else None
    if ok is not None:
        assert ok.json()["usage"]["completion_tokens"] <= 2
    # Another user of the same BU has their own budget.
    other = _post(gateway, world["a"]["admin_key"], {"model": "cove-tiny", "prompt": "z"})
    assert other.status_code == 200


async def test_model_access_by_role(
    gateway: ServerThread, world: dict[str, Any], db: Database
) -> None:
    await _set_policy(db, world["a"]["bu"].id, {"model_access": {"rules": {"bu-admin": ["*"]}}})
    body = {"model": "cove-tiny", "prompt": "x", "max_tokens": 1}
    denied = _until(
        lambda: (r := _post(gateway, world["a"]["dev_key"], body)).status_code == 403 and r
    )
    assert denied.json()["error"]["code"] == "model_not_allowed"
    assert _post(gateway, world["a"]["admin_key"], body).status_code == 200


@pytest.fixture
def no_redis_settings(gateway_settings: GatewaySettings) -> Iterator[GatewaySettings]:
    from cove.platform.local.procs import free_port

    return gateway_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})


async def test_a_redis_outage_does_not_stop_completions_unless_configured_to(
    db: Database, world: dict[str, Any], vllm_url: str, no_redis_settings: GatewaySettings
) -> None:
    await add_deployment(db, world["a"]["bu"].id, vllm_url)
    body = {"model": "cove-tiny", "prompt": "x", "max_tokens": 1}
    with ServerThread(create_app(no_redis_settings)) as open_gateway:
        assert _post(open_gateway, world["a"]["dev_key"], body).status_code == 200
    closed = no_redis_settings.model_copy(update={"rate_limit_fail_closed": True})
    with ServerThread(create_app(closed)) as closed_gateway:
        refused = _post(closed_gateway, world["a"]["dev_key"], body)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "rate_limiter_unavailable"
