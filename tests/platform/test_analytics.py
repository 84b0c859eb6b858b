"""Analytics correctness from hand-computed fixtures: events go in through the gateway's
writer, the rollup task runs, and the metrics API must return exactly the numbers below."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from cove.gateway import repository as gateway_repository
from cove.gateway.events import UsageEvent
from cove.platform.analytics import service, tasks
from cove.platform.core import migrate
from cove.platform.core.db import Database, SyncDatabase
from cove.platform.core.settings import CoveSettings
from cove.platform.local.procs import spawn, stop_process_group
from tests.factories import bearer

DAY = datetime.now(UTC).date() - timedelta(days=2)
NEXT = DAY + timedelta(days=1)


def at(hour: int, minute: int = 0, second: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def ev(
    tenant: uuid.UUID,
    event_type: str,
    when: datetime,
    completion_id: str | None = None,
    *,
    user: str = "u1",
    model_version: str = "base",
    language: str = "python",
    ide: str = "vscode/1.95",
    feature: str = "completion",
    **data: Any,
) -> UsageEvent:
    return UsageEvent(
        id=uuid.uuid4(),
        tenant_id=tenant,
        event_type=event_type,
        occurred_at=when,
        user_id=user,
        completion_id=completion_id,
        model_version=model_version,
        feature=feature,
        language=language,
        ide=ide,
        data=data,
    )


async def write(db: Database, events: list[UsageEvent]) -> int:
    """The gateway's own batch writer (COPY into staging, insert what is new)."""
    async with db.platform() as conn:
        return await gateway_repository.insert_events(conn, [e.row() for e in events])


@pytest.fixture
def sync_db(settings: CoveSettings) -> Iterator[SyncDatabase]:
    database = SyncDatabase(settings)
    database.open()
    try:
        yield database
    finally:
        database.close()


def roll(sync_db: SyncDatabase, first: date = DAY, last: date = NEXT) -> dict[str, int]:
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    return tasks.rollup(sync_db, start.isoformat(), end.isoformat())


async def metrics(api: Any, key: str, bu: uuid.UUID, **params: Any) -> Any:
    params.setdefault("from", DAY.isoformat())
    params.setdefault("to", NEXT.isoformat())
    resp = await api.get(f"/api/v1/bus/{bu}/metrics", params=params, headers=bearer(key))
    assert resp.status_code == 200, resp.text
    return resp.json()


def completion_fixture(a: uuid.UUID) -> tuple[list[UsageEvent], list[UsageEvent]]:
    """Hour 10 of DAY in BU A. Returns (events, a re-sent copy of some of them)."""
    accepted_c1 = ev(a, "completion.accepted", at(10, 0, 3), "c1", kind="full", lines=4, chars=100)
    events = [
        # c1: served, shown, re-rendered, accepted in full, retention measured (10m twice).
        ev(a, "completion.served", at(10), "c1", lines=4, chars=100, ttft_ms=50.4, total_ms=199.6),
        ev(a, "completion.shown", at(10, 0, 1), "c1", lines=4, chars=100),
        ev(a, "completion.shown", at(10, 0, 2), "c1", lines=4, chars=100),
        accepted_c1,
        ev(a, "code.retained", at(10, 0, 33), "c1", window="30s", retained_chars=100),
        ev(a, "code.retained", at(10, 2, 3), "c1", window="2m", retained_chars=90),
        ev(a, "code.retained", at(10, 10, 3), "c1", window="10m", retained_chars=80),
        ev(a, "code.retained", at(10, 10, 4), "c1", window="10m", retained_chars=80),
        # c2: shown without counts (the served event's 3 lines / 60 chars stand in), then a
        # partial accept of one line and of one more word.
        ev(a, "completion.served", at(10, 5), "c2", lines=3, chars=60, ttft_ms=120, total_ms=400),
        ev(a, "completion.shown", at(10, 5, 1), "c2"),
        ev(a, "completion.accepted", at(10, 5, 2), "c2", kind="line", lines=1, chars=20),
        ev(a, "completion.accepted", at(10, 5, 3), "c2", kind="word", lines=0, chars=5),
        # More retained than accepted is capped at what was accepted (25).
        ev(a, "code.retained", at(10, 5, 40), "c2", window="30s", retained_chars=30),
        # c3: shown and rejected.
        ev(a, "completion.served", at(10, 7), "c3", lines=2, chars=30, ttft_ms=30, total_ms=90),
        ev(a, "completion.shown", at(10, 7, 1), "c3", lines=2, chars=30),
        ev(a, "completion.rejected", at(10, 7, 2), "c3"),
        # c4: another user's view the gateway never served (unknown completion id).
        ev(a, "completion.shown", at(10, 8), "c4", user="u2", lines=5, chars=50),
        # c5: accepted in full with no counts and no shown event: the accept implies the view,
        # the served event gives its size.
        ev(a, "completion.served", at(10, 9), "c5", lines=6, chars=80, ttft_ms=500, total_ms=1000),
        ev(a, "completion.accepted", at(10, 9, 5), "c5", kind="full"),
        # Chat and agent edits: proposed, applied twice, discarded once.
        ev(a, "edit.proposed", at(10, 20), feature="chat", lines_added=10, lines_deleted=1),
        ev(a, "edit.applied", at(10, 21), feature="chat", lines_added=7, lines_deleted=2),
        ev(a, "edit.applied", at(10, 22), feature="agent", lines_added=12),
        ev(a, "edit.discarded", at(10, 23), feature="chat", lines_added=3),
    ]
    return events, [accepted_c1, events[1]]


