"""The audit log through the API: filters, paging, CSV, and who may read it."""

from __future__ import annotations

import csv
import io
from typing import Any

from tests.factories import bearer


async def _make_history(api: Any, world: dict[str, Any]) -> None:
    bu = world["a"]["bu"].id
    headers = bearer(world["a"]["admin_key"])
    for name in ("one", "two", "three"):
        resp = await api.post(f"/api/v1/bus/{bu}/api-keys", json={"name": name}, headers=headers)
        assert resp.status_code == 201
    await api.put(
        f"/api/v1/bus/{bu}/policy",
        json={"document": {"limits": {"max_tokens": 64}}},
        headers=headers,
    )


async def test_bu_admin_reads_filters_and_pages_their_audit_log(
    api: Any, world: dict[str, Any]
) -> None:
    await _make_history(api, world)
    bu = world["a"]["bu"].id
    headers = bearer(world["a"]["admin_key"])
    everything = (await api.get(f"/api/v1/bus/{bu}/audit", headers=headers)).json()
    actions = [e["action"] for e in everything["entries"]]
    assert actions[0] == "policy.update"
    assert actions.count("apikey.create") == 3
    policy = (
        await api.get(f"/api/v1/bus/{bu}/audit", params={"action": "policy."}, headers=headers)
    ).json()
    assert [e["action"] for e in policy["entries"]] == ["policy.update"]
    assert policy["entries"][0]["diff"]["limits"][1] == {"max_tokens": 64}
    first = (await api.get(f"/api/v1/bus/{bu}/audit", params={"limit": 2}, headers=headers)).json()
    assert len(first["entries"]) == 2
    second = (
        await api.get(
            f"/api/v1/bus/{bu}/audit",
            params={"limit": 2, "before_id": first["next_before_id"]},
            headers=headers,
        )
    ).json()
    assert {e["id"] for e in first["entries"]}.isdisjoint({e["id"] for e in second["entries"]})
    bad = await api.get(f"/api/v1/bus/{bu}/audit", params={"limit": 0}, headers=headers)
    assert bad.status_code == 422
    bad_date = await api.get(
        f"/api/v1/bus/{bu}/audit", params={"since": "yesterday"}, headers=headers
    )
    assert bad_date.status_code == 422


async def test_csv_export_has_every_entry_and_a_header(api: Any, world: dict[str, Any]) -> None:
    await _make_history(api, world)
    bu = world["a"]["bu"].id
    resp = await api.get(f"/api/v1/bus/{bu}/audit.csv", headers=bearer(world["a"]["admin_key"]))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert len(rows) == 4
    assert {r["actor"] for r in rows} == {"a-admin"}


async def test_only_platform_admins_read_the_whole_log_and_developers_read_none(
    api: Any, world: dict[str, Any]
) -> None:
    await _make_history(api, world)
    whole = await api.get("/api/v1/audit", headers=bearer(world["admin_key"]))
    assert whole.status_code == 200
    assert len(whole.json()["entries"]) >= 4
    assert (
        await api.get("/api/v1/audit", headers=bearer(world["a"]["admin_key"]))
    ).status_code == 403
    dev = await api.get(
        f"/api/v1/bus/{world['a']['bu'].id}/audit", headers=bearer(world["a"]["dev_key"])
    )
    assert dev.status_code == 403
