"""In-memory caches of keys and routes: the hot path never waits on Postgres.

Both caches load fully at start, reload on Postgres notifications (`cove_auth`,
`cove_routes`) and, as a safety net, every `cache_refresh_seconds`. When Postgres is down they
keep serving what they hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg

from cove.gateway import repository
from cove.gateway.policies import GatewayPolicy, PolicyInvalid, effective_policy
from cove.gateway.repository import RouteRow
from cove.platform.core.db import Database
from cove.platform.core.errors import Unauthorized
from cove.tenants.keys import repository as key_repository
from cove.tenants.keys import service as key_service
from cove.tenants.keys.repository import KeyRecord
from cove.tenants.keys.secrets import split_key, verify_secret
from cove.tenants.principal import Principal

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CachedKey:
    record: KeyRecord
    principal: Principal


class KeyCache:
    def __init__(self, db: Database, pepper: bytes, negative_seconds: float) -> None:
        self._db = db
        self._pepper = pepper
        self._negative_seconds = negative_seconds
        self._keys: dict[str, CachedKey] = {}
        self._unknown: dict[str, float] = {}
        # Verified (key id, secret) pairs, so the HMAC runs once per key, not per request.
        self._verified: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._keys)

    async def reload(self) -> None:
        async with self._db.platform() as conn:
            records = await key_repository.all_records(conn)
        fresh = {r.key_id: CachedKey(r, key_service.principal_from_record(r)) for r in records}
        self._keys = fresh
        self._verified = {k: v for k, v in self._verified.items() if k in fresh}
        self._unknown.clear()

    async def reload_one(self, key_id: str) -> None:
        async with self._db.platform() as conn:
            record = await key_repository.record_by_key_id(conn, key_id)
        self._verified.pop(key_id, None)
        if record is None or record.revoked_at is not None:
            self._keys.pop(key_id, None)
        else:
            self._keys[key_id] = CachedKey(record, key_service.principal_from_record(record))

    def drop(self, key_id: str) -> None:
        self._keys.pop(key_id, None)
        self._verified.pop(key_id, None)

    async def authenticate(self, plaintext: str) -> Principal:
        parts = split_key(plaintext)
        if parts is None:
            raise Unauthorized("Invalid API key", code="invalid_api_key")
        key_id, secret = parts
        cached = self._keys.get(key_id)
        if cached is None:
            cached = await self._miss(key_id)
        if self._verified.get(key_id) != secret:
            record = cached.record
            if not verify_secret(self._pepper, record.salt, record.hash, secret):
                raise Unauthorized("Invalid API key", code="invalid_api_key")
            self._verified[key_id] = secret
        key_service.check_usable(cached.record, datetime.now(UTC))
        return cached.principal

    async def _miss(self, key_id: str) -> CachedKey:
        now = time.monotonic()
        if self._unknown.get(key_id, 0.0) > now:
            raise Unauthorized("Invalid API key", code="invalid_api_key")
        try:
            await self.reload_one(key_id)
        except psycopg.Error:
            log.warning("key lookup failed; Postgres unavailable")
        cached = self._keys.get(key_id)
        if cached is None:
            self._unknown[key_id] = now + self._negative_seconds
            if len(self._unknown) > 100_000:
                self._unknown.clear()
            raise Unauthorized("Invalid API key", code="invalid_api_key")
        return cached


@dataclass(frozen=True, slots=True)
class Route:
    deployment: str
    model: str
    served_model_name: str
    endpoint_url: str
    status: str
    fim_tokens: dict[str, str] | None
    base_model: str = ""
    deployment_id: UUID | None = None
    fallback: Route | None = None


@dataclass(frozen=True, slots=True)
class Release:
    stable: str
    canary: str | None
    canary_percent: int
    canary_groups: frozenset[str]

    def pick(self, user: str, groups: tuple[str, ...]) -> str:
        """Stable or canary for this user; the same user always gets the same answer."""
        if self.canary is None:
            return self.stable
        if self.canary_groups and self.canary_groups.intersection(groups):
            return self.canary
        if self.canary_percent <= 0:
            return self.stable
        bucket = int.from_bytes(hashlib.sha256(user.encode()).digest()[:4], "big") % 100
        return self.canary if bucket < self.canary_percent else self.stable


@dataclass(frozen=True, slots=True)
class TenantRoutes:
    status: str
    routes: tuple[Route, ...]
    release: Release | None = None

    def find(self, model: str | None) -> Route | None:
        if model is None:
            return self.routes[0] if self.routes else None
        for route in self.routes:
            if model in (route.model, route.served_model_name, route.deployment):
                return route
        return None

    def choose(self, model: str | None, user: str, groups: tuple[str, ...]) -> Route | None:
        """The route for a request: a release decides between stable and canary when the
        client asks for the release's model (or for none); an explicit version is honoured."""
        release = self.release
        if release is not None and (
            model is None
            or model == release.stable
            or any(r.model == release.stable and model == r.base_model for r in self.routes)
        ):
            chosen = self.find(release.pick(user, groups))
            if chosen is not None:
                return chosen
        return self.find(model)


