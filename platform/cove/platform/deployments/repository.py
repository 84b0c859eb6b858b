"""SQL for model deployments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row

from cove.platform.deployments.schemas import Deployment

_SELECT = """
    SELECT d.id, d.tenant_id, d.name, m.name AS model, d.served_model_name, d.endpoint_url,
           d.mode, d.status, d.status_detail, d.last_checked_at, d.created_at
    FROM model_deployments d JOIN models m ON m.id = d.model_id
"""


@dataclass(frozen=True, slots=True)
class HealthTarget:
    id: UUID
    endpoint_url: str
    served_model_name: str
    status: str


async def list_for_tenant(conn: psycopg.AsyncConnection[Any], tenant_id: UUID) -> list[Deployment]:
    async with conn.cursor(row_factory=class_row(Deployment)) as cur:
        await cur.execute(_SELECT + " WHERE d.tenant_id = %s ORDER BY d.name", (tenant_id,))
        return await cur.fetchall()


async def get(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, deployment_id: UUID
) -> Deployment | None:
    async with conn.cursor(row_factory=class_row(Deployment)) as cur:
        await cur.execute(
            _SELECT + " WHERE d.tenant_id = %s AND d.id = %s", (tenant_id, deployment_id)
        )
        return await cur.fetchone()


async def model_id_by_name(conn: psycopg.AsyncConnection[Any], name: str) -> UUID | None:
    cur = await conn.execute("SELECT id FROM models WHERE name = %s", (name,))
    row = await cur.fetchone()
    return None if row is None else UUID(str(row[0]))


async def insert(conn: psycopg.AsyncConnection[Any], values: dict[str, Any]) -> UUID:
    cur = await conn.execute(
        "INSERT INTO model_deployments (tenant_id, name, model_id, served_model_name,"
        " endpoint_url) VALUES (%(tenant_id)s, %(name)s, %(model_id)s, %(served_model_name)s,"
        " %(endpoint_url)s) RETURNING id",
        values,
    )
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


def health_targets(conn: psycopg.Connection[Any]) -> list[HealthTarget]:
    with conn.cursor(row_factory=class_row(HealthTarget)) as cur:
        cur.execute(
            "SELECT id, endpoint_url, served_model_name, status FROM model_deployments ORDER BY id"
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
