"""HTTP endpoints for a business unit's usage metrics (definitions v1, METRICS.md)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from cove.platform.analytics import service
from cove.platform.analytics.schemas import Comparison, CopilotDay, MetricsQuery, MetricsReport
from cove.tenants.http import AdminReader, Db

router = APIRouter(prefix="/api/v1/bus/{bu_id}", tags=["analytics"])


def get_group_directory(request: Request, db: Db) -> service.GroupDirectory:
    """The composition root may put a `group_directory` on `app.state`; by default the BU's
    role groups resolve from its memberships."""
    directory: service.GroupDirectory | None = getattr(request.app.state, "group_directory", None)
    return directory or service.MembershipGroupDirectory(db)


Groups = Annotated[service.GroupDirectory, Depends(get_group_directory)]


def metrics_query(
    date_from: Annotated[
        str | None, Query(alias="from", description="First UTC day (YYYY-MM-DD), inclusive")
    ] = None,
    date_to: Annotated[
        str | None, Query(alias="to", description="Last UTC day (YYYY-MM-DD), inclusive")
    ] = None,
    user: Annotated[str | None, Query(description="A user id as recorded on events")] = None,
    group: Annotated[
        str | None, Query(description="A Keycloak group; its members' events only")
    ] = None,
    model_version: Annotated[str | None, Query()] = None,
    language: Annotated[str | None, Query()] = None,
    ide: Annotated[str | None, Query()] = None,
    feature: Annotated[str | None, Query(description="completion, chat, edit or agent")] = None,
    group_by: Annotated[
        str | None, Query(description="day, user, model_version, language, ide or feature")
    ] = None,
) -> MetricsQuery:
    raw: dict[str, Any] = {
        "date_from": date_from,
        "date_to": date_to,
        "user": user,
        "group": group,
        "model_version": model_version,
        "language": language,
        "ide": ide,
        "feature": feature,
        "group_by": group_by,
    }
    return service.parse_query(raw)


Filters = Annotated[MetricsQuery, Depends(metrics_query)]


@router.get("/metrics")
async def get_metrics(
    bu_id: UUID, query: Filters, principal: AdminReader, db: Db, groups: Groups
) -> MetricsReport:
    """Every metric of the v1 definitions over the filters, in total and per `group_by`
    value. Days are UTC; the period defaults to the last 28 days."""
    return await service.metrics(db, principal, bu_id, query, groups)


@router.get("/metrics/compare")
async def compare_model_versions(
    bu_id: UUID,
    query: Filters,
    principal: AdminReader,
    db: Db,
    groups: Groups,
    a: Annotated[str | None, Query(description="Control model version")] = None,
    b: Annotated[str | None, Query(description="Candidate model version (canary)")] = None,
    min_shown: Annotated[
        str | None, Query(description="Shown completions each side needs (default 100)")
    ] = None,
) -> Comparison:
    """Two model versions over the same period and population: counts, rates, 95% Wilson
    intervals and Newcombe's interval for the acceptance-rate difference (b - a).
    `status` is `insufficient_data` while either side has fewer than `min_shown` shown."""
    threshold = service.parse_min_shown(min_shown)
    return await service.compare(db, principal, bu_id, a or "", b or "", query, threshold, groups)


@router.get("/metrics.csv", response_class=Response)
async def export_metrics_csv(
    bu_id: UUID, query: Filters, principal: AdminReader, db: Db, groups: Groups
) -> Response:
    """The metrics as CSV: one row per `group_by` value (default: day), then a total row."""
    body = await service.csv_export(db, principal, bu_id, query, groups)
    return Response(
        content=body,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="cove-metrics-{bu_id}.csv"'},
    )


@router.get("/metrics/copilot")
async def export_copilot_metrics(
    bu_id: UUID, query: Filters, principal: AdminReader, db: Db, groups: Groups
) -> list[CopilotDay]:
    """Daily metrics with the field names of GitHub Copilot's metrics API (one object per
    day with data), so pilots can be compared side by side."""
    return await service.copilot(db, principal, bu_id, query, groups)
