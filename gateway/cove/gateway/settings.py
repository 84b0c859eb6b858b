"""Settings of the gateway service."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from cove.platform.core.settings import CoveSettings


class GatewaySettings(CoveSettings):
    service_name: str = "cove-gateway"
    # Requests larger than this are refused before they are parsed.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    upstream_connect_timeout: float = Field(default=3.0, gt=0)
    # Time allowed for the upstream's first byte; streams may then run as long as they need.
    upstream_read_timeout: float = Field(default=120.0, gt=0)
    upstream_pool_size: int = Field(default=256, ge=1)
    # Full reload of the key and route caches, besides the change notifications.
    cache_refresh_seconds: float = Field(default=30.0, gt=0)
    # How long an unknown key id is remembered as unknown before the database is asked again.
    negative_cache_seconds: float = Field(default=2.0, ge=0)
    # Where usage events wait when Postgres cannot take them; use a persistent volume.
    event_spool_dir: Path = Path(".cove/spool/gateway")
    event_batch_size: int = Field(default=500, ge=1, le=50_000)
    db_acquire_timeout: float = Field(default=3.0, gt=0)
    event_flush_seconds: float = Field(default=0.5, gt=0)
    max_events_per_request: int = Field(default=1000, ge=1)
    # Refuse traffic when Redis (the rate-limit store) is unreachable, instead of letting it by.
    rate_limit_fail_closed: bool = False
