"""API models for model deployments: the desired instance, its observed state, capacity."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from cove.platform.deployments.k8s.spec import (
    LabelKey,
    LabelValue,
    Quantity,
    Resources,
    Toleration,
    VllmOptions,
)

DeploymentStatus = Literal["pending", "ready", "degraded", "unavailable"]
Runtime = Literal["external", "local", "kubernetes"]
Mode = Literal["dedicated", "shared"]
AdapterState = Literal["pending", "loaded", "failed", "unloading"]


class InstanceSpec(BaseModel):
    """The shape of the instance a BU asks for (stored as the deployment's `spec`).

    Where it runs (image, cluster settings, the vLLM environment) is the platform's business,
    configured on the workers; this is what a BU admin decides.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    replicas: int = Field(default=1, ge=0, le=64)
    gpus_per_replica: int = Field(default=0, ge=0, le=8, description="0 runs on CPUs only")
    gpu_type: LabelValue | None = Field(
        default=None, description="Kubernetes: value of the node label nvidia.com/gpu.product"
    )
    vllm: VllmOptions = Field(default_factory=VllmOptions)
    resources: Resources = Field(default_factory=Resources)
    node_selector: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    shm_size: Quantity = "8Gi"

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica


class _InstanceFields(BaseModel):
    replicas: int | None = Field(default=None, ge=0, le=64, description="Default 1")
    gpus_per_replica: int | None = Field(
        default=None, ge=0, le=8, description="Default 1 on Kubernetes, 0 elsewhere (CPU only)"
    )
    gpu_type: LabelValue | None = None
    vllm: VllmOptions | None = Field(
        default=None,
        description="max_model_len, enable_prefix_caching, speculative_decoding,"
        " tensor_parallel_size, max_loras, max_lora_rank, extra_args",
    )
    resources: Resources | None = None
    node_selector: dict[LabelKey, LabelValue] | None = None
    tolerations: list[Toleration] | None = Field(default=None, max_length=32)
    labels: dict[LabelKey, LabelValue] | None = None
    shm_size: Quantity | None = None


class DeploymentCreate(_InstanceFields):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    model: str = Field(min_length=1, max_length=200, description="Catalog name of the base model")
    served_model_name: str | None = Field(
        default=None, max_length=200, description="Name the instance serves; defaults to `model`"
    )
    runtime: Runtime = Field(
        default="external",
        description="external: an instance you run (give endpoint_url); local: a vLLM process"
        " on the worker's machine; kubernetes: a vLLM Deployment in the BU's namespace",
    )
    mode: Mode = Field(
        default="dedicated",
        description="shared: multi-LoRA, serves the BU's adapters beside the base model",
    )
    endpoint_url: AnyHttpUrl | None = Field(
        default=None, description="Base URL of the OpenAI-compatible server (runtime external)"
    )
    fallback_deployment: str | None = Field(
        default=None,
        max_length=63,
        description="Another deployment of the same BU that serves while this one cannot",
    )


class DeploymentUpdate(_InstanceFields):
    model_config = ConfigDict(extra="forbid")

    generation: int = Field(
        ge=1,
        le=2**31 - 1,
        description="The generation you read; a newer one means someone else changed it",
    )
    endpoint_url: AnyHttpUrl | None = Field(default=None, description="runtime external only")
    fallback_deployment: str | None = Field(
        default=None, max_length=63, description="null removes the fallback"
    )


class AdapterAttach(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200, description="Catalog name of the adapter")


class DeploymentAdapter(BaseModel):
    model_id: UUID
    model: str
    rank: int | None
    state: AdapterState
    detail: str | None
    updated_at: datetime


class DeploymentEvent(BaseModel):
    """A recent Kubernetes event about the instance's Deployment, ReplicaSets or pods."""

    type: str = Field(description="Normal or Warning")
    reason: str = Field(description="e.g. FailedScheduling, BackOff, Unhealthy, Pulled")
    message: str
    count: int
    last_time: str | None
    object: str = Field(description="Kind/name of the object the event is about")


class Deployment(BaseModel):
    id: UUID
    tenant_id: UUID | None = Field(description="null: a base instance shared across BUs")
    name: str
    model: str
    served_model_name: str
    endpoint_url: str
    mode: Mode
    runtime: Runtime
    status: DeploymentStatus
    status_detail: str | None
    last_checked_at: datetime | None
    created_at: datetime
    updated_at: datetime
    desired_state: Literal["running", "deleted"]
    generation: int
    observed_generation: int
    spec: InstanceSpec
    gpus: int
    max_lora_rank: int
    replicas_ready: int
    fallback_deployment: str | None
    capacity: dict[str, Any] = Field(description="Load scraped from the instance's /metrics")
    conditions: list[dict[str, Any]] = Field(description="What the runtime reports")
    events: list[DeploymentEvent] = Field(
        description="Kubernetes runtime: the newest events of its Deployment and pods"
    )
    reconciled_at: datetime | None
    adapters: list[DeploymentAdapter]


class SharedInstanceCreate(_InstanceFields):
    """A base instance the platform runs for several BUs' LoRA adapters."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    model: str = Field(min_length=1, max_length=200, description="Catalog name of the base model")
    served_model_name: str | None = Field(
        default=None, max_length=200, description="Name the instance serves; defaults to `model`"
    )
    runtime: Runtime = "external"
    endpoint_url: AnyHttpUrl | None = Field(
        default=None, description="Base URL of the OpenAI-compatible server (runtime external)"
    )


class SharedInstanceUpdate(_InstanceFields):
    model_config = ConfigDict(extra="forbid")

    generation: int = Field(
        ge=1,
        le=2**31 - 1,
        description="The generation you read; a newer one means someone else changed it",
    )
    endpoint_url: AnyHttpUrl | None = Field(default=None, description="runtime external only")


class SharedInstance(BaseModel):
    """A shared base instance as a BU sees it: its state and the BU's own adapters on it."""

    id: UUID
    name: str
    model: str
    served_model_name: str
    runtime: Runtime
    status: DeploymentStatus
    status_detail: str | None
    desired_state: Literal["running", "deleted"]
    max_lora_rank: int
    gpus: int = Field(description="The platform's GPUs; not counted against the BU's quota")
    adapters: list[DeploymentAdapter] = Field(description="This BU's adapters only")


class CapacityEntry(BaseModel):
    id: UUID
    name: str
    runtime: Runtime
    status: DeploymentStatus
    desired_state: Literal["running", "deleted"]
    replicas: int
    replicas_ready: int
    gpus: int
    capacity: dict[str, Any]


class Capacity(BaseModel):
    bu_id: UUID
    gpu_quota: int
    gpus_in_use: int = Field(description="GPUs of the BU's deployments and fine-tuning jobs")
    training_gpus: int = Field(
        default=0, description="Of gpus_in_use, those held by unfinished fine-tuning jobs"
    )
    gpus_available: int
    max_model_instances: int
    managed_instances: int = Field(description="Deployments Cove runs (local or kubernetes)")
    deployments: list[CapacityEntry]
    shared_instances: list[CapacityEntry] = Field(
        description="Platform instances carrying the BU's adapters; their GPUs are the"
        " platform's, outside gpu_quota"
    )
