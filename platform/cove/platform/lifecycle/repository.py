"""SQL of the BU lifecycle: which tables a BU owns (read from the catalog, so a new
tenant-owned table is exported and purged without a change here), the export's reads and the
purge's writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import class_row, dict_row

# Every table with a `tenant_id` column in the application's schema; partitions are reached
# through their parent.
_TENANT_TABLES = """
    SELECT c.relname
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE a.attname = 'tenant_id' AND NOT a.attisdropped
      AND n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
    ORDER BY c.relname
"""

_COLUMNS = """
    SELECT a.attname
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = %s AND n.nspname = current_schema() AND a.attnum > 0
      AND NOT a.attisdropped
    ORDER BY a.attnum
"""

_MEMBERS = """
    SELECT u.username, u.email, u.display_name, m.role, m.created_at
    FROM memberships m JOIN users u ON u.id = m.user_id
    WHERE m.tenant_id = %s ORDER BY u.username
"""


async def tenant_tables(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    cur = await conn.execute(_TENANT_TABLES)
    return [row[0] for row in await cur.fetchall()]


async def columns(conn: psycopg.AsyncConnection[Any], table: str) -> list[str]:
    cur = await conn.execute(_COLUMNS, (table,))
    return [row[0] for row in await cur.fetchall()]


async def rows_of(
    conn: psycopg.AsyncConnection[Any], table: str, names: list[str], tenant_id: UUID
) -> AsyncIterator[dict[str, Any]]:
    """The BU's rows of one table, streamed through a server-side cursor."""
    query = sql.SQL("SELECT {cols} FROM {table} WHERE tenant_id = %s").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, names)), table=sql.Identifier(table)
    )
    async with conn.cursor(name=f"export_{table}", row_factory=dict_row) as cur:
        cur.itersize = 2000
        await cur.execute(query, (tenant_id,))
        async for row in cur:
            yield row


async def members(conn: psycopg.AsyncConnection[Any], tenant_id: UUID) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_MEMBERS, (tenant_id,))
        return await cur.fetchall()


# ---- worker side (sync) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Doomed:
    """A BU being deleted, as the purge sees it."""

    id: UUID
    slug: str
    name: str
    status: str
    purge_after: datetime | None
    deletion_requested_by: str | None


@dataclass(frozen=True, slots=True)
class StillRunning:
    """What of the BU is still running; the purge waits until nothing is."""

    deployments: list[UUID]
    jobs: int

    @property
    def idle(self) -> bool:
        return not self.deployments and self.jobs == 0


def due(conn: psycopg.Connection[Any]) -> list[UUID]:
    cur = conn.execute(
        "SELECT id FROM tenants WHERE status = 'deleting' AND purge_after <= now()"
        " ORDER BY purge_after"
    )
    return [row[0] for row in cur.fetchall()]


def lock_doomed(conn: psycopg.Connection[Any], tenant_id: UUID) -> Doomed | None:
    with conn.cursor(row_factory=class_row(Doomed)) as cur:
        cur.execute(
            "SELECT id, slug, name, status, purge_after, deletion_requested_by FROM tenants"
            " WHERE id = %s FOR UPDATE",
            (tenant_id,),
        )
        return cur.fetchone()


def stop_running(conn: psycopg.Connection[Any], tenant_id: UUID, actor: str) -> StillRunning:
    """Ask for everything of the BU that runs to stop: its instances are to be deleted, its
    adapters unloaded from instances it shares, its fine-tuning jobs cancelled."""
    conn.execute(
        "UPDATE model_deployments SET desired_state = 'deleted', generation = generation + 1,"
        " updated_at = now() WHERE tenant_id = %s AND desired_state = 'running'",
        (tenant_id,),
    )
    conn.execute(
        "UPDATE deployment_adapters SET state = 'unloading',"
        " detail = 'the business unit is being deleted', updated_at = now()"
        " WHERE tenant_id = %s AND state <> 'unloading'",
        (tenant_id,),
    )
    conn.execute(
        "UPDATE finetune_jobs SET status = 'cancelled', finished_at = now(), updated_at = now(),"
        " reason = jsonb_build_object('code', 'cancelled', 'message', %s::text)"
        " WHERE tenant_id = %s AND status = 'queued' AND worker_ref IS NULL",
        (f"cancelled: the business unit is being deleted by {actor}", tenant_id),
    )
    conn.execute(
        "UPDATE finetune_jobs SET cancel_requested = true, updated_at = now()"
        " WHERE tenant_id = %s AND status NOT IN ('succeeded', 'failed', 'cancelled')",
        (tenant_id,),
    )
    cur = conn.execute(
        "SELECT id FROM model_deployments WHERE tenant_id = %(t)s"
        " UNION SELECT deployment_id FROM deployment_adapters WHERE tenant_id = %(t)s",
        {"t": tenant_id},
    )
    deployments = [row[0] for row in cur.fetchall()]
    cur = conn.execute(
        "SELECT count(*) FROM finetune_jobs"
        " WHERE tenant_id = %s AND status NOT IN ('succeeded', 'failed', 'cancelled')",
        (tenant_id,),
    )
    row = cur.fetchone()
    return StillRunning(deployments, int(row[0]) if row else 0)


def tenant_tables_sync(conn: psycopg.Connection[Any]) -> list[str]:
    return [row[0] for row in conn.execute(_TENANT_TABLES).fetchall()]


def local_adapter_locations(conn: psycopg.Connection[Any], tenant_id: UUID) -> list[str]:
    cur = conn.execute(
        "SELECT location FROM models WHERE tenant_id = %s AND location LIKE '/%%'"
        " ORDER BY location",
        (tenant_id,),
    )
    return [row[0] for row in cur.fetchall()]


def member_ids(conn: psycopg.Connection[Any], tenant_id: UUID) -> list[UUID]:
    cur = conn.execute("SELECT user_id FROM memberships WHERE tenant_id = %s", (tenant_id,))
    return [row[0] for row in cur.fetchall()]


def delete_rows(conn: psycopg.Connection[Any], table: str, tenant_id: UUID) -> int:
    """Through the migration's guarded function: only a BU due for purge, never the audit log."""
    cur = conn.execute(
        "SELECT cove_purge_tenant_rows(%s::regclass, %s)",
        (sql.Identifier(table).as_string(conn), tenant_id),
    )
    row = cur.fetchone()
    return int(row[0]) if row else 0


def count_rows(conn: psycopg.Connection[Any], table: str, tenant_id: UUID) -> int:
    cur = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = %s").format(sql.Identifier(table)),
        (tenant_id,),
    )
    row = cur.fetchone()
    return int(row[0]) if row else 0


def delete_tenant(conn: psycopg.Connection[Any], tenant_id: UUID) -> int:
    return conn.execute("DELETE FROM tenants WHERE id = %s", (tenant_id,)).rowcount


def delete_orphan_users(conn: psycopg.Connection[Any], user_ids: list[UUID]) -> int:
    """Users who belonged to the BU and now belong to none (platform admins stay)."""
    if not user_ids:
        return 0
    cur = conn.execute(
        "DELETE FROM users u WHERE u.id = ANY(%s) AND NOT u.is_platform_admin"
        " AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = u.id)"
        " AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.user_id = u.id)",
        (user_ids,),
    )
    return cur.rowcount
