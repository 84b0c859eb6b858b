"""Every block, redaction, exclusion, limit hit and dropped suggestion reaches the audit log
with the rule, the user, the BU and the time — and never the secret or the prompt.

The model is the fake OpenAI-compatible upstream of test_streamed_secrets (at the network
boundary): these are the gateway's decisions, not the model's output.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from cove.platform.core.db import Database
from cove.platform.policies import service as policy_service
from tests.conftest import ServerThread
from tests.gateway.test_policy_enforcement import ADMIN, github_token
from tests.gateway.test_streamed_secrets import TOKEN, gateway  # noqa: F401 (fixture)


def _post(server: ServerThread, key: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/completions",
        json={"model": "cove-tiny", "max_tokens": 4, **body},
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=10,
    )


def _until_status(call: Any, status: int) -> httpx.Response:
    deadline = time.monotonic() + 5
    while True:
        resp = call()
        if resp.status_code == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)


async def test_each_kind_of_policy_decision_is_audited_without_the_secret(
    gateway: ServerThread,
    world: dict[str, Any],
    db: Database,
) -> None:
    bu = world["a"]["bu"].id
    dev = world["a"]["dev_key"]
    redacted_token, blocked_token = github_token(), "AKIA" + "QX7RT2M9LZ4B8KPD"
    started = time.time()
    await policy_service.put_bu(
        db,
        ADMIN,
        bu,
        {
            "content": {
                "actions": {"aws_access_key_id": "block"},
                "exclude_paths": ["**/secrets/**"],
            },
            "limits": {"max_prompt_chars": 200, "user_requests_per_minute": 6},
        },
        None,
    )
    # The policy arrives by notification; the BU admin's requests show when it applied.
    applied = _until_status(
        lambda: _post(
            gateway, world["a"]["admin_key"], {"prompt": "x"}, **{"x-cove-file-path": "secrets/x"}
        ),
        403,
    )
    assert applied.status_code == 403, "the policy did not apply within 5 s"
    block = _post(gateway, dev, {"prompt": f"aws_key = '{blocked_token}'\n"})
    assert block.json()["error"]["code"] == "secret_blocked"
    redact = _post(gateway, dev, {"prompt": f'token = "{redacted_token}"\nsafe'})
    assert redact.status_code == 200
    excluded = _post(gateway, dev, {"prompt": "x"}, **{"x-cove-file-path": "app/secrets/db.py"})
    assert excluded.json()["error"]["code"] == "content_excluded"
    too_big = _post(gateway, dev, {"prompt": "y" * 201})
    assert too_big.json()["error"]["code"] == "prompt_too_large"
    dropped = _post(gateway, dev, {"prompt": "def connect"})
    assert dropped.json()["choices"][0]["finish_reason"] == "content_filter"
    statuses = [_post(gateway, dev, {"prompt": "safe"}).status_code for _ in range(6)]
    assert 429 in statuses

    wanted = {"policy.block", "policy.redact", "policy.exclude", "policy.limit", "policy.drop"}
    deadline = time.monotonic() + 5
    while True:
        async with db.platform() as conn:
            rows = await (
                await conn.execute(
                    "SELECT tenant_id, actor, action, target, diff, request_id,"
                    " extract(epoch FROM created_at) FROM audit_log"
                    " WHERE action LIKE 'policy.%%' AND action <> 'policy.update'"
                    " AND actor = 'a-dev' ORDER BY id"
                )
            ).fetchall()
        if (
            wanted <= {r[2] for r in rows} and len([r for r in rows if r[2] == "policy.limit"]) >= 2
        ) or (time.monotonic() > deadline):
            break
        time.sleep(0.2)
    assert wanted <= {r[2] for r in rows}
    for tenant_id, actor, _, _, diff, request_id, created in rows:
        assert tenant_id == bu
        assert actor == "a-dev"
        assert request_id
        assert started - 1 <= float(created) <= time.time() + 1
        text = orjson.dumps(diff).decode()
        for secret in (redacted_token, blocked_token, TOKEN):
            assert secret[4:] not in text
    rules = {
        r[2]: r[4].get("rule") or r[4]["findings"][0]["rule"]
        for r in rows
        if r[2] != "policy.limit"
    }
    assert rules["policy.exclude"] == "exclude_paths"
    assert rules["policy.block"].startswith("aws")
    assert rules["policy.redact"].startswith("github")
    assert rules["policy.drop"].startswith("github")
    assert {r[4]["rule"] for r in rows if r[2] == "policy.limit"} == {
        "max_prompt_chars",
        "user_rate_limited",
    }
