"""API models for a BU's release (stable and canary model versions) and its history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

GroupName = Annotated[str, StringConstraints(min_length=1, max_length=255)]
ReleaseAction = Literal["set", "promote", "rollback", "clear"]


class ReleaseUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stable: str = Field(min_length=1, max_length=200, description="The default model version")
    canary: str | None = Field(
        default=None, min_length=1, max_length=200, description="The version under trial"
    )
    canary_percent: int = Field(
        default=0, ge=0, le=100, description="Share of users (sticky per user) on the canary"
    )
    canary_groups: list[GroupName] = Field(
        default_factory=list,
        max_length=50,
        description="Keycloak groups whose members always get the canary",
    )
    version: int | None = Field(
        default=None,
        ge=0,
        le=2**31 - 1,
        description="The version you read (0: none yet); omit to overwrite",
    )


class ReleaseStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="The version you read"
    )


class ReleaseEvent(BaseModel):
    version: int
    action: ReleaseAction
    stable: str | None
    canary: str | None
    canary_percent: int
    canary_groups: list[str]
    previous_stable: str | None
    actor: str
    created_at: datetime


class Release(BaseModel):
    bu_id: UUID
    stable: str | None = Field(description="null until a release is set")
    canary: str | None
    canary_percent: int
    canary_groups: list[str]
    previous_stable: str | None = Field(description="What a rollback restores")
    version: int = Field(description="0 until a release is set")
    updated_by: str | None
    updated_at: datetime | None
    history: list[ReleaseEvent] = Field(description="Every step, newest first")