EXPECTED_TOTALS = {
    "served": 4,
    "shown": 5,
    "accepted": 3,
    "accepted_full": 2,
    "accepted_partial": 1,
    "accepted_line": 1,
    "accepted_word": 0,
    "rejected": 1,
    "lines_shown": 4 + 3 + 2 + 5 + 6,
    "lines_accepted": 4 + 1 + 6,
    "chars_accepted": 100 + 25 + 80,
    "edits_proposed": 1,
    "edits_applied": 2,
    "edits_discarded": 1,
    "active_users": 2,
    "engaged_users": 1,
}


async def test_hand_computed_metrics_for_one_hour(
    api: Any, db: Database, sync_db: SyncDatabase, world: dict[str, Any]
) -> None:
    a, b = world["a"]["bu"].id, world["b"]["bu"].id
    events, resent = completion_fixture(a)
    assert await write(db, events) == len(events)
    assert await write(db, resent) == 0  # the same event ids again: nothing new
    # BU B uses the same completion ids; none of it may show up in A's numbers.
    other, _ = completion_fixture(b)
    await write(db, other[:6])
    roll(sync_db)

    report = await metrics(api, world["a"]["admin_key"], a)
    totals = report["totals"]
    assert report["definition_version"] == "v1"
    assert {k: totals[k] for k in EXPECTED_TOTALS} == EXPECTED_TOTALS
    assert totals["acceptance_rate"] == {"value": 0.6, "numerator": 3, "denominator": 5}
    assert totals["acceptance_rate_full"]["value"] == pytest.approx(2 / 5)
    assert totals["line_acceptance_rate"] == {"value": 0.55, "numerator": 11, "denominator": 20}
    assert totals["lines_applied"] == {
        "total": 11 + 7 + 12,
        "completion": 11,
        "chat": 7,
        "edit": 0,
        "agent": 12,
        "other": 0,
    }
    assert totals["review_not_applied_rate"]["value"] == pytest.approx(1 / 3)
    assert totals["retention"]["30s"] == {
        "value": pytest.approx(125 / 205),
        "numerator": 125,
        "denominator": 205,
    }
    assert totals["retention"]["2m"]["numerator"] == 90
    assert totals["retention"]["10m"]["numerator"] == 80
    # TTFT 30, 50, 120, 500 ms: exact mean; the median interpolates in the [50, 75) bucket.
    ttft = totals["latency_ttft_ms"]
    assert ttft["count"] == 4
    assert ttft["mean"] == pytest.approx(175.0)
    assert ttft["p50"] == pytest.approx(75.0)
    assert 500 <= ttft["p95"] < 750
    assert totals["latency_total_ms"]["mean"] == pytest.approx((200 + 400 + 90 + 1000) / 4)
    assert set(report["definitions"]) >= {
        "acceptance_rate",
        "line_acceptance_rate",
        "lines_applied",
        "review_not_applied_rate",
        "retention",
        "active_users",
        "latency_ttft_ms",
    }
    assert report["definitions"]["acceptance_rate"]["id"] == "acceptance_rate/v1"

    by_user = await metrics(api, world["a"]["admin_key"], a, group_by="user")
    users = {g["key"]: g["metrics"] for g in by_user["groups"]}
    assert set(users) == {"u1", "u2"}
    assert (users["u1"]["shown"], users["u1"]["accepted"], users["u1"]["active_users"]) == (4, 3, 1)
    assert (users["u2"]["shown"], users["u2"]["accepted"], users["u2"]["engaged_users"]) == (
        1,
        0,
        0,
    )
    only_u2 = await metrics(api, world["a"]["admin_key"], a, user="u2")
    assert (only_u2["totals"]["shown"], only_u2["totals"]["lines_shown"]) == (1, 5)

    by_feature = await metrics(api, world["a"]["admin_key"], a, group_by="feature")
    features = {g["key"]: g["metrics"] for g in by_feature["groups"]}
    assert features["chat"]["lines_applied"]["chat"] == 7
    assert features["agent"]["edits_applied"] == 1
    assert features["completion"]["accepted"] == 3

    # BU B's rollup holds only its own six events.
    b_report = await metrics(api, world["b"]["admin_key"], b)
    assert (b_report["totals"]["served"], b_report["totals"]["shown"]) == (1, 1)
    assert b_report["totals"]["accepted"] == 1


