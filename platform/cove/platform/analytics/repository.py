"""SQL for analytics: the rollups (synchronous, for Celery and the bench), the dashboard reads
(asynchronous, for the API) and retention.

How one completion is counted (metric definitions v1, METRICS.md):
- its shown/accepted/rejected/retained events are grouped by `completion_id` and counted once,
  in the hour of its first shown, accepted or rejected event (its *anchor*), with that event's
  user, model version, language, IDE and feature. Summing hours into days therefore never
  counts a re-rendered completion twice;
- an accept implies a view, so a completion accepted without a `completion.shown` still counts
  as shown (the suggestion acceptance rate can never exceed 1);
- lines/chars shown: the largest reported by its shown events, else what the gateway served,
  and never less than what was accepted; lines/chars accepted: the sum over its accept events
  (partial accepts add up), a `full` accept without counts taking the offered size, capped at
  the offered size so a re-sent accept never counts twice;
- the accept kind counted is the largest one seen (full > line > word);
- retention at T: the largest `retained_chars` reported for that window, capped at the chars
  accepted; a `code.retained` event without a `completion_id` counts in its own hour.
`completion.served` events count in their own hour (with their latency); edit events too.
Events of one completion further than `COMPLETION_SPAN` from the rolled hours are not seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import class_row

# Lower edges (ms) of the latency histogram buckets after the first ([0, 10) ms).
LATENCY_BOUNDS_MS: tuple[int, ...] = (
    10,
    20,
    35,
    50,
    75,
    100,
    150,
    200,
    300,
    400,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    4000,
    5000,
    7500,
    10000,
    15000,
    30000,
    60000,
)
HISTOGRAM_SIZE = len(LATENCY_BOUNDS_MS) + 1
COMPLETION_SPAN = timedelta(hours=1)

COUNTERS: tuple[str, ...] = (
    "served",
    "served_lines",
    "served_chars",
    "shown",
    "shown_lines",
    "shown_chars",
    "accepted",
    "accepted_full",
    "accepted_line",
    "accepted_word",
    "accepted_lines",
    "accepted_chars",
    "rejected",
    "edits_proposed",
    "edits_applied",
    "edits_discarded",
    "edit_lines_added",
    "edit_lines_deleted",
    "retained_30s_chars",
    "retained_2m_chars",
    "retained_10m_chars",
    "ttft_ms_sum",
    "total_ms_sum",
)
HISTOGRAMS: tuple[str, ...] = ("ttft_hist", "total_hist")
DIMENSIONS: tuple[str, ...] = ("user_id", "model_version", "language", "ide", "feature")
SEGMENT_DIMENSIONS: tuple[str, ...] = ("model_version", "language", "ide", "feature")
USER_DIMENSIONS: tuple[str, ...] = ("user_id", "model_version")
# Lines added by applied edits per feature: the only per-feature numbers the per-user rows keep.
EDIT_SOURCES: tuple[str, ...] = ("chat", "edit", "agent")
BY_SOURCE: tuple[str, ...] = tuple(f"applied_{source}_lines" for source in EDIT_SOURCES)

HOURLY = "analytics_hourly"
DAILY = "analytics_daily"
SEGMENTS = "analytics_daily_segments"
USERS = "analytics_daily_users"
TABLES: tuple[str, ...] = (HOURLY, DAILY, SEGMENTS, USERS)
DAY_TABLES: tuple[str, ...] = (DAILY, SEGMENTS, USERS)


def _ids(names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _histogram(source: str) -> sql.Composed:
    """One count per latency bucket of the `source` bucket-index column (1-based)."""
    return sql.SQL("ARRAY[{}]::integer[]").format(
        sql.SQL(", ").join(
            sql.SQL("count(*) FILTER (WHERE {} = {})").format(
                sql.Identifier(source), sql.Literal(i)
            )
            for i in range(1, HISTOGRAM_SIZE + 1)
        )
    )


def _histogram_sum(column: str, cast: str = "integer") -> sql.Composed:
    """Element-wise sum of a histogram column (subscripts keep it a plain sum())."""
    return sql.SQL("ARRAY[{}]::{}[]").format(
        sql.SQL(", ").join(
            sql.SQL("coalesce(sum({}[{}]), 0)").format(sql.Identifier(column), sql.Literal(i))
            for i in range(1, HISTOGRAM_SIZE + 1)
        ),
        sql.SQL(cast),
    )


def _sums(names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.SQL("coalesce(sum({0}), 0)::bigint AS {0}").format(sql.Identifier(n)) for n in names
    )


def _by_source(table: str) -> sql.Composed:
    """Lines added by applied edits per source: stored per user row, else summed per feature."""
    if table == USERS:
        return _sums(BY_SOURCE)
    return sql.SQL(", ").join(
        sql.SQL(
            "coalesce(sum(edit_lines_added) FILTER (WHERE feature = {}), 0)::bigint AS {}"
        ).format(sql.Literal(source), sql.Identifier(name))
        for source, name in zip(EDIT_SOURCES, BY_SOURCE, strict=True)
    )


# ---- Rollups (synchronous) ------------------------------------------------------------------

_HOURLY_PARTS = """
WITH ev AS MATERIALIZED (
  SELECT id, event_type, occurred_at, completion_id, data,
         coalesce(user_id, '') AS user_id, coalesce(model_version, '') AS model_version,
         coalesce(language, '') AS language, coalesce(ide, '') AS ide,
         coalesce(feature, '') AS feature
  FROM usage_events
  WHERE tenant_id = %(tenant)s AND occurred_at >= %(lo)s AND occurred_at < %(hi)s
),
anchor AS (
  SELECT DISTINCT ON (completion_id) completion_id, occurred_at AS at,
         user_id, model_version, language, ide, feature
  FROM ev
  WHERE completion_id IS NOT NULL
    AND event_type IN ('completion.shown', 'completion.accepted', 'completion.rejected')
  ORDER BY completion_id, occurred_at, id
),
facts AS (
  SELECT completion_id,
    bool_or(event_type IN ('completion.shown', 'completion.accepted')) AS viewed,
    max((data->>'lines')::bigint) FILTER (WHERE event_type = 'completion.shown') AS shown_lines,
    max((data->>'chars')::bigint) FILTER (WHERE event_type = 'completion.shown') AS shown_chars,
    bool_or(event_type = 'completion.accepted') AS accepted,
    coalesce(bool_or(event_type = 'completion.accepted'
      AND coalesce(data->>'kind', 'full') NOT IN ('line', 'word')), false) AS kind_full,
    coalesce(bool_or(event_type = 'completion.accepted' AND data->>'kind' = 'line'), false)
      AS kind_line,
    coalesce(sum((data->>'lines')::bigint)
      FILTER (WHERE event_type = 'completion.accepted'), 0) AS acc_lines,
    count(*) FILTER (WHERE event_type = 'completion.accepted' AND NOT data ? 'lines'
      AND coalesce(data->>'kind', 'full') NOT IN ('line', 'word')) AS full_without_lines,
    count(*) FILTER (WHERE event_type = 'completion.accepted' AND NOT data ? 'lines'
      AND data->>'kind' = 'line') AS line_without_lines,
    coalesce(sum((data->>'chars')::bigint)
      FILTER (WHERE event_type = 'completion.accepted'), 0) AS acc_chars,
    count(*) FILTER (WHERE event_type = 'completion.accepted' AND NOT data ? 'chars'
      AND coalesce(data->>'kind', 'full') NOT IN ('line', 'word')) AS full_without_chars,
    bool_or(event_type = 'completion.rejected') AS rejected,
    max((data->>'retained_chars')::bigint)
      FILTER (WHERE event_type = 'code.retained' AND data->>'window' = '30s') AS kept_30s,
    max((data->>'retained_chars')::bigint)
      FILTER (WHERE event_type = 'code.retained' AND data->>'window' = '2m') AS kept_2m,
    max((data->>'retained_chars')::bigint)
      FILTER (WHERE event_type = 'code.retained' AND data->>'window' = '10m') AS kept_10m
  FROM ev
  WHERE completion_id IS NOT NULL AND event_type IN
    ('completion.shown', 'completion.accepted', 'completion.rejected', 'code.retained')
  GROUP BY completion_id
),
offered AS (
  SELECT completion_id, max((data->>'lines')::bigint) AS lines,
         max((data->>'chars')::bigint) AS chars
  FROM ev WHERE event_type = 'completion.served' AND completion_id IS NOT NULL
  GROUP BY completion_id
),
completions AS (
  SELECT a.at, a.user_id, a.model_version, a.language, a.ide, a.feature, f.*,
         coalesce(f.shown_lines, o.lines, 0) AS offered_lines,
         coalesce(f.shown_chars, o.chars, 0) AS offered_chars
  FROM anchor a JOIN facts f USING (completion_id) LEFT JOIN offered o USING (completion_id)
  WHERE a.at >= %(start)s AND a.at < %(end)s
),
scored AS (
  SELECT c.*,
    CASE WHEN NOT accepted THEN 0
         WHEN offered_lines > 0 THEN least(acc_lines + full_without_lines * offered_lines
           + line_without_lines, offered_lines)
         ELSE acc_lines + line_without_lines END AS lines_acc,
    CASE WHEN NOT accepted THEN 0
         WHEN offered_chars > 0 THEN least(acc_chars + full_without_chars * offered_chars,
           offered_chars)
         ELSE acc_chars END AS chars_acc
  FROM completions c
),
parts AS (
  SELECT at AS t, user_id, model_version, language, ide, feature,
    0::bigint AS served, 0::bigint AS served_lines, 0::bigint AS served_chars,
    viewed::int AS shown,
    CASE WHEN viewed THEN greatest(offered_lines, lines_acc) ELSE 0 END AS shown_lines,
    CASE WHEN viewed THEN greatest(offered_chars, chars_acc) ELSE 0 END AS shown_chars,
    accepted::int AS accepted,
    (accepted AND kind_full)::int AS accepted_full,
    (accepted AND NOT kind_full AND kind_line)::int AS accepted_line,
    (accepted AND NOT kind_full AND NOT kind_line)::int AS accepted_word,
    lines_acc AS accepted_lines, chars_acc AS accepted_chars,
    (rejected AND NOT accepted)::int AS rejected,
    0 AS edits_proposed, 0 AS edits_applied, 0 AS edits_discarded,
    0::bigint AS edit_lines_added, 0::bigint AS edit_lines_deleted,
    CASE WHEN accepted THEN least(coalesce(kept_30s, 0), chars_acc) ELSE 0 END
      AS retained_30s_chars,
    CASE WHEN accepted THEN least(coalesce(kept_2m, 0), chars_acc) ELSE 0 END
      AS retained_2m_chars,
    CASE WHEN accepted THEN least(coalesce(kept_10m, 0), chars_acc) ELSE 0 END
      AS retained_10m_chars,
    NULL::bigint AS ttft, NULL::bigint AS total
  FROM scored
  UNION ALL
  SELECT occurred_at, user_id, model_version, language, ide, feature,
    1, coalesce((data->>'lines')::bigint, 0), coalesce((data->>'chars')::bigint, 0),
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    -- The gateway records milliseconds with decimals.
    round((data->>'ttft_ms')::numeric)::bigint, round((data->>'total_ms')::numeric)::bigint
  FROM ev
  WHERE event_type = 'completion.served' AND occurred_at >= %(start)s AND occurred_at < %(end)s
  UNION ALL
  SELECT occurred_at, user_id, model_version, language, ide, feature,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    (event_type = 'edit.proposed')::int, (event_type = 'edit.applied')::int,
    (event_type = 'edit.discarded')::int,
    CASE WHEN event_type = 'edit.applied'
      THEN coalesce((data->>'lines_added')::bigint, 0) ELSE 0 END,
    CASE WHEN event_type = 'edit.applied'
      THEN coalesce((data->>'lines_deleted')::bigint, 0) ELSE 0 END,
    0, 0, 0, NULL, NULL
  FROM ev
  WHERE event_type IN ('edit.proposed', 'edit.applied', 'edit.discarded')
    AND occurred_at >= %(start)s AND occurred_at < %(end)s
  UNION ALL
  SELECT occurred_at, user_id, model_version, language, ide, feature,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    CASE WHEN data->>'window' = '30s' THEN coalesce((data->>'retained_chars')::bigint, 0)
      ELSE 0 END,
    CASE WHEN data->>'window' = '2m' THEN coalesce((data->>'retained_chars')::bigint, 0)
      ELSE 0 END,
    CASE WHEN data->>'window' = '10m' THEN coalesce((data->>'retained_chars')::bigint, 0)
      ELSE 0 END,
    NULL, NULL
  FROM ev
  WHERE event_type = 'code.retained' AND completion_id IS NULL
    AND occurred_at >= %(start)s AND occurred_at < %(end)s
),
bucketed AS (
  SELECT p.*, date_trunc('hour', t, 'UTC') AS hour,
         width_bucket(ttft, %(bounds)s::bigint[]) + 1 AS ttft_bucket,
         width_bucket(total, %(bounds)s::bigint[]) + 1 AS total_bucket
  FROM parts p
)
"""


def _hourly_insert() -> sql.Composed:
    return sql.SQL(
        "{parts} INSERT INTO analytics_hourly (tenant_id, hour, {dims}, {counters}, {hists})"
        " SELECT %(tenant)s, hour, {dims}, {sums}, coalesce(sum(ttft), 0), coalesce(sum(total), 0),"
        " {ttft_hist}, {total_hist} FROM bucketed GROUP BY hour, {dims}"
    ).format(
        parts=sql.SQL(_HOURLY_PARTS),
        dims=_ids(DIMENSIONS),
        counters=_ids(COUNTERS),
        hists=_ids(HISTOGRAMS),
        sums=_sums(COUNTERS[:-2]),
        ttft_hist=_histogram("ttft_bucket"),
        total_hist=_histogram("total_bucket"),
    )


def roll_hours(
    conn: psycopg.Connection[Any], tenant_id: UUID, start: datetime, end: datetime
) -> int:
    """Recompute the hourly rows of [start, end) (whole hours) from raw events."""
    conn.execute(
        "DELETE FROM analytics_hourly WHERE tenant_id = %s AND hour >= %s AND hour < %s",
        (tenant_id, start, end),
    )
    cur = conn.execute(
        _hourly_insert(),
        {
            "tenant": tenant_id,
            "start": start,
            "end": end,
            "lo": start - COMPLETION_SPAN,
            "hi": end + COMPLETION_SPAN,
            "bounds": list(LATENCY_BOUNDS_MS),
        },
    )
    return cur.rowcount


def _day_rollup(target: str, source: str, source_time: str, dims: Sequence[str]) -> sql.Composed:
    day = (
        sql.SQL("({} AT TIME ZONE 'UTC')::date").format(sql.Identifier(source_time))
        if source_time == "hour"
        else sql.Identifier(source_time)
    )
    by_source = target == USERS
    return sql.SQL(
        "INSERT INTO {target} (tenant_id, day, {dims}, {counters}, {hists})"
        " SELECT tenant_id, {day}, {dims}, {sums}, {ttft}, {total} FROM {source}"
        " WHERE tenant_id = %(tenant)s AND {time} >= %(lo)s AND {time} < %(hi)s"
        " GROUP BY tenant_id, {day}, {dims}"
    ).format(
        target=sql.Identifier(target),
        source=sql.Identifier(source),
        time=sql.Identifier(source_time),
        day=day,
        dims=_ids(dims),
        counters=_ids((*COUNTERS, *BY_SOURCE) if by_source else COUNTERS),
        hists=_ids(HISTOGRAMS),
        sums=sql.SQL(", ").join([_sums(COUNTERS), _by_source(source)])
        if by_source
        else _sums(COUNTERS),
        ttft=_histogram_sum("ttft_hist"),
        total=_histogram_sum("total_hist"),
    )


def roll_days(conn: psycopg.Connection[Any], tenant_id: UUID, first: date, last: date) -> int:
    """Recompute the daily, segment and per-user rows of UTC days [first, last] from the hourly
    rows."""
    for table in DAY_TABLES:
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND day >= %s AND day <= %s").format(
                sql.Identifier(table)
            ),
            (tenant_id, first, last),
        )
    lo = datetime(first.year, first.month, first.day, tzinfo=UTC)
    hi = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    cur = conn.execute(
        _day_rollup(DAILY, HOURLY, "hour", DIMENSIONS), {"tenant": tenant_id, "lo": lo, "hi": hi}
    )
    rows = cur.rowcount
    for target, dims in ((SEGMENTS, SEGMENT_DIMENSIONS), (USERS, USER_DIMENSIONS)):
        conn.execute(
            _day_rollup(target, DAILY, "day", dims),
            {"tenant": tenant_id, "lo": first, "hi": last + timedelta(days=1)},
        )
    return rows


def lock_tenant(conn: psycopg.Connection[Any], tenant_id: UUID) -> None:
    """Serialise rollups of one BU (two workers re-rolling one bucket would collide)."""
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('cove.analytics:' || %s::text))", (tenant_id,)
    )


def tenant_ids(conn: psycopg.Connection[Any]) -> list[UUID]:
    return [UUID(str(r[0])) for r in conn.execute("SELECT id FROM tenants ORDER BY id")]


def watermark(conn: psycopg.Connection[Any]) -> datetime | None:
    row = conn.execute("SELECT received_before FROM analytics_rollup_state").fetchone()
    return None if row is None else row[0]


def set_watermark(conn: psycopg.Connection[Any], value: datetime) -> None:
    conn.execute(
        "INSERT INTO analytics_rollup_state (singleton, received_before) VALUES (true, %s)"
        " ON CONFLICT (singleton) DO UPDATE SET received_before = excluded.received_before,"
        " updated_at = now()",
        (value,),
    )


def now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def dirty_hours(
    conn: psycopg.Connection[Any], received_since: datetime | None
) -> list[tuple[UUID, datetime]]:
    """The (BU, hour) buckets of events received since `received_since` (all when None)."""
    if received_since is None:
        cur = conn.execute(
            "SELECT DISTINCT tenant_id, date_trunc('hour', occurred_at, 'UTC') FROM usage_events"
        )
    else:
        cur = conn.execute(
            "SELECT DISTINCT tenant_id, date_trunc('hour', occurred_at, 'UTC') FROM usage_events"
            " WHERE received_at >= %s",
            (received_since,),
        )
    return [(UUID(str(t)), h) for t, h in cur.fetchall()]


# ---- Retention -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetentionRow:
    id: UUID
    retention_days: int


def retention_settings(conn: psycopg.Connection[Any]) -> list[RetentionRow]:
    with conn.cursor(row_factory=class_row(RetentionRow)) as cur:
        cur.execute("SELECT id, retention_days FROM tenants ORDER BY id")
        return cur.fetchall()


def purge_tenant(conn: psycopg.Connection[Any], tenant_id: UUID, before: datetime) -> int:
    """Delete the BU's events and rollups older than `before`; returns events deleted."""
    cur = conn.execute(
        "DELETE FROM usage_events WHERE tenant_id = %s AND occurred_at < %s", (tenant_id, before)
    )
    deleted = cur.rowcount
    conn.execute(
        "DELETE FROM analytics_hourly WHERE tenant_id = %s AND hour < %s", (tenant_id, before)
    )
    for table in DAY_TABLES:
        conn.execute(
            sql.SQL(
                "DELETE FROM {} WHERE tenant_id = %s AND day < (%s AT TIME ZONE 'UTC')::date"
            ).format(sql.Identifier(table)),
            (tenant_id, before),
        )
    return deleted


