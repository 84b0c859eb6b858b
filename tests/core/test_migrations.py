"""One migration history: upgrade from empty, down and up again, data survives upgrades."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from cove.platform.core import migrate


@pytest.fixture
def empty_database(pg_admin_url: str) -> Iterator[str]:
    name = f"cove_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield urlunsplit(urlsplit(pg_admin_url)._replace(path=f"/{name}"))
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename NOT LIKE 'usage_events_%'"
        ).fetchall()
    return {r[0] for r in rows}


def test_upgrade_from_empty_reaches_head_with_every_table(empty_database: str) -> None:
    assert migrate.current_revision(empty_database) is None
    migrate.upgrade(empty_database)
    assert migrate.current_revision(empty_database) == migrate.head_revision()
    assert {
        "tenants",
        "users",
        "memberships",
        "api_keys",
        "models",
        "model_deployments",
        "usage_events",
        "audit_log",
        "alembic_version",
    } <= _tables(empty_database)


def test_upgrade_is_idempotent_and_downgrade_returns_to_empty(empty_database: str) -> None:
    migrate.upgrade(empty_database)
    migrate.upgrade(empty_database)
    migrate.downgrade(empty_database, "base")
    assert _tables(empty_database) == {"alembic_version"}
    migrate.upgrade(empty_database)
    assert migrate.current_revision(empty_database) == migrate.head_revision()


def test_rows_written_at_the_first_revision_survive_every_later_migration(
    empty_database: str,
) -> None:
    # The pattern for data migrations: write at an old revision, upgrade, read at head.
    migrate.upgrade(empty_database, "0001")
    with psycopg.connect(empty_database) as conn:
        conn.execute(
            "INSERT INTO tenants (slug, name, gpu_quota) VALUES ('payments', 'Payments', 4)"
        )
    migrate.upgrade(empty_database)
    with psycopg.connect(empty_database) as conn:
        conn.execute("SELECT set_config('cove.scope', 'platform', false)")
        row = conn.execute("SELECT name, gpu_quota FROM tenants WHERE slug = 'payments'").fetchone()
    assert row == ("Payments", 4)


def test_usage_events_are_partitioned_by_day_and_partitions_can_be_added(
    empty_database: str,
) -> None:
    migrate.upgrade(empty_database)
    with psycopg.connect(empty_database) as conn:
        created = conn.execute(
            "SELECT cove_ensure_usage_partitions(current_date + 40, current_date + 42)"
        ).fetchone()
        again = conn.execute(
            "SELECT cove_ensure_usage_partitions(current_date + 40, current_date + 42)"
        ).fetchone()
        kind = conn.execute(
            "SELECT relkind FROM pg_class WHERE relname = 'usage_events'"
        ).fetchone()
    assert created == (3,)
    assert again == (0,)
    assert kind == ("p",)
