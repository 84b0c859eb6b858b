"""HTTP endpoints for prompt logs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from cove.platform.promptlogs import service
from cove.platform.promptlogs.repository import PromptLogFilter
from cove.platform.promptlogs.schemas import PromptLogPage
from cove.tenants.http import AdminReader, Db

router = APIRouter(tags=["prompt-logs"])


@router.get("/api/v1/bus/{bu_id}/prompt-logs")
async def bu_prompt_logs(
    bu_id: UUID,
    principal: AdminReader,
    db: Db,
    user: Annotated[str | None, Query(max_length=200, description="User id or username")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> PromptLogPage:
    """The BU's prompt logs, newest first (BU admins). What each entry holds depends on the
    BU's `logging.mode` when the request was served: `metadata` entries have no text. Each
    read is recorded in the audit log as `prompt_logs.read`."""
    where = PromptLogFilter(user=user, since=since, until=until, limit=limit)
    return await service.page(db, principal, bu_id, where, cursor)