async def test_a_resent_event_is_new_only_outside_its_duplicate_window(
    db: Database, world: dict[str, Any]
) -> None:
    a = world["a"]["bu"].id
    first = ev(a, "completion.shown", at(10), "r1")
    assert await write(db, [first]) == 1
    # The same id again with a skewed clock, even in another day's partition: not new.
    later = replace(first, occurred_at=at(10) + timedelta(hours=20))
    earlier = replace(first, occurred_at=at(9, 30))
    assert await write(db, [later, earlier]) == 0
    # Twice in one batch: once.
    twice = ev(a, "completion.shown", at(11), "r2")
    assert await write(db, [twice, twice]) == 1
    # Beyond the window (two days) the id names another event.
    assert await write(db, [replace(first, occurred_at=at(10) - timedelta(days=3))]) == 1


def per_user_fixture(a: uuid.UUID) -> list[UsageEvent]:
    """Hour 14 of DAY in BU A: one user across languages, IDEs, features and two model
    versions (several rows of the per-segment rollup), one more user, and one only proposing."""
    return [
        ev(a, "completion.served", at(14), "p10", lines=3, chars=60, ttft_ms=40, total_ms=90),
        ev(a, "completion.shown", at(14, 0, 1), "p10", lines=3, chars=60),
        ev(a, "completion.accepted", at(14, 0, 2), "p10", kind="full", lines=3, chars=60),
        ev(a, "completion.shown", at(14, 1), "p11", language="go", lines=2, chars=30),
        ev(a, "completion.rejected", at(14, 1, 1), "p11", language="go"),
        ev(a, "completion.shown", at(14, 2), "p12", ide="jetbrains/2024.2", lines=4, chars=80),
        ev(
            a,
            "completion.accepted",
            at(14, 2, 1),
            "p12",
            ide="jetbrains/2024.2",
            kind="line",
            lines=1,
            chars=20,
        ),
        ev(a, "completion.shown", at(14, 3), "p13", model_version="ft-1", lines=5, chars=90),
        ev(a, "completion.accepted", at(14, 3, 1), "p13", model_version="ft-1", kind="full"),
        ev(a, "edit.applied", at(14, 10), feature="chat", lines_added=6, lines_deleted=1),
        ev(a, "edit.applied", at(14, 11), feature="agent", language="go", lines_added=4),
        ev(a, "edit.discarded", at(14, 12), feature="chat", lines_added=2),
        ev(
            a,
            "completion.served",
            at(14, 20),
            "p14",
            user="u2",
            model_version="ft-1",
            language="go",
            lines=2,
            chars=20,
            ttft_ms=300,
            total_ms=800,
        ),
        ev(
            a,
            "completion.shown",
            at(14, 20, 1),
            "p14",
            user="u2",
            model_version="ft-1",
            language="go",
            lines=2,
            chars=20,
        ),
        ev(a, "edit.proposed", at(14, 30), user="u3", feature="chat", lines_added=9),
    ]


