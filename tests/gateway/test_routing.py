"""Routing: canary shares sticky per user, explicit versions, fallback and circuit breaking.

The upstreams are small recording servers: these tests look at which instance and which
served name each request reached, which a real vLLM does not report. The same routing against
real vLLM instances is exercised by the deployment end-to-end tests.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cove.gateway.app import create_app
from cove.gateway.caches import Release
from cove.gateway.settings import GatewaySettings
from cove.platform.core.db import Database
from cove.platform.local.procs import free_port
from tests.conftest import ServerThread
from tests.factories import add_key
from tests.gateway.conftest import add_deployment


def recorder(name: str, seen: list[tuple[str, str]]) -> Starlette:
    async def answer(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append((name, body["model"]))
        return JSONResponse(
            {
                "id": f"cmpl-{uuid.uuid4().hex}",
                "object": "text_completion",
                "model": body["model"],
                "choices": [{"index": 0, "text": "x", "finish_reason": "stop"}],
            }
        )

    return Starlette(routes=[Route("/v1/completions", answer, methods=["POST"])])


async def _adapter_and_release(db: Database, tenant: Any, percent: int) -> None:
    async with db.platform() as conn:
        await conn.execute(
            "INSERT INTO models (name, kind, base_model_id, tenant_id, location, lora_rank)"
            " SELECT 'cove-tiny-sdk-v2', 'adapter', id, %s, '/adapters/v2', 8 FROM models"
            " WHERE name = 'cove-tiny'",
            (tenant,),
        )
        await conn.execute(
            "INSERT INTO deployment_adapters (deployment_id, model_id, tenant_id, state)"
            " SELECT d.id, a.id, d.tenant_id, 'loaded' FROM model_deployments d, models a"
            " WHERE d.tenant_id = %s AND d.name = 'default' AND a.name = 'cove-tiny-sdk-v2'",
            (tenant,),
        )
        await conn.execute(
            "INSERT INTO model_releases (tenant_id, stable_model_id, canary_model_id,"
            " canary_percent) SELECT %s, s.id, c.id, %s FROM models s, models c"
            " WHERE s.name = 'cove-tiny' AND c.name = 'cove-tiny-sdk-v2'",
            (tenant, percent),
        )


def _complete(url: str, key: str, model: str | None = "cove-tiny") -> httpx.Response:
    body: dict[str, Any] = {"prompt": "x", "max_tokens": 1}
    if model is not None:
        body["model"] = model
    return httpx.post(
        f"{url}/v1/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


async def test_canary_share_is_sticky_per_user_and_explicit_versions_win(
    db: Database, world: dict[str, Any], gateway_settings: GatewaySettings, settings: Any
) -> None:
    tenant = world["a"]["bu"].id
    seen: list[tuple[str, str]] = []
    pepper = settings.secret_key.get_secret_value().encode()
    keys = []
    async with db.platform() as conn:
        for _ in range(40):
            keys.append(
                (
                    await add_key(
                        conn, pepper, tenant_id=tenant, user_id=None, scopes=["completions"]
                    )
                )[0]
            )
    with ServerThread(recorder("primary", seen)) as upstream:
        await add_deployment(db, tenant, upstream.url)
        await _adapter_and_release(db, tenant, 50)
        with ServerThread(create_app(gateway_settings)) as gateway:
            versions: dict[str, set[str]] = {}
            for key in keys:
                for _ in range(3):
                    resp = _complete(gateway.url, key)
                    assert resp.status_code == 200, resp.text
                    versions.setdefault(key, set()).add(resp.headers["x-cove-model-version"])
            explicit = _complete(gateway.url, keys[0], "cove-tiny-sdk-v2")
            omitted = _complete(gateway.url, keys[0], None)
    assert all(len(v) == 1 for v in versions.values()), "a user switched versions"
    split = Counter(next(iter(v)) for v in versions.values())
    assert split["cove-tiny-sdk-v2"] >= 8
    assert split["cove-tiny"] >= 8
    assert explicit.headers["x-cove-model-version"] == "cove-tiny-sdk-v2"
    assert omitted.headers["x-cove-model-version"] in {"cove-tiny", "cove-tiny-sdk-v2"}
    # The adapter is asked for by its own served name on the same instance.
    assert {model for _, model in seen} == {"cove-tiny", "cove-tiny-sdk-v2"}


def test_canary_groups_take_precedence_and_zero_percent_means_stable() -> None:
    release = Release("stable", "canary", 0, frozenset({"/cove/payments/early-adopters"}))
    assert release.pick("anyone", ()) == "stable"
    assert release.pick("anyone", ("/cove/payments/early-adopters",)) == "canary"
    everyone = Release("stable", "canary", 100, frozenset())
    assert everyone.pick("u1", ()) == "canary"
    no_canary = Release("stable", None, 100, frozenset())
    assert no_canary.pick("u1", ()) == "stable"


async def test_a_dead_primary_falls_back_and_its_circuit_opens(
    db: Database, world: dict[str, Any], gateway_settings: GatewaySettings
) -> None:
    tenant = world["a"]["bu"].id
    seen: list[tuple[str, str]] = []
    with ServerThread(recorder("fallback", seen)) as spare:
        await add_deployment(db, tenant, f"http://127.0.0.1:{free_port()}", name="default")
        await add_deployment(db, tenant, spare.url, name="spare", served="cove-tiny")
        async with db.platform() as conn:
            await conn.execute(
                "UPDATE model_deployments SET fallback_deployment_id ="
                " (SELECT id FROM model_deployments WHERE name = 'spare' AND tenant_id = %s)"
                " WHERE name = 'default' AND tenant_id = %s",
                (tenant, tenant),
            )
        with ServerThread(create_app(gateway_settings)) as gateway:
            answers = [_complete(gateway.url, world["a"]["dev_key"]) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert len(seen) == 5
    assert {name for name, _ in seen} == {"fallback"}


async def test_a_dead_primary_without_fallback_is_a_clear_503(
    db: Database, world: dict[str, Any], gateway_settings: GatewaySettings
) -> None:
    await add_deployment(db, world["a"]["bu"].id, f"http://127.0.0.1:{free_port()}")
    with ServerThread(create_app(gateway_settings)) as gateway:
        first = _complete(gateway.url, world["a"]["dev_key"])
        for _ in range(3):
            _complete(gateway.url, world["a"]["dev_key"])
        opened = _complete(gateway.url, world["a"]["dev_key"])
    assert first.status_code == 503
    assert first.json()["error"]["code"] == "upstream_unavailable"
    # After three failures the breaker answers at once without trying the instance.
    assert opened.status_code == 503
    assert opened.json()["error"]["code"] == "model_unavailable"
