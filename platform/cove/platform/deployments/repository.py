"""SQL for model deployments, the adapters on them, and what the reconciler observes.

The async functions serve the API (inside a BU's or the platform's transaction); the sync
ones serve the Celery tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from cove.platform.deployments.schemas import DeploymentAdapter
from cove.tenants.bus.schemas import PLATFORM_SLUG as PLATFORM_SLUG

ROUTES_CHANNEL = "cove_routes"
# PLATFORM_SLUG is the owner the runtimes see for the platform's shared instances (the label
# `cove.dev/bu`, the local state directory); creating a BU with it is refused (slug_reserved).

_SELECT = """
    SELECT d.id, d.tenant_id, d.name, d.model_id, m.name AS model, d.served_model_name,
           d.endpoint_url, d.mode, d.runtime, d.status, d.status_detail, d.last_checked_at,
           d.created_at, d.updated_at, d.desired_state, d.generation, d.observed_generation,
           d.spec, d.gpus, d.max_lora_rank, d.replicas_ready, d.fallback_deployment_id,
           f.name AS fallback_deployment, d.capacity, d.conditions, d.events, d.reconciled_at
    FROM model_deployments d
    JOIN models m ON m.id = d.model_id
    LEFT JOIN model_deployments f ON f.id = d.fallback_deployment_id
"""

_ADAPTERS = """
    SELECT da.deployment_id, da.model_id, da.tenant_id, a.name AS model, a.lora_rank AS rank,
           da.state, da.detail, da.updated_at
    FROM deployment_adapters da JOIN models a ON a.id = da.model_id
