"""Usage events: served completions are recorded, client events are validated, nothing is
lost when Postgres is down or the gateway stops."""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from cove.gateway.app import create_app
from cove.gateway.events import EventSink, UsageEvent, postgres_writer
from cove.gateway.settings import GatewaySettings
from cove.platform.core.db import Database
from cove.platform.core.settings import CoveSettings
from cove.platform.local.procs import free_port, http_ok, spawn, stop_process_group, wait_until
from tests.conftest import ServerThread
from tests.gateway.conftest import add_deployment


async def _rows(db: Database, where: str = "true", params: tuple[Any, ...] = ()) -> list[Any]:
    async with db.platform() as conn:
        cur = await conn.execute(
            "SELECT event_type, tenant_id, completion_id, model_version, feature, language,"
            f" data, user_id, ide FROM usage_events WHERE {where} ORDER BY received_at",
            params,
        )
        return await cur.fetchall()


async def _wait_rows(
    db: Database, count: int, where: str = "true", timeout: float = 10
) -> list[Any]:
    deadline = time.monotonic() + timeout
    rows: list[Any] = []
    while time.monotonic() < deadline:
        rows = await _rows(db, where)
        if len(rows) >= count:
            return rows
        time.sleep(0.1)
    return rows


def _event(event_type: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "timestamp": datetime.now(UTC).isoformat(),
        **extra,
    }


@pytest.fixture
def fast_settings(gateway_settings: GatewaySettings, tmp_path: Path) -> GatewaySettings:
    return gateway_settings.model_copy(
        update={"event_flush_seconds": 0.1, "event_spool_dir": tmp_path / "spool"}
    )


