"""SQL for the model catalog: base models, grants to BUs, and BU adapters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from cove.platform.models.schemas import CatalogModel, Grant

_SELECT = """
    SELECT m.id, m.name, m.kind, b.name AS base_model, m.tenant_id AS bu_id, m.location,
           coalesce(m.family, b.family) AS family,
           coalesce(m.fim_tokens, b.fim_tokens) AS fim_tokens,
           coalesce(m.context_length, b.context_length) AS context_length,
           m.licence, coalesce(m.architecture, b.architecture) AS architecture, m.lora_rank,
           m.scores, m.lineage, m.created_at
    FROM models m LEFT JOIN models b ON b.id = m.base_model_id
"""

_GRANTED_OR_OWN = """
    WHERE (m.kind = 'base' AND m.id IN (
             SELECT g.model_id FROM model_grants g WHERE g.tenant_id = %(tenant)s))
       OR (m.kind = 'adapter' AND m.tenant_id = %(tenant)s)
    ORDER BY m.kind DESC, m.name
"""

_GRANTS = """
    SELECT m.name AS model, g.model_id, g.tenant_id AS bu_id, t.slug AS bu_slug, g.created_at
    FROM model_grants g JOIN models m ON m.id = g.model_id JOIN tenants t ON t.id = g.tenant_id
"""


@dataclass(frozen=True, slots=True)
class References:
    """What still points at a model; each must be gone before the model can go."""

    deployments: int
    adapters: int
    loaded_on: int
    releases: int

    @property
    def total(self) -> int:
        return self.deployments + self.adapters + self.loaded_on + self.releases


async def upsert_base_model(
    conn: psycopg.AsyncConnection[Any],
    *,
    name: str,
    location: str,
    family: str | None,
    fim_tokens: dict[str, str] | None,
    context_length: int | None,
    licence: str | None = None,
) -> UUID:
    cur = await conn.execute(
        "INSERT INTO models (name, kind, location, family, fim_tokens, context_length, licence)"
        " VALUES (%s, 'base', %s, %s, %s, %s, %s)"
        " ON CONFLICT (name) DO UPDATE SET location = EXCLUDED.location,"
        " family = EXCLUDED.family, fim_tokens = EXCLUDED.fim_tokens,"
        " context_length = EXCLUDED.context_length"
        " RETURNING id",
        (
            name,
            location,
            family,
            Jsonb(fim_tokens) if fim_tokens else None,
            context_length,
            licence,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def insert_base_model(conn: psycopg.AsyncConnection[Any], values: dict[str, Any]) -> UUID:
    cur = await conn.execute(
        "INSERT INTO models (name, kind, location, family, fim_tokens, context_length, licence,"
        " architecture, lora_rank)"
        " VALUES (%(name)s, 'base', %(location)s, %(family)s, %(fim_tokens)s,"
        " %(context_length)s, %(licence)s, %(architecture)s, %(lora_rank)s) RETURNING id",
        {**values, "fim_tokens": Jsonb(values["fim_tokens"]) if values["fim_tokens"] else None},
    )
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def insert_adapter(conn: psycopg.AsyncConnection[Any], values: dict[str, Any]) -> UUID:
    cur = await conn.execute(
        "INSERT INTO models (name, kind, base_model_id, tenant_id, location, lora_rank, scores,"
        " lineage) VALUES (%(name)s, 'adapter', %(base_model_id)s, %(tenant_id)s,"
        " %(location)s, %(lora_rank)s, %(scores)s, %(lineage)s) RETURNING id",
        {**values, "scores": Jsonb(values["scores"]), "lineage": Jsonb(values["lineage"])},
    )
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def get(conn: psycopg.AsyncConnection[Any], model_id: UUID) -> CatalogModel | None:
    async with conn.cursor(row_factory=class_row(CatalogModel)) as cur:
        await cur.execute(_SELECT + " WHERE m.id = %s", (model_id,))
        return await cur.fetchone()


async def get_by_name(conn: psycopg.AsyncConnection[Any], name: str) -> CatalogModel | None:
    """The model of that name that the transaction's scope can see."""
    async with conn.cursor(row_factory=class_row(CatalogModel)) as cur:
        await cur.execute(_SELECT + " WHERE m.name = %s", (name,))
        return await cur.fetchone()