ADDITIVE = (
    "served",
    "shown",
    "accepted",
    "accepted_full",
    "accepted_line",
    "accepted_word",
    "rejected",
    "lines_shown",
    "lines_accepted",
    "chars_accepted",
    "edits_proposed",
    "edits_applied",
    "edits_discarded",
)


async def test_per_user_reads_equal_what_the_raw_events_imply(
    api: Any, db: Database, sync_db: SyncDatabase, world: dict[str, Any], settings: CoveSettings
) -> None:
    a = world["a"]["bu"].id
    key = world["a"]["admin_key"]
    await write(db, per_user_fixture(a))
    roll(sync_db)
    async with db.platform() as conn:
        rows = await (
            await conn.execute(
                "SELECT day, user_id, model_version, shown FROM analytics_daily_users"
                " WHERE tenant_id = %s ORDER BY 2, 3",
                (a,),
            )
        ).fetchall()
    # One row per day, user and model version, whatever the languages, IDEs and features.
    assert [tuple(r) for r in rows] == [
        (DAY, "u1", "base", 3),
        (DAY, "u1", "ft-1", 1),
        (DAY, "u2", "ft-1", 1),
        (DAY, "u3", "base", 0),
    ]

    by_user = await metrics(api, key, a, group_by="user")
    users = {g["key"]: g["metrics"] for g in by_user["groups"]}
    u1, u2, u3 = users["u1"], users["u2"], users["u3"]
    assert {k: u1[k] for k in ADDITIVE} == {
        "served": 1,
        "shown": 4,
        "accepted": 3,
        "accepted_full": 2,
        "accepted_line": 1,
        "accepted_word": 0,
        "rejected": 1,
        "lines_shown": 3 + 2 + 4 + 5,
        "lines_accepted": 3 + 1 + 5,
        "chars_accepted": 60 + 20 + 90,
        "edits_proposed": 0,
        "edits_applied": 2,
        "edits_discarded": 1,
    }
    assert u1["lines_applied"] == {
        "total": 9 + 6 + 4,
        "completion": 9,
        "chat": 6,
        "edit": 0,
        "agent": 4,
        "other": 0,
    }
    assert (u1["active_users"], u1["engaged_users"]) == (1, 1)
    assert (u2["shown"], u2["served"], u2["active_users"], u2["engaged_users"]) == (1, 1, 1, 0)
    assert u2["latency_ttft_ms"]["mean"] == pytest.approx(300.0)
    assert (u3["edits_proposed"], u3["active_users"], u3["engaged_users"]) == (1, 0, 0)
    assert (by_user["totals"]["active_users"], by_user["totals"]["engaged_users"]) == (2, 1)

    # The same numbers through the per-segment rows: by user, one language at a time.
    per_language = [
        {
            g["key"]: g["metrics"]
            for g in (await metrics(api, key, a, group_by="user", language=lang))["groups"]
        }
        for lang in ("python", "go")
    ]
    for user, values in users.items():
        parts = [p[user] for p in per_language if user in p]
        assert {k: sum(p[k] for p in parts) for k in ADDITIVE} == {k: values[k] for k in ADDITIVE}
        assert sum(p["lines_applied"]["total"] for p in parts) == values["lines_applied"]["total"]
    # ... and the BU-wide segment rows agree with the per-user sums.
    totals = (await metrics(api, key, a))["totals"]
    assert {k: totals[k] for k in ADDITIVE} == {
        k: sum(u[k] for u in users.values()) for k in ADDITIVE
    }

    one_user = await metrics(api, key, a, user="u1", group_by="day")
    assert [(g["key"], g["metrics"]["shown"]) for g in one_user["groups"]] == [(DAY.isoformat(), 4)]
    resp = await api.get(
        f"/api/v1/bus/{a}/metrics/compare",
        params={
            "a": "base",
            "b": "ft-1",
            "user": "u1",
            "min_shown": "1",
            "from": DAY.isoformat(),
            "to": NEXT.isoformat(),
        },
        headers=bearer(key),
    )
    assert resp.status_code == 200, resp.text
    sides = resp.json()
    assert (sides["a"]["shown"], sides["a"]["accepted"]) == (3, 2)
    assert (sides["b"]["shown"], sides["b"]["accepted"], sides["b"]["lines_accepted"]) == (1, 1, 5)
    by_version = await metrics(api, key, a, user="u1", group_by="model_version")
    assert {g["key"]: g["metrics"]["active_users"] for g in by_version["groups"]} == {
        "base": 1,
        "ft-1": 1,
    }

    # Migration 0011 backfills the per-user rows from what was already rolled up.
    migrate.downgrade(settings.database_url, "0010")
    migrate.upgrade(settings.database_url)
    again = await metrics(api, key, a, group_by="user")
    assert again["groups"] == by_user["groups"]


