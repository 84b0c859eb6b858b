from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cove.gateway.app import create_app
from cove.gateway.settings import GatewaySettings
from cove.platform.core.db import Database
from cove.platform.core.settings import CoveSettings
from cove.platform.deployments import repository as deployment_repository
from cove.platform.models import repository as model_repository
from tests.conftest import ServerThread

FIM = {"prefix": "<fim_prefix>", "suffix": "<fim_suffix>", "middle": "<fim_middle>"}


async def add_deployment(
    db: Database,
    tenant_id: Any,
    endpoint_url: str,
    *,
    model: str = "cove-tiny",
    served: str = "cove-tiny",
    name: str = "default",
    fim: dict[str, str] | None = FIM,
) -> None:
    async with db.platform() as conn:
        model_id = await model_repository.upsert_base_model(
            conn,
            name=model,
            location="/models/tiny",
            family="llama",
            fim_tokens=fim,
            context_length=1024,
        )
        await deployment_repository.upsert(
            conn,
            {
                "tenant_id": tenant_id,
                "name": name,
                "model_id": model_id,
                "served_model_name": served,
                "endpoint_url": endpoint_url,
            },
        )


@pytest.fixture
def gateway_settings(settings: CoveSettings) -> GatewaySettings:
    return GatewaySettings(**{**settings.model_dump(), "cache_refresh_seconds": 60.0})


@pytest.fixture
def gateway(gateway_settings: GatewaySettings, world: dict[str, Any]) -> Iterator[ServerThread]:
    """The real gateway on a free port (deployments must be added before it starts)."""
    with ServerThread(create_app(gateway_settings)) as server:
        yield server