"""


@dataclass(frozen=True, slots=True)
class DeploymentRow:
    id: UUID
    # None: a base instance the platform shares across BUs.
    tenant_id: UUID | None
    name: str
    model_id: UUID
    model: str
    served_model_name: str
    endpoint_url: str
    mode: str
    runtime: str
    status: str
    status_detail: str | None
    last_checked_at: datetime | None
    created_at: datetime
    updated_at: datetime
    desired_state: str
    generation: int
    observed_generation: int
    spec: dict[str, Any]
    gpus: int
    max_lora_rank: int
    replicas_ready: int
    fallback_deployment_id: UUID | None
    fallback_deployment: str | None
    capacity: dict[str, Any]
    conditions: list[dict[str, Any]]
    events: list[dict[str, Any]]
    reconciled_at: datetime | None


@dataclass(frozen=True, slots=True)
class AdapterRow:
    deployment_id: UUID
    model_id: UUID
    tenant_id: UUID
    model: str
    rank: int | None
    state: str
    detail: str | None
    updated_at: datetime

    def public(self) -> DeploymentAdapter:
        return DeploymentAdapter(
            model_id=self.model_id,
            model=self.model,
            rank=self.rank,
            state=self.state,
            detail=self.detail,
            updated_at=self.updated_at,
        )


@dataclass(frozen=True, slots=True)
class TenantLimits:
    slug: str
    gpu_quota: int
    max_model_instances: int


@dataclass(frozen=True, slots=True)
class Usage:
    gpus: int
    managed_instances: int


@dataclass(frozen=True, slots=True)
class HealthTarget:
    id: UUID
    tenant_id: UUID | None
    runtime: str
    endpoint_url: str
    served_model_name: str
    status: str
    capacity: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReconcileTarget:
    """Everything the reconciler needs about one deployment, read in one query."""

    id: UUID
    tenant_id: UUID | None
    bu_slug: str
    gpu_quota: int
    name: str
    runtime: str
    mode: str
    model: str
    model_location: str
    context_length: int | None
    served_model_name: str
    endpoint_url: str
    status: str
    status_detail: str | None
    desired_state: str
    generation: int
    observed_generation: int
    spec: dict[str, Any]
    max_lora_rank: int
    replicas_ready: int
    capacity: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AdapterTarget:
    model_id: UUID
    name: str
    location: str
    state: str
    detail: str | None


# ---- API side (async) ---------------------------------------------------------------------


async def list_for_tenant(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID
) -> list[DeploymentRow]:
    async with conn.cursor(row_factory=class_row(DeploymentRow)) as cur:
        await cur.execute(_SELECT + " WHERE d.tenant_id = %s ORDER BY d.name", (tenant_id,))
        return await cur.fetchall()


async def get(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, deployment_id: UUID
) -> DeploymentRow | None:
    async with conn.cursor(row_factory=class_row(DeploymentRow)) as cur:
        await cur.execute(
            _SELECT + " WHERE d.tenant_id = %s AND d.id = %s", (tenant_id, deployment_id)
        )
        return await cur.fetchone()


async def get_by_name(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, name: str
) -> DeploymentRow | None:
    async with conn.cursor(row_factory=class_row(DeploymentRow)) as cur:
        await cur.execute(_SELECT + " WHERE d.tenant_id = %s AND d.name = %s", (tenant_id, name))
        return await cur.fetchone()


async def list_shared(conn: psycopg.AsyncConnection[Any]) -> list[DeploymentRow]:
    """Every base instance the platform shares across BUs."""
    async with conn.cursor(row_factory=class_row(DeploymentRow)) as cur:
        await cur.execute(_SELECT + " WHERE d.tenant_id IS NULL ORDER BY d.name")
        return await cur.fetchall()


async def get_shared(
    conn: psycopg.AsyncConnection[Any], deployment_id: UUID
) -> DeploymentRow | None:
    async with conn.cursor(row_factory=class_row(DeploymentRow)) as cur:
        await cur.execute(_SELECT + " WHERE d.tenant_id IS NULL AND d.id = %s", (deployment_id,))
        return await cur.fetchone()


_GRANTED = (
    " AND EXISTS (SELECT 1 FROM model_grants g WHERE g.model_id = d.model_id"
    " AND g.tenant_id = %(t)s)"
)


async def shared_for_tenant(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID
) -> list[DeploymentRow]:
    """The shared instances a BU may put adapters on: those of base models granted to it."""
    async with conn.cursor(row_factory=class_row(DeploymentRow)) as cur:
        await cur.execute(
            _SELECT + " WHERE d.tenant_id IS NULL" + _GRANTED + " ORDER BY d.name",
            {"t": tenant_id},
        )
        return await cur.fetchall()


async def get_shared_for_tenant(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, deployment_id: UUID
) -> DeploymentRow | None:
    async with conn.cursor(row_factory=class_row(DeploymentRow)) as cur:
        await cur.execute(
            _SELECT + " WHERE d.tenant_id IS NULL AND d.id = %(d)s" + _GRANTED,
            {"t": tenant_id, "d": deployment_id},
        )
        return await cur.fetchone()


async def shared_name_taken(conn: psycopg.AsyncConnection[Any], name: str) -> bool:
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM model_deployments WHERE tenant_id IS NULL AND name = %s)",
        (name,),
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def shared_users(
    conn: psycopg.AsyncConnection[Any], deployment_id: UUID
) -> list[tuple[str, str]]:
    """(BU slug, adapter) of every adapter BUs keep on a shared instance."""
    cur = await conn.execute(
        "SELECT t.slug, a.name FROM deployment_adapters da JOIN tenants t ON t.id = da.tenant_id"
        " JOIN models a ON a.id = da.model_id"
        " WHERE da.deployment_id = %s AND da.state IN ('pending', 'loaded', 'failed')"
        " ORDER BY t.slug, a.name",
        (deployment_id,),
    )
    return [(str(row[0]), str(row[1])) for row in await cur.fetchall()]


async def adapters_of(
    conn: psycopg.AsyncConnection[Any],
    deployment_ids: list[UUID],
    *,
    tenant_id: UUID | None = None,
) -> dict[UUID, list[AdapterRow]]:
    """The adapters on each deployment; with `tenant_id`, only that BU's (a shared instance
    carries adapters of several BUs)."""
    found: dict[UUID, list[AdapterRow]] = {i: [] for i in deployment_ids}
    if not deployment_ids:
        return found
    async with conn.cursor(row_factory=class_row(AdapterRow)) as cur:
        await cur.execute(
            _ADAPTERS + " WHERE da.deployment_id = ANY(%s)"
            " AND (%s::uuid IS NULL OR da.tenant_id = %s) ORDER BY a.name",
            (deployment_ids, tenant_id, tenant_id),
        )
        for row in await cur.fetchall():
            found[row.deployment_id].append(row)
    return found


async def adapter_on(
    conn: psycopg.AsyncConnection[Any], deployment_id: UUID, model_id: UUID
) -> AdapterRow | None:
    async with conn.cursor(row_factory=class_row(AdapterRow)) as cur:
        await cur.execute(
            _ADAPTERS + " WHERE da.deployment_id = %s AND da.model_id = %s",
            (deployment_id, model_id),
        )
        return await cur.fetchone()


async def model_id_by_name(conn: psycopg.AsyncConnection[Any], name: str) -> UUID | None:
    cur = await conn.execute("SELECT id FROM models WHERE name = %s", (name,))
    row = await cur.fetchone()
    return None if row is None else UUID(str(row[0]))


async def lock_tenant(conn: psycopg.AsyncConnection[Any], tenant_id: UUID) -> TenantLimits | None:
    """The BU's limits, locked until the transaction ends: admissions of one BU queue up, so
    two concurrent requests cannot both fit in the same free GPUs."""
    async with conn.cursor(row_factory=class_row(TenantLimits)) as cur:
        await cur.execute(
            "SELECT slug, gpu_quota, max_model_instances FROM tenants WHERE id = %s FOR UPDATE",
            (tenant_id,),
        )
        return await cur.fetchone()


async def usage(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, *, excluding: UUID | None = None
) -> Usage:
    """GPUs and managed instances the BU holds, counting deployments still being deleted
    (their instances hold the GPUs until the reconciler has stopped them) and fine-tuning
    jobs that have not finished (one quota covers serving and training)."""
    cur = await conn.execute(
        "SELECT coalesce(sum(gpus), 0) + (SELECT coalesce(sum(j.gpus), 0) FROM finetune_jobs j"
        "   WHERE j.tenant_id = %s"
        "   AND j.status IN ('queued', 'preparing', 'training', 'evaluating')),"
        " count(*) FILTER (WHERE runtime IN ('local', 'kubernetes'))"
        " FROM model_deployments WHERE tenant_id = %s AND id IS DISTINCT FROM %s",
        (tenant_id, tenant_id, excluding),
    )
    row = await cur.fetchone()
    assert row is not None
    return Usage(gpus=int(row[0]), managed_instances=int(row[1]))


async def insert(conn: psycopg.AsyncConnection[Any], values: dict[str, Any]) -> UUID:
    full = {
        "runtime": "external",
        "mode": "dedicated",
        "spec": {},
        "gpus": 0,
        "max_lora_rank": 8,
        "fallback_deployment_id": None,
        "status": "pending",
        **values,
    }
    full["spec"] = Jsonb(full["spec"])
    cur = await conn.execute(
        "INSERT INTO model_deployments (tenant_id, name, model_id, served_model_name,"
        " endpoint_url, runtime, mode, spec, gpus, max_lora_rank, fallback_deployment_id,"
        " status) VALUES (%(tenant_id)s, %(name)s, %(model_id)s, %(served_model_name)s,"
        " %(endpoint_url)s, %(runtime)s, %(mode)s, %(spec)s, %(gpus)s, %(max_lora_rank)s,"
        " %(fallback_deployment_id)s, %(status)s) RETURNING id",
        full,
    )
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def upsert(conn: psycopg.AsyncConnection[Any], values: dict[str, Any]) -> UUID:
    """Create the deployment or point the existing one (same BU and name) at a new endpoint."""
    cur = await conn.execute(
        "INSERT INTO model_deployments (tenant_id, name, model_id, served_model_name,"
        " endpoint_url) VALUES (%(tenant_id)s, %(name)s, %(model_id)s, %(served_model_name)s,"
        " %(endpoint_url)s)"
        " ON CONFLICT (tenant_id, name) DO UPDATE SET model_id = EXCLUDED.model_id,"
        " served_model_name = EXCLUDED.served_model_name, endpoint_url = EXCLUDED.endpoint_url,"
        " status = 'pending', updated_at = now()"
        " RETURNING id",
        values,
    )
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def upsert_local(conn: psycopg.AsyncConnection[Any], values: dict[str, Any]) -> UUID:
    """Create the BU's deployment that the local runtime runs, or bring the one of that name
    back to this desired state (the local stack's demo deployment, on every `cove up`). It is
    `pending` until the reconciler has seen its process serve again."""
    cur = await conn.execute(
        "INSERT INTO model_deployments AS d (tenant_id, name, model_id, served_model_name,"
        " endpoint_url, runtime, mode, spec, gpus, max_lora_rank, status)"
        " VALUES (%(tenant_id)s, %(name)s, %(model_id)s, %(served_model_name)s,"
        " %(endpoint_url)s, 'local', %(mode)s, %(spec)s, 0, %(max_lora_rank)s, 'pending')"
        " ON CONFLICT (tenant_id, name) DO UPDATE SET model_id = EXCLUDED.model_id,"
        " served_model_name = EXCLUDED.served_model_name,"
        " endpoint_url = CASE WHEN d.runtime = 'local' THEN d.endpoint_url"
        "   ELSE EXCLUDED.endpoint_url END,"
        " generation = d.generation + CASE WHEN (d.model_id, d.runtime, d.mode, d.spec,"
        "   d.desired_state) IS DISTINCT FROM (EXCLUDED.model_id, EXCLUDED.runtime,"
        "   EXCLUDED.mode, EXCLUDED.spec, 'running') THEN 1 ELSE 0 END,"
        " runtime = EXCLUDED.runtime, mode = EXCLUDED.mode, spec = EXCLUDED.spec,"
        " gpus = EXCLUDED.gpus, max_lora_rank = EXCLUDED.max_lora_rank,"
        " desired_state = 'running', status = 'pending', status_detail = NULL,"
        " updated_at = now()"
        " RETURNING id",
        {**values, "spec": Jsonb(values["spec"])},
    )
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def update_desired(
    conn: psycopg.AsyncConnection[Any],
    deployment_id: UUID,
    expected_generation: int,
    values: dict[str, Any],
) -> int | None:
    """Write a new desired state if nobody changed the deployment since `expected_generation`;
    returns the new generation, or None when the generation moved on (a conflict)."""
    cur = await conn.execute(
        "UPDATE model_deployments SET spec = %(spec)s, gpus = %(gpus)s,"
        " max_lora_rank = %(max_lora_rank)s, endpoint_url = %(endpoint_url)s,"
        " fallback_deployment_id = %(fallback_deployment_id)s, generation = generation + 1,"
        " updated_at = now()"
        " WHERE id = %(id)s AND generation = %(expected)s AND desired_state = 'running'"
        " RETURNING generation",
        {
            **values,
            "spec": Jsonb(values["spec"]),
            "id": deployment_id,
            "expected": expected_generation,
        },
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def mark_deleted(conn: psycopg.AsyncConnection[Any], deployment_id: UUID) -> None:
    await conn.execute(
        "UPDATE model_deployments SET desired_state = 'deleted', generation = generation + 1,"
        " updated_at = now() WHERE id = %s",
        (deployment_id,),
    )


async def drop_as_fallback(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, deployment_id: UUID
) -> list[str]:
    """Stop other deployments falling back to this one; returns their names."""
    cur = await conn.execute(
        "UPDATE model_deployments SET fallback_deployment_id = NULL, updated_at = now()"
        " WHERE tenant_id = %s AND fallback_deployment_id = %s RETURNING name",
        (tenant_id, deployment_id),
    )
    return sorted(str(row[0]) for row in await cur.fetchall())


async def routable_models(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, *, excluding: UUID | None = None
) -> dict[str, UUID]:
    """Models the gateway can route for the BU (name -> id): the base model of each running
    deployment and of each shared instance of a base model granted to it, and each of its
    adapters loaded on either. `excluding` leaves out one deployment."""
    cur = await conn.execute(
        "SELECT m.name, m.id FROM model_deployments d JOIN models m ON m.id = d.model_id"
        " WHERE d.tenant_id = %(t)s AND d.desired_state = 'running'"
        " AND d.id IS DISTINCT FROM %(x)s"
        " UNION"
        " SELECT m.name, m.id FROM model_deployments d JOIN models m ON m.id = d.model_id"
        " WHERE d.tenant_id IS NULL AND d.desired_state = 'running'"
        " AND d.id IS DISTINCT FROM %(x)s"
        " AND EXISTS (SELECT 1 FROM model_grants g WHERE g.model_id = d.model_id"
        " AND g.tenant_id = %(t)s)"
        " UNION"
        " SELECT a.name, a.id FROM deployment_adapters da"
        " JOIN model_deployments d ON d.id = da.deployment_id"
        " JOIN models a ON a.id = da.model_id"
        " WHERE da.tenant_id = %(t)s AND d.desired_state = 'running' AND da.state = 'loaded'"
        " AND d.id IS DISTINCT FROM %(x)s",
        {"t": tenant_id, "x": excluding},
    )
    return {str(row[0]): UUID(str(row[1])) for row in await cur.fetchall()}


async def adapter_loaded_elsewhere(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, model_id: UUID, deployment_id: UUID
) -> bool:
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM deployment_adapters da"
        " JOIN model_deployments d ON d.id = da.deployment_id"
        " WHERE da.tenant_id = %s AND da.model_id = %s AND da.deployment_id <> %s"
        " AND da.state = 'loaded' AND d.desired_state = 'running')",
        (tenant_id, model_id, deployment_id),
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def release_models(conn: psycopg.AsyncConnection[Any], tenant_id: UUID) -> dict[str, UUID]:
    """The models the BU's release sends traffic to (stable and canary), by role."""
    cur = await conn.execute(
        "SELECT stable_model_id, canary_model_id FROM model_releases WHERE tenant_id = %s",
        (tenant_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return {}
    found = {"stable": UUID(str(row[0]))}
    if row[1] is not None:
        found["canary"] = UUID(str(row[1]))
    return found


async def attach_adapter(
    conn: psycopg.AsyncConnection[Any], deployment_id: UUID, model_id: UUID, tenant_id: UUID
) -> None:
    """Ask for the adapter on the deployment (again, after a failure or an unload)."""
    await conn.execute(
        "INSERT INTO deployment_adapters (deployment_id, model_id, tenant_id, state)"
        " VALUES (%s, %s, %s, 'pending')"
        " ON CONFLICT (deployment_id, model_id) DO UPDATE SET state = 'pending', detail = NULL,"
        " updated_at = now()",
        (deployment_id, model_id, tenant_id),
    )


async def request_unload(
    conn: psycopg.AsyncConnection[Any], deployment_id: UUID, model_id: UUID
) -> None:
    await conn.execute(
        "UPDATE deployment_adapters SET state = 'unloading', detail = NULL, updated_at = now()"
        " WHERE deployment_id = %s AND model_id = %s",
        (deployment_id, model_id),
    )


async def tenant_limits(conn: psycopg.AsyncConnection[Any], tenant_id: UUID) -> TenantLimits | None:
    async with conn.cursor(row_factory=class_row(TenantLimits)) as cur:
        await cur.execute(
            "SELECT slug, gpu_quota, max_model_instances FROM tenants WHERE id = %s", (tenant_id,)
        )
        return await cur.fetchone()


async def notify_routes(conn: psycopg.AsyncConnection[Any], tenant_id: UUID | None) -> None:
    """Gateways reload their routes when the transaction commits."""
    await conn.execute("SELECT pg_notify(%s, %s)", (ROUTES_CHANNEL, str(tenant_id or "platform")))


# ---- worker side (sync) -------------------------------------------------------------------


def health_targets(conn: psycopg.Connection[Any]) -> list[HealthTarget]:
    with conn.cursor(row_factory=class_row(HealthTarget)) as cur:
        cur.execute(
            "SELECT id, tenant_id, runtime, endpoint_url, served_model_name, status, capacity"
            " FROM model_deployments WHERE desired_state = 'running' ORDER BY id"
        )
        return cur.fetchall()


def record_health(
    conn: psycopg.Connection[Any], deployment_id: UUID, status: str, detail: str | None
) -> None:
    conn.execute(
        "UPDATE model_deployments SET status = %s, status_detail = %s, last_checked_at = now(),"
        " updated_at = CASE WHEN status IS DISTINCT FROM %s THEN now() ELSE updated_at END"
        " WHERE id = %s",
        (status, detail, status, deployment_id),
    )


def record_capacity(
    conn: psycopg.Connection[Any], deployment_id: UUID, capacity: dict[str, Any]
) -> None:
    conn.execute(
        "UPDATE model_deployments SET capacity = %s, last_checked_at = now() WHERE id = %s",
        (Jsonb(capacity), deployment_id),
    )


def try_lock(conn: psycopg.Connection[Any], deployment_id: UUID) -> bool:
    """A transaction-scoped lock: one reconcile of a deployment at a time, across workers."""
    cur = conn.execute(
        "SELECT pg_try_advisory_xact_lock(hashtext('cove.reconcile'), hashtext(%s))",
        (str(deployment_id),),
    )
    row = cur.fetchone()
    return bool(row and row[0])


def reconcile_target(conn: psycopg.Connection[Any], deployment_id: UUID) -> ReconcileTarget | None:
    with conn.cursor(row_factory=class_row(ReconcileTarget)) as cur:
        cur.execute(
            # A shared instance has no BU: it runs under the platform's name, and the
            # platform's namespace holds exactly the GPUs of the shared instances not being
            # deleted (so deleting one lowers the quota).
            "SELECT d.id, d.tenant_id, coalesce(t.slug, %s) AS bu_slug,"
            " coalesce(t.gpu_quota, (SELECT coalesce(sum(s.gpus), 0)::int"
            "   FROM model_deployments s"
            "   WHERE s.tenant_id IS NULL AND s.desired_state <> 'deleted')) AS gpu_quota,"
            " d.name, d.runtime,"
            " d.mode, m.name AS model, m.location AS model_location, m.context_length,"
            " d.served_model_name, d.endpoint_url, d.status, d.status_detail, d.desired_state,"
            " d.generation, d.observed_generation, d.spec, d.max_lora_rank, d.replicas_ready,"
            " d.capacity"
            " FROM model_deployments d JOIN models m ON m.id = d.model_id"
            " LEFT JOIN tenants t ON t.id = d.tenant_id WHERE d.id = %s",
            (PLATFORM_SLUG, deployment_id),
        )
        return cur.fetchone()


def adapter_targets(conn: psycopg.Connection[Any], deployment_id: UUID) -> list[AdapterTarget]:
    with conn.cursor(row_factory=class_row(AdapterTarget)) as cur:
        cur.execute(
            "SELECT da.model_id, a.name, a.location, da.state, da.detail"
            " FROM deployment_adapters da JOIN models a ON a.id = da.model_id"
            " WHERE da.deployment_id = %s ORDER BY a.name",
            (deployment_id,),
        )
        return cur.fetchall()


def set_adapter_state(
    conn: psycopg.Connection[Any],
    deployment_id: UUID,
    model_id: UUID,
    state: str,
    detail: str | None,
) -> None:
    conn.execute(
        "UPDATE deployment_adapters SET state = %s, detail = %s, updated_at = now()"
        " WHERE deployment_id = %s AND model_id = %s",
        (state, detail, deployment_id, model_id),
    )


def forget_adapter(conn: psycopg.Connection[Any], deployment_id: UUID, model_id: UUID) -> None:
    conn.execute(
        "DELETE FROM deployment_adapters WHERE deployment_id = %s AND model_id = %s"
        " AND state = 'unloading'",
        (deployment_id, model_id),
    )


def reset_loaded_adapters(conn: psycopg.Connection[Any], deployment_id: UUID, detail: str) -> int:
    """A restarted instance has lost its hot-loaded adapters: load them again."""
    cur = conn.execute(
        "UPDATE deployment_adapters SET state = 'pending', detail = %s, updated_at = now()"
        " WHERE deployment_id = %s AND state = 'loaded'",
        (detail, deployment_id),
    )
    return cur.rowcount


def record_observed(
    conn: psycopg.Connection[Any],
    deployment_id: UUID,
    *,
    generation: int,
    status: str,
    detail: str | None,
    endpoint_url: str,
    replicas_ready: int,
    conditions: list[dict[str, Any]],
    capacity: dict[str, Any] | None,
    events: list[dict[str, Any]] | None = None,
) -> None:
    conn.execute(
        "UPDATE model_deployments SET observed_generation = greatest(observed_generation, %s),"
        " status = %s, status_detail = %s, endpoint_url = %s, replicas_ready = %s,"
        " conditions = %s, capacity = coalesce(%s, capacity), events = coalesce(%s, events),"
        " reconciled_at = now(),"
        " last_checked_at = now(),"
        " updated_at = CASE WHEN status IS DISTINCT FROM %s OR endpoint_url IS DISTINCT FROM %s"
        "   THEN now() ELSE updated_at END"
        " WHERE id = %s",
        (
            generation,
            status,
            detail,
            endpoint_url,
            replicas_ready,
            Jsonb(conditions),
            Jsonb(capacity) if capacity is not None else None,
            Jsonb(events) if events is not None else None,
            status,
            endpoint_url,
            deployment_id,
        ),
    )


def delete_row(conn: psycopg.Connection[Any], deployment_id: UUID) -> None:
    conn.execute(
        "DELETE FROM model_deployments WHERE id = %s AND desired_state = 'deleted'",
        (deployment_id,),
    )


def needing_reconcile(conn: psycopg.Connection[Any]) -> list[UUID]:
    """Deployments the sweep reconciles: every managed instance (to notice crashes and
    drift), and any deployment with a change not yet carried out."""
    cur = conn.execute(
        "SELECT d.id FROM model_deployments d"
        " WHERE d.runtime IN ('local', 'kubernetes') OR d.desired_state = 'deleted'"
        " OR d.observed_generation < d.generation"
        " OR EXISTS (SELECT 1 FROM deployment_adapters da WHERE da.deployment_id = d.id"
        "   AND da.state IN ('pending', 'unloading'))"
        " ORDER BY d.id"
    )
    return [UUID(str(row[0])) for row in cur.fetchall()]


def notify_routes_sync(conn: psycopg.Connection[Any], tenant_id: UUID | None) -> None:
    conn.execute("SELECT pg_notify(%s, %s)", (ROUTES_CHANNEL, str(tenant_id or "platform")))


def observed_state(
    conn: psycopg.Connection[Any], deployment_id: UUID
) -> tuple[str, str | None, str, datetime | None] | None:
    """(status, detail, endpoint, reconciled_at) of one deployment."""
    cur = conn.execute(
        "SELECT status, status_detail, endpoint_url, reconciled_at FROM model_deployments"
        " WHERE id = %s",
        (deployment_id,),
    )
    row = cur.fetchone()
    return None if row is None else (str(row[0]), row[1], str(row[2]), row[3])