class RouteCache:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._tenants: dict[UUID, TenantRoutes] = {}
        self._by_slug: dict[str, tuple[UUID, str]] = {}

    def for_tenant(self, tenant_id: UUID) -> TenantRoutes | None:
        return self._tenants.get(tenant_id)

    def tenant_by_slug(self, slug: str) -> tuple[UUID, str] | None:
        """(id, status) of the BU with this slug."""
        return self._by_slug.get(slug)

    async def reload(self) -> None:
        async with self._db.platform() as conn:
            rows = await repository.all_routes(conn)
            tenants = await repository.all_tenants(conn)
            releases = await repository.all_releases(conn)
        self._by_slug = {slug: (tenant_id, status) for tenant_id, slug, status in tenants}
        # A fallback serves the same version when the fallback instance has it (an adapter
        # loaded there too), else the fallback instance's base model.
        plain: dict[tuple[UUID, str], Route] = {
            (row.deployment_id, row.model): _route(row, None) for row in rows
        }
        base: dict[UUID, Route] = {
            row.deployment_id: plain[(row.deployment_id, row.model)]
            for row in rows
            if row.model == row.base_model
        }
        grouped: dict[UUID, list[Route]] = {}
        statuses: dict[UUID, str] = {}
        for row in rows:
            fallback = None
            if row.fallback_deployment_id is not None:
                fallback = plain.get((row.fallback_deployment_id, row.model)) or base.get(
                    row.fallback_deployment_id
                )
            grouped.setdefault(row.tenant_id, []).append(_route(row, fallback))
            statuses[row.tenant_id] = row.tenant_status
        by_tenant_release = {
            r.tenant_id: Release(r.stable, r.canary, r.canary_percent, frozenset(r.canary_groups))
            for r in releases
        }
        self._tenants = {
            tenant_id: TenantRoutes(
                status=statuses[tenant_id],
                routes=tuple(routes),
                release=by_tenant_release.get(tenant_id),
            )
            for tenant_id, routes in grouped.items()
        }


def _route(row: RouteRow, fallback: Route | None) -> Route:
    return Route(
        deployment=row.deployment,
        model=row.model,
        served_model_name=row.served_model_name,
        endpoint_url=row.endpoint_url,
        status=row.status,
        fim_tokens=row.fim_tokens,
        base_model=row.base_model,
        deployment_id=row.deployment_id,
        fallback=fallback,
    )


class PolicyCache:
    """Effective policy per BU, computed once per change rather than per request."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._default = effective_policy({}, None)
        self._org: dict[str, Any] = {}
        self._per_bu: dict[UUID, GatewayPolicy] = {}

    def for_tenant(self, tenant_id: UUID) -> GatewayPolicy:
        return self._per_bu.get(tenant_id, self._default)

    async def reload(self) -> None:
        async with self._db.platform() as conn:
            org, per_bu = await repository.all_policies(conn)
        try:
            default = effective_policy(org, None)
        except PolicyInvalid:
            log.error("the organisation policy is invalid; keeping the previous one")
            return
        effective: dict[UUID, GatewayPolicy] = {}
        for tenant_id, document in per_bu.items():
            try:
                effective[tenant_id] = effective_policy(org, document)
            except PolicyInvalid:
                log.error("invalid policy kept out", extra={"tenant": str(tenant_id)})
                effective[tenant_id] = self._per_bu.get(tenant_id, default)
        self._default, self._per_bu = default, effective


class CacheRefresher:
    """Keeps the caches fresh: LISTEN for changes, plus a periodic full reload."""

    def __init__(
        self,
        conninfo: str,
        keys: KeyCache,
        routes: RouteCache,
        policies: PolicyCache,
        interval: float,
    ) -> None:
        self._conninfo = conninfo
        self._keys = keys
        self._routes = routes
        self._policies = policies
        self._interval = interval
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        try:
            await self._keys.reload()
            await self._routes.reload()
            await self._policies.reload()
        except psycopg.Error:
            log.warning("initial cache load failed; retrying in the background")
        self._tasks = [
            asyncio.create_task(self._listen(), name="cove-cache-listen"),
            asyncio.create_task(self._periodic(), name="cove-cache-periodic"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._reload_all()

    async def _reload_all(self) -> None:
        try:
            await self._keys.reload()
            await self._routes.reload()
            await self._policies.reload()
        except psycopg.Error:
            log.warning("cache reload failed; keeping the cached keys and routes")

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as conn:
                    await conn.execute("LISTEN cove_auth")
                    await conn.execute("LISTEN cove_routes")
                    await conn.execute("LISTEN cove_policies")
                    # Anything may have changed while we were not listening.
                    await self._reload_all()
                    async for note in conn.notifies():
                        await self._handle(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("notification listener lost its connection; reconnecting")
                await asyncio.sleep(1.0)

    async def _handle(self, channel: str, payload: str) -> None:
        try:
            if channel == "cove_auth" and payload.startswith("key:"):
                await self._keys.reload_one(payload[4:])
            elif channel == "cove_auth":
                await self._keys.reload()
                await self._routes.reload()
            elif channel == "cove_policies":
                await self._policies.reload()
            else:
                await self._routes.reload()
        except psycopg.Error:
            log.warning("cache update after notification failed", extra={"channel": channel})
