"""API models for the model catalog: base models, grants and adapters."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# The same forms vLLM's --served-model-name and the Kubernetes spec accept.
ModelName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$", max_length=200)
]
AdapterName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", max_length=128)
]
Location = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1024,
        description=(
            "An absolute directory (local runtime), a path on the model volume,"
            " pvc://claim/path, or s3://bucket/prefix (Kubernetes)"
        ),
    ),
]
LoraRank = Annotated[int, Field(ge=1, le=512)]


class FimTokens(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prefix: str = Field(min_length=1, max_length=64)
    suffix: str = Field(min_length=1, max_length=64)
    middle: str = Field(min_length=1, max_length=64)


class BaseModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ModelName
    location: Location
    family: str | None = Field(default=None, max_length=100)
    fim_tokens: FimTokens | None = Field(
        default=None, description="Read from the tokenizer of a local directory when omitted"
    )
    context_length: int | None = Field(
        default=None,
        ge=16,
        le=2_097_152,
        description="Read from config.json of a local directory when omitted",
    )
    licence: str | None = Field(default=None, max_length=200)
    architecture: str | None = Field(
        default=None, max_length=100, description="e.g. LlamaForCausalLM; read when local"
    )
    max_lora_rank: LoraRank | None = Field(
        default=None, description="The highest LoRA rank an adapter of this model may have"
    )


class AdapterCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: AdapterName
    base_model: ModelName
    location: Location = Field(description="A PEFT LoRA directory (adapter_config.json)")
    rank: LoraRank | None = Field(
        default=None,
        description="Read from adapter_config.json (`r`) when the directory is local;"
        " required otherwise",
    )
    lineage: dict[str, Any] = Field(
        default_factory=dict,
        description="Where it came from: training job, dataset, parent version, commit",
    )
    scores: dict[str, float] = Field(
        default_factory=dict, description="Evaluation scores, e.g. {'exact_match': 0.41}"
    )


class CatalogModel(BaseModel):
    id: UUID
    name: str
    kind: Literal["base", "adapter"]
    base_model: str | None = Field(description="The base an adapter was trained on")
    bu_id: UUID | None = Field(description="The BU that owns an adapter; null for base models")
    location: str
    family: str | None
    fim_tokens: dict[str, str] | None
    context_length: int | None
    licence: str | None
    architecture: str | None
    lora_rank: int | None = Field(
        description="An adapter's rank; for a base model, the highest rank it accepts"
    )
    scores: dict[str, Any]
    lineage: dict[str, Any]
    created_at: datetime


class Grant(BaseModel):
    model: str
    model_id: UUID
    bu_id: UUID
    bu_slug: str
    created_at: datetime