async def test_rollup_is_idempotent_and_late_events_are_rerolled(
    api: Any, db: Database, sync_db: SyncDatabase, world: dict[str, Any]
) -> None:
    a = world["a"]["bu"].id
    key = world["a"]["admin_key"]
    events, _ = completion_fixture(a)
    await write(db, events)
    first = tasks.rollup(sync_db)  # incremental: everything is new
    assert first["tenants"] == 1
    before = (await metrics(api, key, a))["totals"]
    roll(sync_db)
    roll(sync_db)
    assert (await metrics(api, key, a))["totals"] == before

    # Late and out of order: c3 is accepted after all (reported after the rollup), and a
    # view of c6 that happened at 09:59:55 arrives after its 10:00:10 re-render.
    await write(
        db,
        [
            ev(a, "completion.accepted", at(10, 7, 5), "c3", kind="full", lines=2, chars=30),
            ev(a, "completion.shown", at(10, 0, 10), "c6", lines=1, chars=10),
        ],
    )
    stale = (await metrics(api, key, a))["totals"]
    assert stale["accepted"] == 3
    await write(db, [ev(a, "completion.shown", at(9, 59, 55), "c6", lines=1, chars=10)])
    tasks.rollup(sync_db)
    after = (await metrics(api, key, a))["totals"]
    assert (after["shown"], after["accepted"], after["rejected"]) == (6, 4, 0)
    assert after["lines_accepted"] == 11 + 2
    async with db.platform() as conn:
        hours = await (
            await conn.execute(
                "SELECT hour, sum(shown) FROM analytics_hourly WHERE tenant_id = %s"
                " GROUP BY hour ORDER BY hour",
                (a,),
            )
        ).fetchall()
    # c6 counts once, in the hour of its first view.
    assert [(h.hour, int(n)) for h, n in hours] == [(9, 1), (10, 5)]


async def test_day_boundaries_are_utc_whatever_the_clients_offset(
    api: Any, db: Database, sync_db: SyncDatabase, world: dict[str, Any]
) -> None:
    a = world["a"]["bu"].id
    plus_two = timezone(timedelta(hours=2))
    await write(
        db,
        [
            # 01:30 at +02:00 on NEXT is 23:30 UTC on DAY.
            ev(
                a,
                "completion.shown",
                datetime(NEXT.year, NEXT.month, NEXT.day, 1, 30, tzinfo=plus_two),
                "d1",
            ),
            ev(a, "completion.shown", at(23, 59, 59), "d2"),
            ev(a, "completion.shown", at(0, 0, 0, day=NEXT), "d3"),
            # Shown before midnight, accepted after: counted once, on the day of the view.
            ev(a, "completion.shown", at(23, 59, 50), "d4", lines=2),
            ev(a, "completion.accepted", at(0, 0, 10, day=NEXT), "d4", kind="full", lines=2),
        ],
    )
    roll(sync_db)
    report = await metrics(api, world["a"]["admin_key"], a, group_by="day")
    days = {g["key"]: g["metrics"] for g in report["groups"]}
    assert days[DAY.isoformat()]["shown"] == 3
    assert days[DAY.isoformat()]["accepted"] == 1
    assert days[NEXT.isoformat()]["shown"] == 1
    assert days[NEXT.isoformat()]["accepted"] == 0
    assert report["totals"]["shown"] == 4
    assert report["totals"]["accepted"] == 1


