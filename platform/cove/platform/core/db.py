"""Postgres access with psycopg 3.

Every query runs inside a scoped transaction:

- `Database.tenant(tenant_id)` sets `cove.tenant_id` for the transaction, so row-level
  security shows only that BU's rows;
- `Database.platform()` sets the platform scope, for platform-admin reads and for the
  gateway's cache loads, which span every BU.

The pool connects with `database_url` and switches to the application role (`SET ROLE`), a
role that owns no table, so the policies apply even when the login is the owner. A deployment
may instead give `app_database_url`, a login of that role.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from cove.platform.core.settings import CoveSettings

PLATFORM_SCOPE = "platform"


def _connect_kwargs(settings: CoveSettings) -> tuple[str, str | None]:
    if settings.app_database_url:
        return settings.app_database_url, None
    return settings.database_url, settings.db_app_role


class Database:
    """An async pool plus the scoping helpers every repository goes through."""

    def __init__(
        self,
        settings: CoveSettings,
        *,
        min_size: int | None = None,
        acquire_timeout: float = 30.0,
    ) -> None:
        url, role = _connect_kwargs(settings)
        self._role = role

        async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
            if self._role:
                await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self._role)))
            await conn.commit()

        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            url,
            min_size=settings.db_pool_min if min_size is None else min_size,
            max_size=settings.db_pool_max,
            configure=configure,
            open=False,
            timeout=acquire_timeout,
            kwargs={"autocommit": False, "connect_timeout": 5},
        )

    async def open(self, *, wait: bool = True, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        await self.pool.open(wait=wait, timeout=timeout)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def tenant(
        self, tenant_id: UUID, *, snapshot: bool = False
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """`snapshot`: a read-only transaction whose every query sees the same moment (an
        export that reads many tables)."""
        async with self.pool.connection() as conn, conn.transaction():
            if snapshot:
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            await conn.execute(
                "SELECT set_config('cove.tenant_id', %s, true), set_config('cove.scope', '', true)",
                (str(tenant_id),),
            )
            yield conn

    @asynccontextmanager
    async def platform(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT set_config('cove.scope', %s, true), set_config('cove.tenant_id', '', true)",
                (PLATFORM_SCOPE,),
            )
            yield conn

    @asynccontextmanager
    async def unscoped(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A transaction with no scope at all: row-level security shows no tenant rows."""
        async with self.pool.connection() as conn, conn.transaction():
            yield conn


class SyncDatabase:
    """The same scoping for synchronous code (Celery tasks, the CLI)."""

    def __init__(self, settings: CoveSettings, *, max_size: int = 4) -> None:
        url, role = _connect_kwargs(settings)
        self._role = role

        def configure(conn: psycopg.Connection[Any]) -> None:
            if self._role:
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self._role)))
            conn.commit()

        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url, min_size=0, max_size=max_size, configure=configure, open=False
        )

    def open(self, timeout: float = 10.0) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def platform(self) -> Iterator[psycopg.Connection[Any]]:
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT set_config('cove.scope', %s, true)", (PLATFORM_SCOPE,))
            yield conn

    @contextmanager
    def tenant(self, tenant_id: UUID) -> Iterator[psycopg.Connection[Any]]:
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT set_config('cove.tenant_id', %s, true)", (str(tenant_id),))
            yield conn


def check_database(url: str, timeout: float = 5.0) -> None:
    """Raise `psycopg.OperationalError` with the server's reason when `url` does not answer."""
    with psycopg.connect(url, connect_timeout=max(1, int(timeout)), row_factory=dict_row) as conn:
        conn.execute("SELECT 1")
