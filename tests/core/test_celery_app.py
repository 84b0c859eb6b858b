"""Tasks reach the broker only after their transaction commits."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from cove.platform.core.celery_app import AfterCommit, create_celery
from cove.platform.core.db import Database
from cove.platform.core.settings import CoveSettings


def _queued(url: str) -> int:
    return int(redis.Redis.from_url(url).llen("celery"))


@pytest.fixture
def broker_url(settings: CoveSettings) -> str:
    url = settings.redis_url.rsplit("/", 1)[0] + "/5"
    redis.Redis.from_url(url).flushdb()
    return url


async def test_a_rolled_back_transaction_sends_nothing_and_a_commit_sends_ids(
    db: Database, world: dict[str, Any], settings: CoveSettings, broker_url: str
) -> None:
    celery = create_celery(settings.model_copy(update={"redis_url": broker_url}))
    assert celery.conf.task_acks_late is True
    assert celery.conf.task_serializer == "json"
    outbox = AfterCommit(celery)
    bu = world["a"]["bu"].id

    class Boom(Exception):
        pass

    async def failing_change() -> None:
        async with db.tenant(bu) as conn:
            await conn.execute("UPDATE tenants SET name = 'changed' WHERE id = %s", (bu,))
            outbox.add("deployment.health_check")
            raise Boom

    with pytest.raises(Boom):
        await failing_change()
    outbox.discard()
    assert _queued(broker_url) == 0

    async with db.tenant(bu) as conn:
        await conn.execute("UPDATE tenants SET name = 'changed' WHERE id = %s", (bu,))
        outbox.add("deployment.health_check", bu)
    assert outbox.send() == 1
    assert _queued(broker_url) == 1
