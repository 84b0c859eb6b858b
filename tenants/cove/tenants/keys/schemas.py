"""API models for API keys."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from cove.tenants.principal import Scope


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(
        default_factory=lambda: [Scope.COMPLETIONS, Scope.EVENTS], min_length=1
    )
    user_id: UUID | None = Field(
        default=None, description="The member the key acts for; omit for a BU service key"
    )
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class ApiKey(BaseModel):
    id: UUID
    key_id: str
    name: str
    tenant_id: UUID | None
    user_id: UUID | None
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The key itself. Shown once; Cove stores only a salted hash.")
