"""API models for business units."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

Slug = str
# The Kubernetes label `cove.dev/bu` of the base instances shared across BUs; a BU with this
# slug would be indistinguishable from the platform on the cluster, so none may have it.
PLATFORM_SLUG = "platform"
RESERVED_SLUGS = frozenset({PLATFORM_SLUG})
PromptLogging = Literal["off", "metadata", "full"]
BuStatus = Literal["active", "suspended", "deleting"]


class BusinessUnitCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: Slug = Field(pattern=r"^[a-z][a-z0-9-]{1,62}$", description="URL-safe identifier")
    name: str = Field(min_length=1, max_length=200)
    gpu_quota: int = Field(default=0, ge=0, le=10_000)
    max_model_instances: int = Field(default=2, ge=0, le=1_000)
    tokens_per_day: int | None = Field(default=None, gt=0)
    prompt_logging: PromptLogging = "off"
    retention_days: int = Field(default=90, ge=1, le=3650)


class BusinessUnitUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    gpu_quota: int | None = Field(default=None, ge=0, le=10_000)
    max_model_instances: int | None = Field(default=None, ge=0, le=1_000)
    tokens_per_day: int | None = Field(default=None, gt=0)
    prompt_logging: PromptLogging | None = None
    retention_days: int | None = Field(default=None, ge=1, le=3650)
    status: Literal["active", "suspended"] | None = None


class BusinessUnit(BaseModel):
    id: UUID
    slug: str
    name: str
    status: BuStatus
    gpu_quota: int
    max_model_instances: int
    tokens_per_day: int | None
    prompt_logging: PromptLogging
    retention_days: int
    created_at: datetime
    updated_at: datetime
    deletion_requested_at: datetime | None = None
    deletion_requested_by: str | None = None
    # While `deleting`: when the purge may start; a restore is possible until then.
    purge_after: datetime | None = None
    # Deletion needs a recent export.
    last_exported_at: datetime | None = None


class DeletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_days: int | None = Field(
        default=None,
        ge=0,
        le=365,
        description="Days before the purge; 0 purges at once. Default: the install's setting.",
    )
    reason: str | None = Field(default=None, max_length=500)
