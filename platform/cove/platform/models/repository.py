"""SQL for the model catalog."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb


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
