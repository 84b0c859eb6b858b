"""Rules for analytics: who may read a BU's metrics, filters, the metric definitions (v1),
percentiles, confidence intervals, the Copilot mapping, and the rollup and retention runs."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from pydantic import ValidationError

from cove.platform.analytics import repository
from cove.platform.analytics.repository import CounterRow, Filters, UserCountRow
from cove.platform.analytics.schemas import (
    DEFINITION_VERSION,
    Comparison,
    CopilotChatEditor,
    CopilotChatModel,
    CopilotCompletionEditor,
    CopilotCompletionModel,
    CopilotDay,
    CopilotIdeChat,
    CopilotIdeCodeCompletions,
    CopilotLanguage,
    CopilotModelLanguage,
    Difference,
    Latency,
    LinesApplied,
    MetricDefinition,
    Metrics,
    MetricsGroup,
    MetricsQuery,
    MetricsReport,
    Rate,
    VersionSide,
)
from cove.platform.core.db import Database, SyncDatabase
from cove.platform.core.errors import NotFound, ValidationFailed
from cove.tenants.identity.claims import GROUP_ROOT, ROLE_BY_GROUP
from cove.tenants.principal import Principal, require_bu_visible

DEFAULT_DAYS = 28
MAX_DAYS = 366
DEFAULT_MIN_SHOWN = 100
Z95 = 1.959963984540054
# Events are stamped `received_at` when their transaction starts; one that commits after a
# rollup read must still be seen by the next run, so each run looks back this far.
RECEIVE_MARGIN = timedelta(minutes=10)
COLUMN_BY_GROUP = {
    "day": "day",
    "user": "user_id",
    "model_version": "model_version",
    "language": "language",
    "ide": "ide",
    "feature": "feature",
}
RETENTION_WINDOWS = ("30s", "2m", "10m")
_PARAM = {"date_from": "from", "date_to": "to"}

DEFINITIONS: dict[str, str] = {
    "served": "completion.served events: suggestions the gateway returned",
    "shown": "distinct completion_ids shown (a re-render is not a second view; an accept "
    "implies a view)",
    "accepted": "distinct completion_ids accepted; partial accepts count and are also "
    "reported as accepted_line / accepted_word (largest kind per completion)",
    "acceptance_rate": "distinct accepted completion_ids ÷ distinct shown completion_ids",
    "acceptance_rate_full": "completions accepted in full ÷ distinct shown completion_ids",
    "line_acceptance_rate": "lines accepted ÷ lines shown",
    "lines_applied": "lines added by accepted completions + lines added by applied edits, "
    "split by source (completion / chat / edit / agent)",
    "review_not_applied_rate": "edit.discarded ÷ (edit.applied + edit.discarded)",
    "retention": "accepted chars still present at T (30s, 2m, 10m) ÷ accepted chars",
    "active_users": "users with any served or shown event in the period",
    "engaged_users": "users with any accept or applied edit in the period",
    "latency_ttft_ms": "gateway-measured time to first token per completion: p50/p95 from a "
    "log-spaced histogram, exact mean",
    "latency_total_ms": "gateway-measured total time per completion: p50/p95 from a "
    "log-spaced histogram, exact mean",
}


def _definitions() -> dict[str, MetricDefinition]:
    return {
        name: MetricDefinition(
            id=f"{name}/{DEFINITION_VERSION}", version=DEFINITION_VERSION, definition=text
        )
        for name, text in DEFINITIONS.items()
    }


# ---- Visibility, filters, groups -------------------------------------------------------------


class GroupDirectory(Protocol):
    """Resolves a Keycloak group to the BU's user ids (as recorded on usage events)."""

    async def members(self, tenant_id: UUID, group: str) -> tuple[str, ...] | None: ...


class NoGroupDirectory:
    """Until group membership is recorded from token claims, no group is known."""

    async def members(self, tenant_id: UUID, group: str) -> tuple[str, ...] | None:
        return None


