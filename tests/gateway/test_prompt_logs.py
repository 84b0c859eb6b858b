"""Prompt logging per BU: off by default, `metadata` or `full` within 5 s of a policy change,
the text kept already redacted, read back by the BU's admins through the platform API, and
deleted past each BU's retention by a real Celery worker.

The model is the fake OpenAI-compatible upstream of test_streamed_secrets (at the network
boundary), so the logged completions are known in advance.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cove.gateway import repository as gateway_repository
from cove.gateway.promptlog import PromptLogEntry
from cove.gateway.served import Offer
from cove.platform.core.celery_app import create_celery
from cove.platform.core.db import Database, SyncDatabase
from cove.platform.core.settings import CoveSettings
from cove.platform.policies import service as policy_service
from cove.platform.promptlogs import tasks
from cove.platform.worker import build_app
from tests.conftest import ServerThread
from tests.factories import bearer
from tests.gateway.test_policy_enforcement import ADMIN, github_token
from tests.gateway.test_streamed_secrets import SAFE_PIECES, TOKEN, gateway  # noqa: F401
from tests.platform.deployments_support import broker_url, celery_worker


def _complete(server: ServerThread, key: str, body: dict[str, Any], **headers: str) -> Any:
    resp = httpx.post(
        f"{server.url}/v1/completions",
        json={"model": "cove-tiny", "max_tokens": 8, **body},
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return resp


async def _logs(db: Database, tenant: uuid.UUID) -> list[dict[str, Any]]:
    async with db.platform() as conn:
        cur = await conn.execute(
            "SELECT * FROM prompt_logs WHERE tenant_id = %s ORDER BY logged_at", (tenant,)
        )
        names = [c.name for c in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]


async def _wait_for_logs(
    db: Database, tenant: uuid.UUID, count: int, timeout: float = 5.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await _logs(db, tenant)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


async def test_logging_follows_the_bus_policy_within_seconds_and_keeps_only_redacted_text(
    gateway: ServerThread,
    world: dict[str, Any],
    db: Database,
) -> None:
    bu = world["a"]["bu"].id
    dev = world["a"]["dev_key"]
    token = github_token()
    prompt = f'GITHUB_TOKEN = "{token}"\n# safe\n'
    suffix = "\nprint(add(1, 2))\n"

    # Off by default: requests are served and nothing is kept.
    _complete(gateway, dev, {"prompt": prompt})
    time.sleep(2.5)
    assert await _logs(db, bu) == []

    await policy_service.put_bu(db, ADMIN, bu, {"logging": {"mode": "full"}}, None)
    changed = time.monotonic()
    while not await _logs(db, bu) and time.monotonic() - changed < 5:
        _complete(
            gateway, dev, {"prompt": prompt, "suffix": suffix}, **{"x-cove-file-path": "a.py"}
        )
        time.sleep(0.3)
    rows = await _wait_for_logs(db, bu, 1, timeout=2)
    assert rows, "full logging did not apply within 5 s"
    row = rows[-1]
    assert row["mode"] == "full"
    assert token not in row["prompt"]
    assert "<redacted:github_token>" in row["prompt"]
    assert row["suffix"] == suffix
    assert row["completion"] == "".join(SAFE_PIECES)
    assert row["prompt_chars"] == len(prompt)
    assert row["suffix_chars"] == len(suffix)
    assert row["completion_chars"] == len("".join(SAFE_PIECES))
    assert row["username"] == "a-dev"
    assert row["user_id"] == str(world["a"]["dev_user"])
    assert row["path"] == "a.py"
    assert row["feature"] == "completion"
    assert row["model_version"] == "cove-tiny"
    assert row["completion_id"] == "cmpl-fake"
    assert row["request_id"]
    assert row["rules"][0]["type"] == "github_token"
    assert row["rules"][0]["action"] == "redact"

    # A streamed suggestion that held a credential: the log has what the IDE got.
    before = len(rows)
    streamed = httpx.post(
        f"{gateway.url}/v1/completions",
        json={"model": "cove-tiny", "prompt": "def connect", "stream": True},
        headers={"Authorization": f"Bearer {dev}"},
        timeout=10,
    )
    assert TOKEN not in streamed.text
    rows = await _wait_for_logs(db, bu, before + 1)
    dropped = rows[-1]
    assert TOKEN[4:] not in dropped["completion"]
    assert dropped["completion"].startswith("def connect():")
    assert [r["action"] for r in dropped["rules"]] == ["drop"]

    # Chat and Tabby requests are logged too.
    chat = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "cove-tiny", "messages": [{"role": "user", "content": f"use {token}"}]},
        headers={"Authorization": f"Bearer {dev}"},
        timeout=10,
    )
    assert chat.status_code == 200, chat.text
    tabby = httpx.post(
        f"{gateway.url}/v1/completions",
        json={"language": "python", "segments": {"prefix": "# safe\n", "filepath": "src/x.py"}},
        headers={"Authorization": f"Bearer {dev}"},
        timeout=10,
    )
    assert tabby.status_code == 200, tabby.text
    rows = await _wait_for_logs(db, bu, before + 3)
    by_feature = {(r["feature"], r["language"]): r for r in rows[before + 1 :]}
    chat_row = by_feature[("chat", None)]
    assert token not in chat_row["prompt"]
    assert orjson.loads(chat_row["prompt"])[0]["content"] == "use <redacted:github_token>"
    tabby_row = by_feature[("completion", "python")]
    assert tabby_row["path"] == "src/x.py"
    assert tabby_row["prompt"] == "# safe\n"

    # Metadata mode: sizes, rules and who, never the text.
    await policy_service.put_bu(db, ADMIN, bu, {"logging": {"mode": "metadata"}}, None)
    changed = time.monotonic()
    latest: dict[str, Any] = {}
    while time.monotonic() - changed < 7:
        _complete(gateway, dev, {"prompt": prompt})
        time.sleep(0.5)
        latest = (await _logs(db, bu))[-1]
        if latest["mode"] == "metadata":
            break
    assert latest["mode"] == "metadata", "metadata logging did not apply within 5 s"
    assert latest["prompt"] is latest["suffix"] is latest["completion"] is None
    assert latest["prompt_chars"] == len(prompt)
    assert latest["completion_chars"] == len("".join(SAFE_PIECES))
    assert latest["rules"][0]["type"] == "github_token"

    # The BU of another tenant logs nothing: its policy is still off.
    assert await _logs(db, world["b"]["bu"].id) == []


async def _insert(
    db: Database, tenant: uuid.UUID, *, user: str, username: str, age: timedelta, text: str = ""
) -> None:
    entry = PromptLogEntry(
        tenant_id=tenant,
        mode="full",
        user_id=user,
        username=username,
        feature="completion",
        path="src/app.py",
        language="python",
        prompt_chars=len(text),
        suffix_chars=0,
        model_version="cove-tiny",
        prompt=text,
    )
    offer = Offer(completion_id=f"cmpl-{uuid.uuid4().hex[:6]}")
    offer.texts[0] = ["x = 1\n"]
    row = list(entry.row(offer))
    row[2] = datetime.now(UTC) - age
    async with db.platform() as conn:
        await gateway_repository.insert_prompt_logs(conn, [tuple(row)])


async def test_bu_admins_page_and_filter_their_bus_prompt_logs(
    api: Any, world: dict[str, Any], db: Database
) -> None:
    a = world["a"]
    for n in range(5):
        await _insert(
            db, a["bu"].id, user="u-dev", username="a-dev", age=timedelta(minutes=n), text=f"p{n}"
        )
    await _insert(db, a["bu"].id, user="u-admin", username="a-admin", age=timedelta(hours=3))
    await _insert(db, world["b"]["bu"].id, user="u-b", username="b-dev", age=timedelta(0))
    url = f"/api/v1/bus/{a['bu'].id}/prompt-logs"
    admin = bearer(a["admin_key"])

    first = await api.get(url, params={"limit": 4}, headers=admin)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [e["prompt"] for e in page["entries"]] == ["p0", "p1", "p2", "p3"]
    assert page["entries"][0]["completion"] == "x = 1\n"
    second = await api.get(url, params={"limit": 4, "cursor": page["next_cursor"]}, headers=admin)
    rest = second.json()
    assert [e["username"] for e in rest["entries"]] == ["a-dev", "a-admin"]
    assert rest["next_cursor"] is None

    by_user = await api.get(url, params={"user": "a-admin"}, headers=admin)
    assert [e["user_id"] for e in by_user.json()["entries"]] == ["u-admin"]
    since = (datetime.now(UTC) - timedelta(minutes=2, seconds=30)).isoformat()
    recent = await api.get(url, params={"since": since}, headers=admin)
    assert [e["prompt"] for e in recent.json()["entries"]] == ["p0", "p1", "p2"]

    bad = await api.get(url, params={"cursor": "not-a-cursor"}, headers=admin)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_cursor"
    too_many = await api.get(url, params={"limit": 501}, headers=admin)
    assert too_many.status_code == 422
    developer = await api.get(url, headers=bearer(a["dev_key"]))
    assert developer.status_code == 403
    other_bu = await api.get(url, headers=bearer(world["b"]["admin_key"]))
    assert other_bu.status_code == 404

    async with db.platform() as conn:
        reads = await (
            await conn.execute(
                "SELECT actor FROM audit_log WHERE action = 'prompt_logs.read' AND tenant_id = %s",
                (a["bu"].id,),
            )
        ).fetchall()
    assert ("a-admin",) in reads


@pytest.fixture
def sync_db(settings: CoveSettings) -> Iterator[SyncDatabase]:
    database = SyncDatabase(settings)
    database.open()
    try:
        yield database
    finally:
        database.close()


def test_the_purge_runs_hourly_on_beat() -> None:
    schedule = build_app().conf.beat_schedule
    assert schedule["prompt-logs-purge"]["task"] == tasks.PURGE


async def test_a_celery_worker_deletes_logs_past_each_bus_retention(
    world: dict[str, Any], db: Database, settings: CoveSettings, tmp_path: Path
) -> None:
    a, b = world["a"]["bu"].id, world["b"]["bu"].id
    await policy_service.put_org(db, ADMIN, {"logging": {"retention_days": 30}}, None)
    await policy_service.put_bu(db, ADMIN, a, {"logging": {"retention_days": 7}}, None)
    for tenant in (a, b):
        for days in (1, 8, 40):
            await _insert(
                db, tenant, user="u", username=f"{days}d", age=timedelta(days=days, minutes=1)
            )
    client = create_celery(settings.model_copy(update={"redis_url": broker_url(settings)}))
    with celery_worker(settings, tmp_path):
        result = client.send_task(tasks.PURGE).get(timeout=60)
    assert result == {"bus": 2, "deleted": 3}
    kept = {(r["tenant_id"], r["username"]) for t in (a, b) for r in await _logs(db, t)}
    assert kept == {(a, "1d"), (b, "1d"), (b, "8d")}


async def test_the_logging_policy_is_validated_and_inherited(
    api: Any, world: dict[str, Any]
) -> None:
    bu = world["a"]["bu"].id
    admin = bearer(world["admin_key"])
    url = f"/api/v1/bus/{bu}/policy"
    for bad in (
        {"mode": "verbose"},
        {"retention_days": 0},
        {"retention_days": "forever"},
        {"mode": "full", "keep": "all"},
    ):
        resp = await api.put(url, json={"document": {"logging": bad}}, headers=admin)
        assert resp.status_code == 422, (bad, resp.text)
        assert resp.json()["error"]["code"] == "invalid_policy"
    assert (await api.get(url, headers=admin)).json()["version"] == 0

    org = await api.put(
        "/api/v1/policy",
        json={"document": {"logging": {"mode": "metadata", "retention_days": 90}}},
        headers=admin,
    )
    assert org.status_code == 200, org.text
    inherited = (await api.get(url, headers=admin)).json()["effective"]["logging"]
    assert inherited == {"mode": "metadata", "retention_days": 90}
    chosen = await api.put(url, json={"document": {"logging": {"mode": "off"}}}, headers=admin)
    assert chosen.json()["effective"]["logging"] == {"mode": "off", "retention_days": 90}
