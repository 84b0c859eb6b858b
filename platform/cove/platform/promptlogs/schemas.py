"""API models for prompt logs."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field


class PromptLog(BaseModel):
    id: UUID
    logged_at: datetime
    mode: str = Field(description="The BU's logging mode when the request was served")
    user_id: str
    username: str
    request_id: str | None
    completion_id: str | None
    feature: str = Field(description="completion or chat")
    model_version: str
    path: str | None = Field(description="The file the IDE sent (Tabby path or x-cove-file-path)")
    language: str | None
    prompt_chars: int
    suffix_chars: int
    completion_chars: int
    prompt_tokens: int | None
    completion_tokens: int | None
    rules: list[dict[str, Any]] = Field(
        description="Policy rules that fired: action (redact, audit, drop), type, rule"
    )
    cancelled: bool = Field(description="The client hung up before the completion ended")
    prompt: str | None = Field(description="Full mode only: the prompt as forwarded (redacted)")
    suffix: str | None = Field(description="Full mode only: the suffix as forwarded (redacted)")
    completion: str | None = Field(description="Full mode only: what the IDE received")


class PromptLogPage(BaseModel):
    entries: list[PromptLog]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page"
    )