class MembershipGroupDirectory:
    """The BU's role groups as Keycloak names them (`/cove/<slug>/admins`, `developers`,
    `viewers`, or just the last part), resolved from the memberships Cove records. Other
    groups (teams Keycloak knows and Cove does not) are not known."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def members(self, tenant_id: UUID, group: str) -> tuple[str, ...] | None:
        async with self._db.tenant(tenant_id) as conn:
            slug = await repository.bu_slug(conn, tenant_id)
            if slug is None:
                return None
            prefix = f"/{GROUP_ROOT}/{slug}/"
            name = group.removeprefix(prefix) if group.startswith(prefix) else group
            role = ROLE_BY_GROUP.get(name)
            if role is None:
                return None
            return await repository.role_members(conn, tenant_id, role.value)


@dataclass(frozen=True)
class StaticGroupDirectory:
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    async def members(self, tenant_id: UUID, group: str) -> tuple[str, ...] | None:
        return self.groups.get(group)


def parse_query(raw: Mapping[str, Any]) -> MetricsQuery:
    """Validate query parameters; every malformed filter is a 422 `invalid_filter`."""
    try:
        return MetricsQuery.model_validate({k: v for k, v in raw.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(_PARAM.get(str(p), str(p)) for p in first["loc"]) or "query"
        raise ValidationFailed(
            f"{where}: {first['msg']}",
            code="invalid_filter",
            param=where,
            details={
                "errors": [
                    {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
                    for e in exc.errors()
                ]
            },
        ) from exc


def _invalid(message: str, param: str) -> ValidationFailed:
    return ValidationFailed(message, code="invalid_filter", param=param)


def parse_min_shown(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_MIN_SHOWN
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 10_000_000:
        raise _invalid("'min_shown' must be an integer from 1 to 10000000", "min_shown")
    return value


def _period(query: MetricsQuery, today: date | None = None) -> tuple[date, date]:
    last = query.date_to or (today or datetime.now(UTC).date())
    first = query.date_from or (last - timedelta(days=DEFAULT_DAYS - 1))
    if first > last:
        raise _invalid("'from' must not be after 'to'", "from")
    if (last - first).days + 1 > MAX_DAYS:
        raise _invalid(f"'from'..'to' may span at most {MAX_DAYS} days", "from")
    return first, last


async def _filters(
    query: MetricsQuery, tenant_id: UUID, directory: GroupDirectory, model_version: str | None
) -> Filters:
    first, last = _period(query)
    users: tuple[str, ...] | None = (query.user,) if query.user else None
    if query.group is not None:
        members = await directory.members(tenant_id, query.group)
        if members is None:
            raise ValidationFailed(
                f"No membership is known for group '{query.group}'",
                code="unknown_group",
                param="group",
            )
        users = tuple(m for m in members if users is None or m in users)
    return Filters(
        first=first,
        last=last,
        users=users,
        model_version=model_version,
        language=query.language,
        ide=query.ide,
        feature=query.feature,
    )


def _filter_view(query: MetricsQuery) -> dict[str, str | None]:
    return {
        "user": query.user,
        "group": query.group,
        "model_version": query.model_version,
        "language": query.language,
        "ide": query.ide,
        "feature": query.feature,
    }


# ---- Metric arithmetic -----------------------------------------------------------------------


def rate(numerator: int, denominator: int) -> Rate:
    return Rate(
        value=numerator / denominator if denominator else None,
        numerator=numerator,
        denominator=denominator,
    )


def percentile(histogram: list[int], q: float) -> float | None:
    """The q-quantile of a latency histogram, interpolated linearly inside its bucket."""
    total = sum(histogram)
    if total == 0:
        return None
    bounds = repository.LATENCY_BOUNDS_MS
    rank = q * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            lower = 0 if index == 0 else bounds[index - 1]
            if index >= len(bounds):
                return float(lower)
            upper = bounds[index]
            return lower + (upper - lower) * max(0.0, rank - seen) / count
        seen += count
    return float(bounds[-1])


def _latency(histogram: list[int], total_ms: int) -> Latency:
    count = sum(histogram)
    return Latency(
        count=count,
        p50=percentile(histogram, 0.5),
        p95=percentile(histogram, 0.95),
        mean=total_ms / count if count else None,
    )


_INT_FIELDS = [
    f.name for f in fields(CounterRow) if f.name not in ("key", "ttft_hist", "total_hist")
]


def _sum_rows(rows: Iterable[CounterRow]) -> CounterRow:
    totals: dict[str, Any] = dict.fromkeys(_INT_FIELDS, 0)
    ttft = [0] * repository.HISTOGRAM_SIZE
    total = [0] * repository.HISTOGRAM_SIZE
    for row in rows:
        for name in _INT_FIELDS:
            totals[name] += getattr(row, name)
        ttft = [a + b for a, b in zip(ttft, row.ttft_hist, strict=True)]
        total = [a + b for a, b in zip(total, row.total_hist, strict=True)]
    return CounterRow(key=None, ttft_hist=ttft, total_hist=total, **totals)


def _metrics(row: CounterRow, users: UserCountRow | None) -> Metrics:
    applied_by_source = row.applied_chat_lines + row.applied_edit_lines + row.applied_agent_lines
    return Metrics(
        served=row.served,
        shown=row.shown,
        accepted=row.accepted,
        accepted_full=row.accepted_full,
        accepted_partial=row.accepted_line + row.accepted_word,
        accepted_line=row.accepted_line,
        accepted_word=row.accepted_word,
        rejected=row.rejected,
        acceptance_rate=rate(row.accepted, row.shown),
        acceptance_rate_full=rate(row.accepted_full, row.shown),
        lines_shown=row.shown_lines,
        lines_accepted=row.accepted_lines,
        line_acceptance_rate=rate(row.accepted_lines, row.shown_lines),
        chars_accepted=row.accepted_chars,
        lines_applied=LinesApplied(
            total=row.accepted_lines + row.edit_lines_added,
            completion=row.accepted_lines,
            chat=row.applied_chat_lines,
            edit=row.applied_edit_lines,
            agent=row.applied_agent_lines,
            other=row.edit_lines_added - applied_by_source,
        ),
        edits_proposed=row.edits_proposed,
        edits_applied=row.edits_applied,
        edits_discarded=row.edits_discarded,
        review_not_applied_rate=rate(row.edits_discarded, row.edits_applied + row.edits_discarded),
        retention={
            "30s": rate(row.retained_30s_chars, row.accepted_chars),
            "2m": rate(row.retained_2m_chars, row.accepted_chars),
            "10m": rate(row.retained_10m_chars, row.accepted_chars),
        },
        active_users=users.active_users if users else 0,
        engaged_users=users.engaged_users if users else 0,
        latency_ttft_ms=_latency(row.ttft_hist, row.ttft_ms_sum),
        latency_total_ms=_latency(row.total_hist, row.total_ms_sum),
    )


def _key_text(key: Any) -> str | None:
    if key is None or key == "":
        return None
    if isinstance(key, date):
        return key.isoformat()
    return str(key)


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion."""
    if trials <= 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(
    x1: int, n1: int, x2: int, n2: int, z: float = Z95
) -> tuple[float, tuple[float, float]] | None:
    """Difference p1 - p2 with Newcombe's hybrid score interval (method 10, Wilson-based)."""
    first, second = wilson(x1, n1, z), wilson(x2, n2, z)
    if first is None or second is None:
        return None
    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = first, second
    delta = p1 - p2
    lower = delta - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = delta + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return delta, (lower, upper)


