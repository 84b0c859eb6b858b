"""API models for the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field


class AuditEntry(BaseModel):
    id: int
    tenant_id: UUID | None
    actor: str
    action: str
    target: str | None
    diff: dict[str, Any] = Field(description="Changed fields as {field: [before, after]}")
    request_id: str | None
    created_at: datetime


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_before_id: int | None = Field(
        description="Pass as `before_id` for the next (older) page; null on the last page"
    )
