"""API models for analytics: metrics (definitions v1), comparison and the Copilot export."""

from __future__ import annotations

import datetime as dt
from datetime import date
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

DEFINITION_VERSION = "v1"
GroupBy = Literal["day", "user", "model_version", "language", "ide", "feature"]


class MetricsQuery(BaseModel):
    """The filters every metrics endpoint accepts (validated into `invalid_filter` errors)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    date_from: date | None = None
    date_to: date | None = None
    user: str | None = Field(default=None, min_length=1, max_length=200)
    group: str | None = Field(default=None, min_length=1, max_length=500)
    model_version: str | None = Field(default=None, min_length=1, max_length=200)
    language: str | None = Field(default=None, min_length=1, max_length=200)
    ide: str | None = Field(default=None, min_length=1, max_length=200)
    feature: Literal["completion", "chat", "edit", "agent"] | None = None
    group_by: GroupBy | None = None


class Rate(BaseModel):
    value: float | None = Field(description="numerator ÷ denominator; null when nothing to divide")
    numerator: int
    denominator: int


class Latency(BaseModel):
    count: int
    p50: float | None = Field(description="Median, from the latency histogram (ms)")
    p95: float | None
    mean: float | None = Field(description="Exact mean (ms)")


class LinesApplied(BaseModel):
    total: int
    completion: int = Field(description="Lines of accepted completions")
    chat: int
    edit: int
    agent: int
    other: int = Field(description="Applied edits that reported no feature")


class Metrics(BaseModel):
    served: int
    shown: int
    accepted: int
    accepted_full: int
    accepted_partial: int
    accepted_line: int
    accepted_word: int
    rejected: int
    acceptance_rate: Rate
    acceptance_rate_full: Rate
    lines_shown: int
    lines_accepted: int
    line_acceptance_rate: Rate
    chars_accepted: int
    lines_applied: LinesApplied
    edits_proposed: int
    edits_applied: int
    edits_discarded: int
    review_not_applied_rate: Rate
    retention: dict[str, Rate] = Field(description="Keyed by window: 30s, 2m, 10m")
    active_users: int
    engaged_users: int
    latency_ttft_ms: Latency
    latency_total_ms: Latency


class MetricsGroup(BaseModel):
    key: str | None = Field(description="The group's value (a day, a user, …); null: not reported")
    metrics: Metrics


class MetricDefinition(BaseModel):
    id: str
    version: str
    definition: str


class MetricsReport(BaseModel):
    definition_version: str = DEFINITION_VERSION
    bu_id: UUID
    date_from: date
    date_to: date
    group_by: str | None
    filters: dict[str, str | None]
    totals: Metrics
    groups: list[MetricsGroup]
    definitions: dict[str, MetricDefinition]


class VersionSide(BaseModel):
    model_version: str
    shown: int
    accepted: int
    acceptance_rate: float | None
    acceptance_rate_ci95: tuple[float, float] | None = Field(description="Wilson score interval")
    lines_shown: int
    lines_accepted: int
    line_acceptance_rate: float | None
    metrics: Metrics


class Difference(BaseModel):
    metric: str = "acceptance_rate"
    value: float | None = Field(description="b - a")
    ci95: tuple[float, float] | None
    method: str = "newcombe-wilson"
    significant: bool | None = Field(description="Whether the interval excludes 0")


class Comparison(BaseModel):
    definition_version: str = DEFINITION_VERSION
    bu_id: UUID
    date_from: date
    date_to: date
    filters: dict[str, str | None]
    status: Literal["ok", "insufficient_data"]
    min_shown: int
    a: VersionSide
    b: VersionSide
    difference: Difference


# ---- GitHub Copilot metrics API (REST "Get Copilot metrics", API version 2022-11-28) --------


class CopilotLanguage(BaseModel):
    name: str
    total_engaged_users: int


class CopilotModelLanguage(BaseModel):
    name: str
    total_engaged_users: int
    total_code_suggestions: int
    total_code_acceptances: int
    total_code_lines_suggested: int
    total_code_lines_accepted: int


class CopilotCompletionModel(BaseModel):
    name: str
    is_custom_model: bool
    custom_model_training_date: date | None
    total_engaged_users: int
    languages: list[CopilotModelLanguage]


class CopilotCompletionEditor(BaseModel):
    name: str
    total_engaged_users: int
    models: list[CopilotCompletionModel]


class CopilotIdeCodeCompletions(BaseModel):
    total_engaged_users: int
    languages: list[CopilotLanguage]
    editors: list[CopilotCompletionEditor]


class CopilotChatModel(BaseModel):
    name: str
    is_custom_model: bool
    custom_model_training_date: date | None
    total_engaged_users: int
    total_chats: int
    total_chat_insertion_events: int
    total_chat_copy_events: int


class CopilotChatEditor(BaseModel):
    name: str
    total_engaged_users: int
    models: list[CopilotChatModel]


class CopilotIdeChat(BaseModel):
    total_engaged_users: int
    editors: list[CopilotChatEditor]


class CopilotDay(BaseModel):
    date: dt.date
    total_active_users: int
    total_engaged_users: int
    copilot_ide_code_completions: CopilotIdeCodeCompletions | None
    copilot_ide_chat: CopilotIdeChat | None
    copilot_dotcom_chat: None = None
    copilot_dotcom_pull_requests: None = None