# ---- Reads -----------------------------------------------------------------------------------


async def _read(
    db: Database, tenant_id: UUID, filters: Filters, group_by: str | None
) -> tuple[list[CounterRow], list[UserCountRow], UserCountRow]:
    async with db.tenant(tenant_id) as conn:
        if not await repository.bu_exists(conn, tenant_id):
            raise NotFound("No such business unit", code="bu_not_found")
        rows = await repository.counters(conn, tenant_id, filters, group_by)
        grouped_users, total_users = await repository.user_counts(
            conn, tenant_id, filters, group_by
        )
    return rows, grouped_users, total_users


async def metrics(
    db: Database,
    principal: Principal,
    tenant_id: UUID,
    query: MetricsQuery,
    directory: GroupDirectory | None = None,
) -> MetricsReport:
    """Every metric of METRICS.md v1 over the filters, in total and per group."""
    require_bu_visible(principal, tenant_id)
    filters = await _filters(query, tenant_id, directory or NoGroupDirectory(), query.model_version)
    column = COLUMN_BY_GROUP[query.group_by] if query.group_by else None
    rows, grouped_users, total_users = await _read(db, tenant_id, filters, column)
    users_by_key = {u.key: u for u in grouped_users}
    groups = [
        MetricsGroup(key=_key_text(row.key), metrics=_metrics(row, users_by_key.get(row.key)))
        for row in rows
        if column is not None
    ]
    return MetricsReport(
        bu_id=tenant_id,
        date_from=filters.first,
        date_to=filters.last,
        group_by=query.group_by,
        filters=_filter_view(query),
        totals=_metrics(_sum_rows(rows), total_users),
        groups=groups,
        definitions=_definitions(),
    )


