"""A BU being deleted is refused by the real gateway within 5 s, like a suspended one, and
served again once restored."""

from __future__ import annotations

import time
from typing import Any

import httpx

from cove.platform.core.db import Database
from tests.factories import bearer
from tests.gateway.conftest import add_deployment, gateway_settings  # noqa: F401


def _models(url: str, key: str) -> httpx.Response:
    return httpx.get(f"{url}/v1/models", headers=bearer(key), timeout=10)


def _wait_for(url: str, key: str, status: int, since: float) -> httpx.Response:
    while (resp := _models(url, key)).status_code != status:
        assert time.monotonic() - since < 5, f"still {resp.status_code} after 5 s: {resp.text}"
        time.sleep(0.1)
    return resp


async def test_the_gateway_refuses_a_bu_being_deleted_and_serves_it_once_restored(
    api: httpx.AsyncClient, world: dict[str, Any], db: Database, gateway_settings: Any
) -> None:
    from cove.gateway.app import create_app
    from tests.conftest import ServerThread

    a, b = world["a"], world["b"]
    admin = bearer(world["admin_key"])
    for bu in (a["bu"], b["bu"]):
        await add_deployment(db, bu.id, "http://127.0.0.1:9")
    with ServerThread(create_app(gateway_settings)) as server:
        served = _models(server.url, a["dev_key"])
        assert served.status_code == 200, served.text
        assert [m["id"] for m in served.json()["data"]] == ["cove-tiny"]

        assert (await api.get(f"/api/v1/bus/{a['bu'].id}/export", headers=admin)).status_code == 200
        deleted = await api.post(f"/api/v1/bus/{a['bu'].id}/deletion", json={}, headers=admin)
        assert deleted.status_code == 202
        refused = _wait_for(server.url, a["dev_key"], 403, time.monotonic())
        assert refused.json()["error"]["code"] == "bu_deleting"
        assert _models(server.url, b["dev_key"]).status_code == 200

        restored = await api.post(f"/api/v1/bus/{a['bu'].id}/restore", headers=admin)
        assert restored.status_code == 200
        _wait_for(server.url, a["dev_key"], 200, time.monotonic())