async def test_retention_purges_old_events_and_rollups_of_that_bu_only(
    db: Database, sync_db: SyncDatabase, world: dict[str, Any]
) -> None:
    a, b = world["a"]["bu"].id, world["b"]["bu"].id
    old = datetime.now(UTC).date() - timedelta(days=10)
    await write(
        db,
        [
            ev(a, "completion.shown", at(12, day=old), "old-a"),
            ev(b, "completion.shown", at(12, day=old), "old-b"),
            ev(a, "completion.shown", at(12), "new-a"),
        ],
    )
    roll(sync_db, old, NEXT)
    async with db.platform() as conn:
        await conn.execute("UPDATE tenants SET retention_days = 3 WHERE id = %s", (a,))
    counts = tasks.purge(sync_db, str(a))
    assert counts["events_deleted"] == 1
    async with db.platform() as conn:
        left = await (
            await conn.execute("SELECT tenant_id, completion_id FROM usage_events ORDER BY 2")
        ).fetchall()
        daily = await (
            await conn.execute("SELECT tenant_id, day FROM analytics_daily ORDER BY day, 1")
        ).fetchall()
    assert sorted(c for _, c in left) == ["new-a", "old-b"]
    assert (a, old) not in daily
    assert (b, old) in daily
    assert (a, DAY) in daily
    async with db.platform() as conn:
        per_user = await (
            await conn.execute("SELECT tenant_id, day FROM analytics_daily_users ORDER BY day, 1")
        ).fetchall()
    assert (a, old) not in per_user
    assert (b, old) in per_user
    assert (a, DAY) in per_user


async def test_compare_model_versions_with_confidence_intervals(
    api: Any, db: Database, sync_db: SyncDatabase, world: dict[str, Any]
) -> None:
    a = world["a"]["bu"].id
    events: list[UsageEvent] = []
    # Newcombe (1998), example (a): 56/70 - 48/80 = 0.2, 95% CI 0.0524 to 0.3339.
    for version, shown, accepted in (("base", 80, 48), ("ft-1", 70, 56)):
        for i in range(shown):
            cid = f"{version}-{i}"
            events.append(ev(a, "completion.shown", at(14, i % 60), cid, model_version=version))
            if i < accepted:
                events.append(
                    ev(a, "completion.accepted", at(14, i % 60, 5), cid, model_version=version)
                )
    await write(db, events)
    roll(sync_db)
    url = f"/api/v1/bus/{a}/metrics/compare"
    params = {"a": "base", "b": "ft-1", "from": DAY.isoformat(), "to": NEXT.isoformat()}
    resp = await api.get(
        url, params={**params, "min_shown": "50"}, headers=bearer(world["a"]["admin_key"])
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok"
    assert (body["a"]["shown"], body["a"]["accepted"]) == (80, 48)
    assert (body["b"]["shown"], body["b"]["accepted"]) == (70, 56)
    assert body["difference"]["value"] == pytest.approx(0.2)
    low, high = body["difference"]["ci95"]
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    assert body["difference"]["significant"] is True
    # Wilson interval of 48/80.
    assert body["a"]["acceptance_rate_ci95"][0] == pytest.approx(0.4905, abs=1e-4)

    default = await api.get(url, params=params, headers=bearer(world["a"]["admin_key"]))
    assert default.json()["status"] == "insufficient_data"  # fewer than 100 shown each
    assert default.json()["difference"]["significant"] is None
    empty = await api.get(
        url, params={**params, "b": "never-served"}, headers=bearer(world["a"]["admin_key"])
    )
    assert empty.json()["status"] == "insufficient_data"
    assert empty.json()["difference"]["ci95"] is None


async def test_csv_and_copilot_exports(
    api: Any, db: Database, sync_db: SyncDatabase, world: dict[str, Any]
) -> None:
    a = world["a"]["bu"].id
    events, _ = completion_fixture(a)
    events.append(
        ev(a, "completion.served", at(11), "chat-1", feature="chat", ide="jetbrains/2024.2")
    )
    await write(db, events)
    roll(sync_db)
    headers = bearer(world["a"]["admin_key"])
    period = {"from": DAY.isoformat(), "to": NEXT.isoformat()}
    resp = await api.get(f"/api/v1/bus/{a}/metrics.csv", params=period, headers=headers)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    lines = resp.text.strip().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
    assert rows[0]["key"] == DAY.isoformat()
    assert (rows[0]["shown"], rows[0]["accepted"], rows[0]["acceptance_rate"]) == ("5", "3", "0.6")
    assert rows[-1]["group_by"] == "total"

    resp = await api.get(f"/api/v1/bus/{a}/metrics/copilot", params=period, headers=headers)
    assert resp.status_code == 200, resp.text
    [day] = resp.json()
    assert day["date"] == DAY.isoformat()
    assert (day["total_active_users"], day["total_engaged_users"]) == (2, 1)
    completions = day["copilot_ide_code_completions"]
    assert completions["total_engaged_users"] == 1
    [editor] = completions["editors"]
    assert editor["name"] == "vscode"
    [model] = editor["models"]
    assert (model["name"], model["is_custom_model"]) == ("base", False)
    [python] = model["languages"]
    assert python == {
        "name": "python",
        "total_engaged_users": 1,
        "total_code_suggestions": 5,
        "total_code_acceptances": 3,
        "total_code_lines_suggested": 20,
        "total_code_lines_accepted": 11,
    }
    chat = day["copilot_ide_chat"]
    assert [e["name"] for e in chat["editors"]] == ["jetbrains", "vscode"]
    jetbrains = chat["editors"][0]["models"][0]
    assert jetbrains["total_chats"] == 1
    vscode_chat = chat["editors"][1]["models"][0]
    assert vscode_chat["total_chat_insertion_events"] == 1
    assert day["copilot_dotcom_chat"] is None
    # Field names at every level as in GitHub's Copilot metrics API (copilot-usage-metrics-day).
    assert set(day) == {
        "date",
        "total_active_users",
        "total_engaged_users",
        "copilot_ide_code_completions",
        "copilot_ide_chat",
        "copilot_dotcom_chat",
        "copilot_dotcom_pull_requests",
    }
    assert set(completions) == {"total_engaged_users", "languages", "editors"}
    assert set(completions["languages"][0]) == {"name", "total_engaged_users"}
    assert set(editor) == {"name", "total_engaged_users", "models"}
    model_fields = {"name", "is_custom_model", "custom_model_training_date", "total_engaged_users"}
    assert set(model) == model_fields | {"languages"}
    assert set(chat) == {"total_engaged_users", "editors"}
    assert set(jetbrains) == model_fields | {
        "total_chats",
        "total_chat_insertion_events",
        "total_chat_copy_events",
    }


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"from": "2025-13-01"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2025-03-02", "to": "2025-03-01"}, "from"),
        ({"from": "2023-01-01", "to": "2025-01-01"}, "from"),
        ({"group_by": "colour"}, "group_by"),
        ({"feature": "typing"}, "feature"),
        ({"language": ""}, "language"),
        ({"user": "x" * 500}, "user"),
    ],
)
async def test_malformed_filters_are_422_invalid_filter(
    api: Any, world: dict[str, Any], params: dict[str, str], param: str
) -> None:
    bu = world["a"]["bu"].id
    for path in ("metrics", "metrics.csv", "metrics/copilot", "metrics/compare"):
        resp = await api.get(
            f"/api/v1/bus/{bu}/{path}",
            params={"a": "x", "b": "y", **params},
            headers=bearer(world["a"]["admin_key"]),
        )
        assert resp.status_code == 422, (path, resp.text)
        assert resp.json()["error"]["code"] == "invalid_filter"
        assert param in resp.json()["error"]["message"]