async def compare(
    db: Database,
    principal: Principal,
    tenant_id: UUID,
    a: str,
    b: str,
    query: MetricsQuery,
    min_shown: int = DEFAULT_MIN_SHOWN,
    directory: GroupDirectory | None = None,
) -> Comparison:
    """Two model versions over the same period and population: counts, rates, Wilson
    intervals, and Newcombe's interval for the acceptance-rate difference (b - a)."""
    require_bu_visible(principal, tenant_id)
    if not a or not b or len(a) > 200 or len(b) > 200:
        raise _invalid("'a' and 'b' must name model versions", "a")
    sides: list[VersionSide] = []
    for version in (a, b):
        filters = await _filters(query, tenant_id, directory or NoGroupDirectory(), version)
        rows, _, users = await _read(db, tenant_id, filters, None)
        m = _metrics(_sum_rows(rows), users)
        sides.append(
            VersionSide(
                model_version=version,
                shown=m.shown,
                accepted=m.accepted,
                acceptance_rate=m.acceptance_rate.value,
                acceptance_rate_ci95=wilson(m.accepted, m.shown),
                lines_shown=m.lines_shown,
                lines_accepted=m.lines_accepted,
                line_acceptance_rate=m.line_acceptance_rate.value,
                metrics=m,
            )
        )
    side_a, side_b = sides
    enough = side_a.shown >= min_shown and side_b.shown >= min_shown
    diff = newcombe(side_b.accepted, side_b.shown, side_a.accepted, side_a.shown)
    first, last = _period(query)
    return Comparison(
        bu_id=tenant_id,
        date_from=first,
        date_to=last,
        filters=_filter_view(query),
        status="ok" if enough else "insufficient_data",
        min_shown=min_shown,
        a=side_a,
        b=side_b,
        difference=Difference(
            value=diff[0] if diff else None,
            ci95=diff[1] if diff else None,
            significant=(diff[1][0] > 0 or diff[1][1] < 0) if diff and enough else None,
        ),
    )


CSV_COLUMNS = (
    "definition_version",
    "group_by",
    "key",
    "served",
    "shown",
    "accepted",
    "accepted_full",
    "accepted_partial",
    "accepted_line",
    "accepted_word",
    "rejected",
    "acceptance_rate",
    "acceptance_rate_full",
    "lines_shown",
    "lines_accepted",
    "line_acceptance_rate",
    "chars_accepted",
    "lines_applied_total",
    "lines_applied_completion",
    "lines_applied_chat",
    "lines_applied_edit",
    "lines_applied_agent",
    "lines_applied_other",
    "edits_proposed",
    "edits_applied",
    "edits_discarded",
    "review_not_applied_rate",
    "retention_30s",
    "retention_2m",
    "retention_10m",
    "active_users",
    "engaged_users",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "ttft_mean_ms",
    "total_p50_ms",
    "total_p95_ms",
    "total_mean_ms",
)


def _csv_row(group_by: str, key: str | None, m: Metrics) -> list[Any]:
    def num(value: float | None) -> str:
        return "" if value is None else f"{value:.6g}"

    applied = m.lines_applied
    return [
        DEFINITION_VERSION,
        group_by,
        key or "",
        m.served,
        m.shown,
        m.accepted,
        m.accepted_full,
        m.accepted_partial,
        m.accepted_line,
        m.accepted_word,
        m.rejected,
        num(m.acceptance_rate.value),
        num(m.acceptance_rate_full.value),
        m.lines_shown,
        m.lines_accepted,
        num(m.line_acceptance_rate.value),
        m.chars_accepted,
        applied.total,
        applied.completion,
        applied.chat,
        applied.edit,
        applied.agent,
        applied.other,
        m.edits_proposed,
        m.edits_applied,
        m.edits_discarded,
        num(m.review_not_applied_rate.value),
        *(num(m.retention[w].value) for w in RETENTION_WINDOWS),
        m.active_users,
        m.engaged_users,
        num(m.latency_ttft_ms.p50),
        num(m.latency_ttft_ms.p95),
        num(m.latency_ttft_ms.mean),
        num(m.latency_total_ms.p50),
        num(m.latency_total_ms.p95),
        num(m.latency_total_ms.mean),
    ]


