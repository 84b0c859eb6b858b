"""API models for model deployments."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

DeploymentStatus = Literal["pending", "ready", "degraded", "unavailable"]


class DeploymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    model: str = Field(min_length=1, max_length=200, description="Catalog name of the model")
    served_model_name: str | None = Field(
        default=None, max_length=200, description="Name the instance serves; defaults to `model`"
    )
    endpoint_url: AnyHttpUrl = Field(description="Base URL of the OpenAI-compatible server")


class Deployment(BaseModel):
    id: UUID
    tenant_id: UUID
    name: str
    model: str
    served_model_name: str
    endpoint_url: str
    mode: Literal["dedicated", "shared"]
    status: DeploymentStatus
    status_detail: str | None
    last_checked_at: datetime | None
    created_at: datetime