async def test_compare_needs_two_versions_and_a_sane_threshold(
    api: Any, world: dict[str, Any]
) -> None:
    url = f"/api/v1/bus/{world['a']['bu'].id}/metrics/compare"
    headers = bearer(world["a"]["admin_key"])
    for params in ({"a": "base"}, {"a": "base", "b": "ft", "min_shown": "lots"}):
        resp = await api.get(url, params=params, headers=headers)
        assert resp.status_code == 422
        assert resp.json()["error"]["code"] == "invalid_filter"


async def test_group_filter_resolves_members_or_says_it_cannot(
    api: Any, db: Database, sync_db: SyncDatabase, world: dict[str, Any]
) -> None:
    a = world["a"]["bu"].id
    events, _ = completion_fixture(a)
    # The BU's developer (a member of its Keycloak group /cove/bu-a/developers) shows two.
    dev = str(world["a"]["dev_user"])
    events += [
        ev(a, "completion.shown", at(11), "g1", user=dev, lines=3),
        ev(a, "completion.shown", at(11, 1), "g2", user=dev, lines=1),
        ev(a, "completion.accepted", at(11, 1, 2), "g2", user=dev, kind="full", lines=1),
    ]
    await write(db, events)
    roll(sync_db)
    key = world["a"]["admin_key"]
    for group in ("/cove/bu-a/developers", "developers"):
        report = await metrics(api, key, a, group=group, group_by="user")
        assert (report["totals"]["shown"], report["totals"]["accepted"]) == (2, 1), group
        assert [g["key"] for g in report["groups"]] == [dev]
    nobody = await metrics(api, key, a, group="/cove/bu-a/viewers")
    assert (nobody["totals"]["shown"], nobody["totals"]["active_users"]) == (0, 0)
    # A team Cove does not know, and another BU's group: said so, never an empty chart.
    for group in ("/cove/bu-a/team-x", "/cove/bu-b/developers"):
        resp = await api.get(
            f"/api/v1/bus/{a}/metrics", params={"group": group}, headers=bearer(key)
        )
        assert resp.status_code == 422
        assert resp.json()["error"]["code"] == "unknown_group"
        assert resp.json()["error"]["param"] == "group"
    from cove.tenants.principal import Principal, Role, Scope

    admin = Principal(
        subject="t",
        username="t",
        tenant_id=a,
        user_id=None,
        roles=frozenset({Role.BU_ADMIN}),
        scopes=frozenset({Scope.ADMIN_READ}),
    )
    query = service.parse_query(
        {"group": "team-x", "date_from": DAY.isoformat(), "date_to": NEXT.isoformat()}
    )
    report = await service.metrics(
        db, admin, a, query, service.StaticGroupDirectory({"team-x": ("u2",)})
    )
    assert (report.totals.shown, report.totals.active_users) == (1, 1)