def to_csv(report: MetricsReport) -> str:
    """One row per group (a `total` row last); column names as in `CSV_COLUMNS`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    group_by = report.group_by or "total"
    for group in report.groups:
        writer.writerow(_csv_row(group_by, group.key, group.metrics))
    writer.writerow(_csv_row("total", None, report.totals))
    return out.getvalue()


async def csv_export(
    db: Database,
    principal: Principal,
    tenant_id: UUID,
    query: MetricsQuery,
    directory: GroupDirectory | None = None,
) -> str:
    if query.group_by is None:
        query = query.model_copy(update={"group_by": "day"})
    return to_csv(await metrics(db, principal, tenant_id, query, directory))


# ---- Copilot-compatible export -----------------------------------------------------------------


def _name(value: str | None, unknown: str) -> str:
    return value if value else unknown


async def copilot(
    db: Database,
    principal: Principal,
    tenant_id: UUID,
    query: MetricsQuery,
    directory: GroupDirectory | None = None,
) -> list[CopilotDay]:
    """Daily metrics in the shape of GitHub Copilot's metrics API (see docs/analytics.md)."""
    require_bu_visible(principal, tenant_id)
    filters = await _filters(query, tenant_id, directory or NoGroupDirectory(), query.model_version)
    async with db.tenant(tenant_id) as conn:
        if not await repository.bu_exists(conn, tenant_id):
            raise NotFound("No such business unit", code="bu_not_found")
        rows = await repository.copilot_breakdown(conn, tenant_id, filters)
        custom = await repository.adapters(conn)
    by_day: dict[date, list[repository.BreakdownRow]] = defaultdict(list)
    for row in rows:
        by_day[row.day].append(row)
    return [_copilot_day(day, day_rows, custom) for day, day_rows in sorted(by_day.items())]


def _model(version: str | None, custom: Mapping[str, date]) -> tuple[str, bool, date | None]:
    if not version:
        return "default", False, None
    return version, version in custom, custom.get(version)


def _copilot_day(
    day: date, rows: list[repository.BreakdownRow], custom: Mapping[str, date]
) -> CopilotDay:
    top = next(r for r in rows if r.level == 15)
    completions: CopilotIdeCodeCompletions | None = None
    chat: CopilotIdeChat | None = None
    section = [r for r in rows if r.section == "completion"]
    if section:
        head = next(r for r in section if r.level == 7)
        editors = []
        for editor in (r for r in section if r.level == 3):
            models = []
            for model in (r for r in section if r.level == 1 and r.editor == editor.editor):
                name, is_custom, trained = _model(model.model_version, custom)
                languages = [
                    CopilotModelLanguage(
                        name=_name(r.language, "unknown"),
                        total_engaged_users=r.accepting_users,
                        total_code_suggestions=r.shown,
                        total_code_acceptances=r.accepted,
                        total_code_lines_suggested=r.shown_lines,
                        total_code_lines_accepted=r.accepted_lines,
                    )
                    for r in section
                    if r.level == 0
                    and r.editor == editor.editor
                    and r.model_version == model.model_version
                ]
                models.append(
                    CopilotCompletionModel(
                        name=name,
                        is_custom_model=is_custom,
                        custom_model_training_date=trained,
                        total_engaged_users=model.accepting_users,
                        languages=languages,
                    )
                )
            editors.append(
                CopilotCompletionEditor(
                    name=_name(editor.editor, "unknown"),
                    total_engaged_users=editor.accepting_users,
                    models=models,
                )
            )
        completions = CopilotIdeCodeCompletions(
            total_engaged_users=head.accepting_users,
            languages=[
                CopilotLanguage(
                    name=_name(r.language, "unknown"), total_engaged_users=r.accepting_users
                )
                for r in section
                if r.level == 6
            ],
            editors=editors,
        )
    chat_rows = [r for r in rows if r.section == "chat"]
    if chat_rows:
        head = next(r for r in chat_rows if r.level == 7)
        chat_editors = []
        for editor in (r for r in chat_rows if r.level == 3):
            chat_models = []
            for model in (r for r in chat_rows if r.level == 1 and r.editor == editor.editor):
                name, is_custom, trained = _model(model.model_version, custom)
                chat_models.append(
                    CopilotChatModel(
                        name=name,
                        is_custom_model=is_custom,
                        custom_model_training_date=trained,
                        total_engaged_users=model.active_users,
                        total_chats=model.served,
                        total_chat_insertion_events=model.edits_applied,
                        total_chat_copy_events=0,
                    )
                )
            chat_editors.append(
                CopilotChatEditor(
                    name=_name(editor.editor, "unknown"),
                    total_engaged_users=editor.active_users,
                    models=chat_models,
                )
            )
        chat = CopilotIdeChat(total_engaged_users=head.active_users, editors=chat_editors)
    return CopilotDay(
        date=day,
        total_active_users=top.active_users,
        total_engaged_users=top.engaged_users,
        copilot_ide_code_completions=completions,
        copilot_ide_chat=chat,
    )


