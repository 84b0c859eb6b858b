"""API models for policies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PolicyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document: dict[str, Any] = Field(
        description="The policy document (for a BU: only what it overrides of the default)"
    )
    expected_version: int | None = Field(
        default=None, description="Reject the change if someone else changed the policy since"
    )


class PolicyView(BaseModel):
    scope: str = Field(description="'organisation' or the BU's id")
    document: dict[str, Any]
    effective: dict[str, Any] = Field(description="What the gateway enforces for this scope")
    version: int
    updated_by: str | None
    updated_at: datetime | None


class DryRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=1_000_000)
    path: str | None = Field(default=None, max_length=4096)


class DryRunFinding(BaseModel):
    type: str
    start: int
    end: int
    action: str
    rule: str


class DryRunResult(BaseModel):
    findings: list[DryRunFinding]
    blocked: bool
    excluded: bool
    text: str