def vacuum_analyze(database_url: str) -> None:
    """VACUUM ANALYZE the rollup tables (the bench's stand-in for autovacuum)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


def drop_partitions_before(conn: psycopg.Connection[Any], day: date) -> int:
    row = conn.execute("SELECT cove_drop_usage_partitions(%s)", (day,)).fetchone()
    return int(row[0]) if row else 0


# ---- Dashboard reads (asynchronous) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filters:
    """Row filters of a metrics query; None means no filter on that dimension."""

    first: date
    last: date
    users: tuple[str, ...] | None = None
    model_version: str | None = None
    language: str | None = None
    ide: str | None = None
    feature: str | None = None

    @property
    def needs_users(self) -> bool:
        return self.users is not None

    @property
    def has_segment_filter(self) -> bool:
        """A filter on a dimension the per-user rows do not keep (language, IDE, feature)."""
        return self.language is not None or self.ide is not None or self.feature is not None


@dataclass(frozen=True, slots=True)
class CounterRow:
    key: Any
    served: int
    served_lines: int
    served_chars: int
    shown: int
    shown_lines: int
    shown_chars: int
    accepted: int
    accepted_full: int
    accepted_line: int
    accepted_word: int
    accepted_lines: int
    accepted_chars: int
    rejected: int
    edits_proposed: int
    edits_applied: int
    edits_discarded: int
    edit_lines_added: int
    edit_lines_deleted: int
    retained_30s_chars: int
    retained_2m_chars: int
    retained_10m_chars: int
    ttft_ms_sum: int
    total_ms_sum: int
    ttft_hist: list[int]
    total_hist: list[int]
    applied_chat_lines: int
    applied_edit_lines: int
    applied_agent_lines: int


@dataclass(frozen=True, slots=True)
class UserCountRow:
    key: Any
    active_users: int
    engaged_users: int


@dataclass(frozen=True, slots=True)
class BreakdownRow:
    """One level of the Copilot export's tree; `level` is GROUPING(section, editor, model,
    language): 15 day, 7 section, 6 section+language, 3 editor, 1 editor+model, 0 all."""

    day: date
    section: str | None
    editor: str | None
    model_version: str | None
    language: str | None
    level: int
    active_users: int
    engaged_users: int
    accepting_users: int
    served: int
    shown: int
    accepted: int
    shown_lines: int
    accepted_lines: int
    edits_applied: int


def _where(filters: Filters) -> tuple[sql.Composable, dict[str, Any]]:
    parts: list[sql.Composable] = [
        sql.SQL("tenant_id = %(tenant)s AND day >= %(first)s AND day <= %(last)s")
    ]
    params: dict[str, Any] = {"first": filters.first, "last": filters.last}
    if filters.users is not None:
        parts.append(sql.SQL("user_id = ANY(%(users)s)"))
        params["users"] = list(filters.users)
    for name in SEGMENT_DIMENSIONS:
        value = getattr(filters, name)
        if value is not None:
            parts.append(sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)))
            params[name] = value
    return sql.SQL(" AND ").join(parts), params


def _per_user_table(filters: Filters, group_by: str | None) -> str:
    """The narrowest rollup that keeps users apart and every dimension the query touches."""
    if filters.has_segment_filter or group_by in ("language", "ide", "feature"):
        return DAILY
    return USERS


def _key(group_by: str | None) -> sql.Composable:
    if group_by is None:
        return sql.SQL("NULL::text")
    return sql.Identifier(group_by)


async def counters(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, filters: Filters, group_by: str | None
) -> list[CounterRow]:
    """Summed counters per group (`group_by` is a column name, checked by the service)."""
    per_user = filters.needs_users or group_by == "user_id"
    table = _per_user_table(filters, group_by) if per_user else SEGMENTS
    where, params = _where(filters)
    key = _key(group_by)
    query = sql.SQL(
        "SELECT {key} AS key, {sums}, {ttft} AS ttft_hist, {total} AS total_hist, {by_source}"
        " FROM {table} WHERE {where} GROUP BY 1 ORDER BY 1"
    ).format(
        key=key,
        sums=_sums(COUNTERS),
        ttft=_histogram_sum("ttft_hist", "bigint"),
        total=_histogram_sum("total_hist", "bigint"),
        by_source=_by_source(table),
        table=sql.Identifier(table),
        where=where,
    )
    async with conn.cursor(row_factory=class_row(CounterRow)) as cur:
        await cur.execute(query, {"tenant": tenant_id, **params})
        return await cur.fetchall()


async def user_counts(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, filters: Filters, group_by: str | None
) -> tuple[list[UserCountRow], UserCountRow]:
    """Active users (any served/shown) and engaged users (any accept/applied edit) per group
    and over the whole period, from one scan of the per-user rows."""
    where, params = _where(filters)
    query = sql.SQL(
        "WITH per_user AS MATERIALIZED ("
        "  SELECT {key} AS key, user_id, bool_or(served > 0 OR shown > 0) AS active,"
        "   bool_or(accepted > 0 OR edits_applied > 0) AS engaged"
        "  FROM {table} WHERE {where} AND user_id <> '' GROUP BY 1, 2)"
        " SELECT false AS total, key, count(*) FILTER (WHERE active)::int AS active_users,"
        "  count(*) FILTER (WHERE engaged)::int AS engaged_users FROM per_user GROUP BY key"
        " UNION ALL"
        " SELECT true, NULL, count(DISTINCT user_id) FILTER (WHERE active)::int,"
        "  count(DISTINCT user_id) FILTER (WHERE engaged)::int FROM per_user"
    ).format(
        key=_key(group_by),
        table=sql.Identifier(_per_user_table(filters, group_by)),
        where=where,
    )
    cur = await conn.execute(query, {"tenant": tenant_id, **params})
    grouped: list[UserCountRow] = []
    total = UserCountRow(key=None, active_users=0, engaged_users=0)
    for is_total, key, active, engaged in await cur.fetchall():
        row = UserCountRow(key=key, active_users=active, engaged_users=engaged)
        if is_total:
            total = row
        else:
            grouped.append(row)
    return grouped, total


async def copilot_breakdown(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, filters: Filters
) -> list[BreakdownRow]:
    """Distinct users and counters per day at every level of the Copilot metrics tree."""
    where, params = _where(filters)
    query = sql.SQL(
        "SELECT day, section, editor, model_version, language,"
        " GROUPING(section, editor, model_version, language) AS level,"
        " count(DISTINCT uid) FILTER (WHERE served > 0 OR shown > 0)::int AS active_users,"
        " count(DISTINCT uid) FILTER (WHERE accepted > 0 OR edits_applied > 0)::int"
        "  AS engaged_users,"
        " count(DISTINCT uid) FILTER (WHERE accepted > 0)::int AS accepting_users,"
        " sum(served)::bigint AS served, sum(shown)::bigint AS shown,"
        " sum(accepted)::bigint AS accepted, sum(shown_lines)::bigint AS shown_lines,"
        " sum(accepted_lines)::bigint AS accepted_lines,"
        " sum(edits_applied)::bigint AS edits_applied"
        " FROM (SELECT d.*, split_part(ide, '/', 1) AS editor, nullif(user_id, '') AS uid,"
        "   CASE WHEN feature IN ('completion', '') THEN 'completion'"
        "        WHEN feature = 'chat' THEN 'chat' ELSE 'other' END AS section"
        "   FROM analytics_daily d WHERE {where}) rows"
        " GROUP BY GROUPING SETS ((day), (day, section), (day, section, language),"
        "  (day, section, editor), (day, section, editor, model_version),"
        "  (day, section, editor, model_version, language))"
        " ORDER BY day, level DESC, section, editor, model_version, language"
    ).format(where=where)
    async with conn.cursor(row_factory=class_row(BreakdownRow)) as cur:
        await cur.execute(query, {"tenant": tenant_id, **params})
        return await cur.fetchall()


async def adapters(conn: psycopg.AsyncConnection[Any]) -> dict[str, date]:
    """The BU's fine-tuned model versions (visible adapters) and the day each was registered."""
    cur = await conn.execute("SELECT name, created_at FROM models WHERE kind = 'adapter'")
    return {name: created.date() for name, created in await cur.fetchall()}


async def bu_slug(conn: psycopg.AsyncConnection[Any], tenant_id: UUID) -> str | None:
    cur = await conn.execute("SELECT slug FROM tenants WHERE id = %s", (tenant_id,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def role_members(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, role: str
) -> tuple[str, ...]:
    """The user ids events record for the BU's members in `role`: the platform's user id and,
    for a caller the platform knows only by token, the OIDC subject."""
    cur = await conn.execute(
        "SELECT u.id::text, u.subject FROM memberships m JOIN users u ON u.id = m.user_id"
        " WHERE m.tenant_id = %s AND m.role = %s ORDER BY 1",
        (tenant_id, role),
    )
    return tuple(value for row in await cur.fetchall() for value in row)


async def bu_exists(conn: psycopg.AsyncConnection[Any], tenant_id: UUID) -> bool:
    cur = await conn.execute("SELECT 1 FROM tenants WHERE id = %s", (tenant_id,))
    return await cur.fetchone() is not None