# ---- Rollups and retention (Celery, the bench) -----------------------------------------------


@dataclass
class RollupResult:
    tenants: int = 0
    hours: int = 0
    rows: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"tenants": self.tenants, "hours": self.hours, "rows": self.rows}


def _floor_hour(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    return value.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(value: datetime) -> datetime:
    floor = _floor_hour(value)
    return floor if floor == value.astimezone(UTC) else floor + timedelta(hours=1)


def _day_start(value: datetime) -> datetime:
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def roll_tenant_range(db: SyncDatabase, tenant_id: UUID, start: datetime, end: datetime) -> int:
    """Recompute the BU's hours in [start, end) and the days they touch: one transaction per
    UTC day, so a reader sees each day either before or after, never half-rolled."""
    start, end = _floor_hour(start), _ceil_hour(end)
    rows = 0
    cursor = start
    while cursor < end:
        chunk_end = min(_day_start(cursor) + timedelta(days=1), end)
        with db.tenant(tenant_id) as conn:
            repository.lock_tenant(conn, tenant_id)
            repository.roll_hours(conn, tenant_id, cursor, chunk_end)
            day = cursor.date()
            rows += repository.roll_days(conn, tenant_id, day, day)
        cursor = chunk_end
    return rows


def rollup_range(
    db: SyncDatabase, start: datetime, end: datetime, tenant_id: UUID | None = None
) -> RollupResult:
    """Re-run the rollup for a period (every BU, or one): idempotent, safe to repeat."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end need a time zone")
    if end <= start:
        raise ValueError("end must be after start")
    if tenant_id is None:
        with db.platform() as conn:
            tenants = repository.tenant_ids(conn)
    else:
        tenants = [tenant_id]
    result = RollupResult(tenants=len(tenants))
    result.hours = int((_ceil_hour(end) - _floor_hour(start)) / timedelta(hours=1))
    for tenant in tenants:
        result.rows += roll_tenant_range(db, tenant, start, end)
    return result


def _ranges(hours: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """Contiguous [start, end) ranges covering the given hours."""
    ranges: list[tuple[datetime, datetime]] = []
    for hour in sorted(set(hours)):
        if ranges and ranges[-1][1] >= hour:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], hour + timedelta(hours=1)))
        else:
            ranges.append((hour, hour + timedelta(hours=1)))
    return ranges


def rollup_recent(db: SyncDatabase) -> RollupResult:
    """Re-roll every bucket that events received since the last run touched (late and
    out-of-order events included), then move the watermark."""
    with db.platform() as conn:
        started = repository.now(conn)
        mark = repository.watermark(conn)
        dirty = repository.dirty_hours(conn, None if mark is None else mark - RECEIVE_MARGIN)
    span = repository.COMPLETION_SPAN
    per_tenant: dict[UUID, set[datetime]] = defaultdict(set)
    for tenant, hour in dirty:
        # A late event can move a completion's anchor an hour either way.
        per_tenant[tenant].update({hour - span, hour, hour + span})
    result = RollupResult(tenants=len(per_tenant))
    for tenant, hours in per_tenant.items():
        result.hours += len(hours)
        for start, end in _ranges(hours):
            result.rows += roll_tenant_range(db, tenant, start, end)
    with db.platform() as conn:
        repository.set_watermark(conn, started)
    return result


def purge(
    db: SyncDatabase, tenant_id: UUID | None = None, now: datetime | None = None
) -> dict[str, int]:
    """Delete each BU's events and rollups older than its `retention_days` (whole UTC days);
    for a run over every BU, also drop daily partitions no BU keeps."""
    today = _day_start((now or datetime.now(UTC)).astimezone(UTC))
    with db.platform() as conn:
        settings = [
            s for s in repository.retention_settings(conn) if tenant_id is None or s.id == tenant_id
        ]
    deleted = 0
    for setting in settings:
        before = today - timedelta(days=setting.retention_days)
        with db.tenant(setting.id) as conn:
            deleted += repository.purge_tenant(conn, setting.id, before)
    dropped = 0
    if tenant_id is None and settings:
        oldest_kept = today - timedelta(days=max(s.retention_days for s in settings))
        with db.platform() as conn:
            dropped = repository.drop_partitions_before(
                conn, (oldest_kept - timedelta(days=1)).date()
            )
    return {"tenants": len(settings), "events_deleted": deleted, "partitions_dropped": dropped}
