"""API models for fine-tuning jobs: what a BU admin asks for, and what the job reports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cove.platform.models.schemas import AdapterName, ModelName

JobStatus = Literal[
    "queued", "preparing", "training", "evaluating", "succeeded", "failed", "cancelled"
]
ACTIVE_STATUSES: frozenset[str] = frozenset({"queued", "preparing", "training", "evaluating"})
FINISHED_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

JobName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", max_length=63)]
SecretName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", max_length=63)
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RepositoryInput(_Strict):
    location: str = Field(
        min_length=1,
        max_length=2048,
        description=(
            "A git URL (https://, ssh://, git@host:path) or an absolute directory on the"
            " workers. Never put credentials here: name a secret instead."
        ),
    )
    role: Literal["sdk", "consumer"] = Field(
        default="consumer", description="`sdk`: the private SDK; `consumer`: code that uses it"
    )
    credentials_secret: SecretName | None = Field(
        default=None,
        description=(
            "Name of the secret holding `user:token` for an https git URL (the workers read"
            " COVE_GIT_CREDENTIALS_<NAME>; in Kubernetes, a key of the finetune secret)"
        ),
    )


class HyperparameterOverrides(_Strict):
    """Values that replace the preset's; unset ones keep it."""

    rank: int | None = Field(default=None, ge=1, le=256)
    alpha: int | None = Field(default=None, ge=1, le=1024)
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    target_modules: list[str] | None = Field(default=None, min_length=1, max_length=16)
    learning_rate: float | None = Field(default=None, gt=0.0, le=1.0)
    epochs: float | None = Field(default=None, gt=0.0, le=100.0)
    max_steps: int | None = Field(default=None, ge=1, le=1_000_000)
    batch_size: int | None = Field(default=None, ge=1, le=1024)
    context_length: int | None = Field(default=None, ge=64, le=131_072)
    max_middle_tokens: int | None = Field(default=None, ge=1, le=8192)
    warmup_ratio: float | None = Field(default=None, ge=0.0, lt=1.0)
    checkpoint_every: int | None = Field(default=None, ge=1)
    seed: int | None = Field(default=None, ge=0)


class DatasetOptions(_Strict):
    seed: int = Field(default=0, ge=0)
    eval_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    random_span_share: float = Field(default=0.25, ge=0.0, lt=1.0)
    max_prefix_chars: int = Field(default=6000, ge=100, le=100_000)
    max_suffix_chars: int = Field(default=2000, ge=0, le=100_000)
    min_train_examples: int = Field(default=50, ge=1)
    min_eval_examples: int = Field(default=10, ge=1)


class GateOptions(_Strict):
    min_sdk_recall_gain: float = Field(default=0.05, ge=-1.0, le=1.0)
    min_edit_similarity_gain: float = Field(default=0.0, ge=-1.0, le=1.0)
    max_syntax_validity_drop: float = Field(default=0.05, ge=0.0, le=1.0)


class EvaluationOptions(_Strict):
    max_examples: int = Field(default=200, ge=1, le=10_000)
    max_new_tokens: int = Field(default=48, ge=1, le=1024)


class JobCreate(_Strict):
    name: JobName = Field(description="Unique within the business unit")
    repositories: list[RepositoryInput] = Field(min_length=1, max_length=32)
    base_model: ModelName = Field(description="A base model of the catalog granted to the BU")
    preset: Literal["small", "medium", "large"] = "small"
    hyperparameters: HyperparameterOverrides = Field(default_factory=HyperparameterOverrides)
    dataset: DatasetOptions = Field(default_factory=DatasetOptions)
    gate: GateOptions = Field(default_factory=GateOptions)
    evaluation: EvaluationOptions = Field(default_factory=EvaluationOptions)
    adapter_name: AdapterName | None = Field(
        default=None,
        description="Catalog name of the adapter it registers (default: <bu>-<job name>)",
    )
    gpus: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description=(
            "GPUs for the training run, admitted against the BU's GPU quota (default: 1 on"
            " Kubernetes, 0 on the local CPU runtime)"
        ),
    )


class JobProgress(BaseModel):
    percent: float
    step: int | None
    total_steps: int | None
    loss: float | None
    eta_seconds: float | None


class Job(BaseModel):
    id: UUID
    bu_id: UUID
    name: str
    status: JobStatus
    cancel_requested: bool
    attempt: int
    runtime: Literal["local", "kubernetes"]
    gpus: int
    base_model: str
    spec: dict[str, Any] = Field(description="The job as it was asked for")
    progress: JobProgress
    reason: dict[str, Any] | None = Field(
        description="Why it failed or was cancelled: a stable `code` and a `message`"
    )
    evaluation: dict[str, Any] | None = Field(
        description="Base and adapter scores, their difference and the promotion gate"
    )
    dataset_hash: str | None
    adapter_name: str
    adapter_model_id: UUID | None = Field(description="The registered adapter, once succeeded")
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class JobLogLine(BaseModel):
    id: int
    attempt: int
    level: Literal["info", "warning", "error"]
    message: str
    created_at: datetime


class JobLogs(BaseModel):
    job_id: UUID
    lines: list[JobLogLine]
    next_after: int = Field(description="Pass as `after` to read only newer lines")