async def test_another_bu_gets_404_and_a_developer_key_403(api: Any, world: dict[str, Any]) -> None:
    b = world["b"]["bu"].id
    for path in ("metrics", "metrics.csv", "metrics/copilot", "metrics/compare?a=x&b=y"):
        resp = await api.get(f"/api/v1/bus/{b}/{path}", headers=bearer(world["a"]["admin_key"]))
        assert resp.status_code == 404, (path, resp.text)
        assert resp.json()["error"]["code"] == "bu_not_found"
        resp = await api.get(f"/api/v1/bus/{b}/{path}", headers=bearer(world["b"]["dev_key"]))
        assert resp.status_code == 403
        resp = await api.get(f"/api/v1/bus/{b}/{path}", headers=bearer(world["admin_key"]))
        assert resp.status_code == 200, (path, resp.text)
    missing = uuid.uuid4()
    resp = await api.get(f"/api/v1/bus/{missing}/metrics", headers=bearer(world["admin_key"]))
    assert resp.status_code == 404


def test_percentiles_from_the_histogram() -> None:
    hist = [0] * service.repository.HISTOGRAM_SIZE
    assert service.percentile(hist, 0.5) is None
    hist[5] = 10  # ten values in [75, 100) ms
    assert service.percentile(hist, 0.5) == pytest.approx(87.5)
    hist[-1] = 10  # and ten at or above 60 s
    assert service.percentile(hist, 0.95) == 60000


async def test_a_real_celery_worker_runs_the_rollup_task(
    api: Any, db: Database, world: dict[str, Any], settings: CoveSettings, tmp_path: Path
) -> None:
    from celery import Celery

    a = world["a"]["bu"].id
    events, _ = completion_fixture(a)
    await write(db, events)
    broker = settings.redis_url.rsplit("/", 1)[0] + "/4"
    env = {
        **os.environ,
        "COVE_DATABASE_URL": settings.database_url,
        "COVE_REDIS_URL": broker,
        "COVE_SECRET_KEY": settings.secret_key.get_secret_value(),
    }
    log = tmp_path / "worker.log"
    proc = spawn(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cove.platform.worker",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "1",
            "--pool",
            "solo",
        ],
        env=env,
        log_file=log,
    )
    client = Celery("cove-test", broker=broker, backend=broker)
    try:
        result = client.send_task(tasks.ROLLUP)
        deadline = time.monotonic() + 60
        while not result.ready():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        assert result.get(timeout=1)["tenants"] == 1
    finally:
        stop_process_group(proc.pid)
        proc.wait(timeout=15)
    report = await metrics(api, world["a"]["admin_key"], a)
    assert report["totals"]["shown"] == EXPECTED_TOTALS["shown"]
    assert report["totals"]["accepted"] == EXPECTED_TOTALS["accepted"]