@pytest.mark.vllm
async def test_every_served_completion_is_recorded_with_what_it_offered(
    db: Database, world: dict[str, Any], vllm_url: str, fast_settings: GatewaySettings
) -> None:
    await add_deployment(db, world["a"]["bu"].id, vllm_url)
    with ServerThread(create_app(fast_settings)) as gateway:
        client = openai.OpenAI(
            base_url=f"{gateway.url}/v1",
            api_key=world["a"]["dev_key"],
            max_retries=0,
            default_headers={"x-cove-ide": "vscode/1.95"},
        )
        plain = client.completions.create(model="cove-tiny", prompt="x = ", max_tokens=6)
        streamed = list(
            client.completions.create(model="cove-tiny", prompt="y = ", max_tokens=6, stream=True)
        )
        client.chat.completions.create(
            model="cove-tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        rows = await _wait_rows(db, 3, "event_type = 'completion.served'")
    assert len(rows) == 3
    by_id = {r[2]: r for r in rows}
    first = by_id[plain.id]
    assert first[1] == world["a"]["bu"].id
    assert first[3] == "cove-tiny"
    assert first[4] == "completion"
    assert first[8] == "vscode/1.95"
    assert first[6]["chars"] == len(plain.choices[0].text)
    assert first[6]["completion_tokens"] == 6
    assert first[6]["ttft_ms"] <= first[6]["total_ms"]
    stream_row = by_id[streamed[0].id]
    assert stream_row[6]["chars"] == sum(len(c.choices[0].text) for c in streamed if c.choices)
    assert "cancelled" not in stream_row[6]
    assert sorted(r[4] for r in rows) == ["chat", "completion", "completion"]


async def test_client_event_batches_are_validated_and_idempotent(
    db: Database, world: dict[str, Any], fast_settings: GatewaySettings
) -> None:
    shown = _event("completion.shown", completion_id="cmpl-1", language="python", lines=3, chars=40)
    accepted = _event("completion.accepted", completion_id="cmpl-1", kind="line", lines=1, chars=12)
    applied = _event("edit.applied", feature="chat", lines_added=7, lines_deleted=2)
    bad = [
        _event("completion.exploded", completion_id="c"),
        {**_event("completion.shown", completion_id="c"), "id": "not-a-uuid"},
        _event("completion.shown"),
        {
            **_event("completion.shown", completion_id="c"),
            "timestamp": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
        },
        _event("completion.accepted", completion_id="c", kind="most"),
        _event("completion.served", completion_id="c"),
        "not an object",
    ]
    # A BU cannot write into another BU: the body's tenant is ignored.
    sneaky = {
        **_event("completion.shown", completion_id="cmpl-x"),
        "tenant_id": str(world["b"]["bu"].id),
    }
    headers = {"Authorization": f"Bearer {world['a']['dev_key']}"}
    with ServerThread(create_app(fast_settings)) as gateway:
        url = f"{gateway.url}/v1/events"
        first = httpx.post(
            url, json={"events": [shown, accepted, applied, *bad, sneaky]}, headers=headers
        )
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["accepted"] == 4
        assert [r["code"] for r in body["rejected"]] == [
            "unknown_type",
            "invalid_id",
            "missing_field",
            "future_timestamp",
            "invalid_field",
            "unknown_type",
            "invalid_event",
        ]
        again = httpx.post(url, json={"events": [shown, accepted, applied]}, headers=headers)
        assert again.json()["accepted"] == 3
        too_many = httpx.post(
            url,
            json={"events": [shown] * (fast_settings.max_events_per_request + 1)},
            headers=headers,
        )
        assert too_many.status_code == 413
        assert too_many.json()["error"]["code"] == "too_many_events"
        no_scope = httpx.post(
            url, json={"events": [shown]}, headers={"Authorization": f"Bearer {world['admin_key']}"}
        )
        assert no_scope.status_code == 403
        time.sleep(0.5)
        rows = await _wait_rows(db, 4)
    assert len(rows) == 4, rows
    assert {r[0] for r in rows} == {"completion.shown", "completion.accepted", "edit.applied"}
    assert all(r[1] == world["a"]["bu"].id for r in rows)
    accepted_row = next(r for r in rows if r[0] == "completion.accepted")
    assert accepted_row[6] == {"kind": "line", "lines": 1, "chars": 12}
    assert accepted_row[7] == str(world["a"]["dev_user"])


async def test_tabby_events_map_to_cove_events_and_rerenders_count_once(
    db: Database, world: dict[str, Any], fast_settings: GatewaySettings
) -> None:
    headers = {"Authorization": f"Bearer {world['a']['dev_key']}"}
    with ServerThread(create_app(fast_settings)) as gateway:
        url = f"{gateway.url}/v1/events"
        for _ in range(3):  # the IDE re-renders the same suggestion
            view = httpx.post(
                url,
                json={"type": "view", "completion_id": "cmpl-t", "choice_index": 0},
                headers=headers,
            )
            assert view.status_code == 200
        httpx.post(
            url,
            params={"select_kind": "line"},
            json={"type": "select", "completion_id": "cmpl-t", "choice_index": 0},
            headers=headers,
        )
        httpx.post(
            url,
            json={"type": "dismiss", "completion_id": "cmpl-u", "choice_index": 0},
            headers=headers,
        )
        bad = httpx.post(
            url, json={"type": "view", "completion_id": 5, "choice_index": 0}, headers=headers
        )
        assert bad.status_code == 400
        time.sleep(0.6)
        rows = await _wait_rows(db, 3)
    assert sorted((r[0], r[2]) for r in rows) == [
        ("completion.accepted", "cmpl-t"),
        ("completion.rejected", "cmpl-u"),
        ("completion.shown", "cmpl-t"),
    ]
    assert next(r for r in rows if r[0] == "completion.accepted")[6]["kind"] == "line"


async def test_events_are_spooled_while_postgres_is_down_and_replayed_later(
    db: Database, world: dict[str, Any], settings: CoveSettings, tmp_path: Path
) -> None:
    down = Database(
        settings.model_copy(update={"database_url": f"postgresql://x@127.0.0.1:{free_port()}/x"}),
        min_size=0,
        acquire_timeout=1.0,
    )
    await down.open(wait=False)
    spool = tmp_path / "spool"
    tenant = world["a"]["bu"].id
    events = [
        UsageEvent(
            id=uuid.uuid4(),
            tenant_id=tenant,
            event_type="completion.shown",
            occurred_at=datetime.now(UTC),
            user_id="u",
            completion_id=f"c{i}",
        )
        for i in range(25)
    ]
    failing = EventSink(postgres_writer(down), spool, batch_size=10, flush_interval=0.05)
    await failing.start()
    for event in events:
        failing.emit(event)
    await failing.stop()
    await down.close()
    assert failing.written == 0
    spooled = sum(len(p.read_bytes().splitlines()) for p in failing.spooled_files())
    assert spooled == 25
    assert await _rows(db) == []

    # A gateway that can reach Postgres replays the spool (twice is harmless: idempotent).
    healthy = EventSink(postgres_writer(db), spool)
    assert await healthy.replay_spool() == 25
    assert healthy.spooled_files() == []
    assert len(await _rows(db)) == 25
    failing_copy = EventSink(postgres_writer(db), spool)
    for event in events[:5]:
        failing_copy.emit(event)
    await failing_copy.stop()
    assert len(await _rows(db)) == 25


async def test_sigterm_drains_buffered_events_before_the_gateway_exits(
    db: Database, world: dict[str, Any], settings: CoveSettings, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "COVE_DATABASE_URL": settings.database_url,
        "COVE_SECRET_KEY": settings.secret_key.get_secret_value(),
        # Nothing is flushed on a timer during the test: only the shutdown drain can write.
        "COVE_EVENT_FLUSH_SECONDS": "600",
        "COVE_EVENT_BATCH_SIZE": "50000",
        "COVE_EVENT_SPOOL_DIR": str(tmp_path / "spool"),
    }
    log = tmp_path / "gateway.log"
    proc = spawn(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "cove.gateway.app:main_app",
            "--port",
            str(port),
        ],
        env=env,
        log_file=log,
    )
    try:
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
            timeout=30,
            what="gateway",
            alive=lambda: proc.poll() is None,
            log_file=log,
        )
        headers = {"Authorization": f"Bearer {world['a']['dev_key']}"}
        sent = 0
        for _ in range(20):
            batch = [_event("completion.shown", completion_id=f"c{sent + i}") for i in range(50)]
            resp = httpx.post(
                f"http://127.0.0.1:{port}/v1/events", json={"events": batch}, headers=headers
            )
            assert resp.json()["accepted"] == 50
            sent += 50
        assert await _rows(db) == []
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal after its graceful shutdown, hence -SIGTERM.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM), log.read_text()
        assert "Application shutdown complete" in log.read_text()
    finally:
        stop_process_group(proc.pid)
    rows = await _rows(db)
    assert len(rows) == sent == 1000
    assert not list((tmp_path / "spool").glob("*.jsonl"))