async def list_base_models(conn: psycopg.AsyncConnection[Any]) -> list[CatalogModel]:
    async with conn.cursor(row_factory=class_row(CatalogModel)) as cur:
        await cur.execute(_SELECT + " WHERE m.kind = 'base' ORDER BY m.name")
        return await cur.fetchall()


async def list_for_tenant(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID
) -> list[CatalogModel]:
    """The base models granted to the BU, then the BU's own adapters."""
    async with conn.cursor(row_factory=class_row(CatalogModel)) as cur:
        await cur.execute(_SELECT + _GRANTED_OR_OWN, {"tenant": tenant_id})
        return await cur.fetchall()


async def references(conn: psycopg.AsyncConnection[Any], model_id: UUID) -> References:
    cur = await conn.execute(
        "SELECT"
        " (SELECT count(*) FROM model_deployments WHERE model_id = %(id)s),"
        " (SELECT count(*) FROM models WHERE base_model_id = %(id)s),"
        " (SELECT count(*) FROM deployment_adapters WHERE model_id = %(id)s),"
        " (SELECT count(*) FROM model_releases WHERE %(id)s IN"
        "   (stable_model_id, canary_model_id, previous_stable_model_id))",
        {"id": model_id},
    )
    row = await cur.fetchone()
    assert row is not None
    return References(*(int(value) for value in row))


async def delete(conn: psycopg.AsyncConnection[Any], model_id: UUID) -> bool:
    cur = await conn.execute("DELETE FROM models WHERE id = %s", (model_id,))
    return cur.rowcount > 0


async def grant(conn: psycopg.AsyncConnection[Any], model_id: UUID, tenant_id: UUID) -> bool:
    """Grant the model to the BU; False when it already was."""
    cur = await conn.execute(
        "INSERT INTO model_grants (model_id, tenant_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (model_id, tenant_id),
    )
    return cur.rowcount > 0


async def revoke(conn: psycopg.AsyncConnection[Any], model_id: UUID, tenant_id: UUID) -> bool:
    cur = await conn.execute(
        "DELETE FROM model_grants WHERE model_id = %s AND tenant_id = %s", (model_id, tenant_id)
    )
    return cur.rowcount > 0


async def get_grant(
    conn: psycopg.AsyncConnection[Any], model_id: UUID, tenant_id: UUID
) -> Grant | None:
    async with conn.cursor(row_factory=class_row(Grant)) as cur:
        await cur.execute(
            _GRANTS + " WHERE g.model_id = %s AND g.tenant_id = %s", (model_id, tenant_id)
        )
        return await cur.fetchone()


async def list_grants(conn: psycopg.AsyncConnection[Any], model_id: UUID) -> list[Grant]:
    async with conn.cursor(row_factory=class_row(Grant)) as cur:
        await cur.execute(_GRANTS + " WHERE g.model_id = %s ORDER BY t.slug", (model_id,))
        return await cur.fetchall()


async def is_granted(conn: psycopg.AsyncConnection[Any], model_id: UUID, tenant_id: UUID) -> bool:
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM model_grants WHERE model_id = %s AND tenant_id = %s)",
        (model_id, tenant_id),
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def grant_users(
    conn: psycopg.AsyncConnection[Any], model_id: UUID, tenant_id: UUID
) -> tuple[int, int]:
    """(deployments, adapters) of the BU that rely on its grant of the base model."""
    cur = await conn.execute(
        "SELECT"
        " (SELECT count(*) FROM model_deployments WHERE model_id = %(m)s AND tenant_id = %(t)s),"
        " (SELECT count(*) FROM models WHERE base_model_id = %(m)s AND tenant_id = %(t)s)",
        {"m": model_id, "t": tenant_id},
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
