"""Where and how fine-tuning jobs run (`COVE_FINETUNE_*` and related environment variables).

The API reads the runtime (it decides a job's default GPUs and which limits apply); the
workers and the runner read the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from cove.platform.core.settings import CoveSettings
from cove.platform.deployments.k8s.spec import parse_tolerations


class FinetuneSettings(CoveSettings):
    # `local`: the worker starts the runner as a process on its machine (CPU, or its GPUs);
    # `kubernetes`: the worker submits a Job on GPU nodes.
    finetune_runtime: Literal["local", "kubernetes"] = "local"
    # Job directories (dataset, checkpoints, adapter, evaluation) live under
    # <finetune_dir>/<bu id>/<job id>; in Kubernetes it is the training volume's mount path,
    # which vLLM mounts too, so a registered adapter's path is loadable as it is.
    finetune_dir: Path = Path(".cove/finetune")
    # Relative base-model locations are paths on the model volume, mounted here.
    model_store_dir: Path = Path("/models")
    # The interpreter that runs the job (local runtime); by default the worker's.
    finetune_python: Path | None = None
    finetune_cpu_threads: int | None = Field(default=None, ge=1, le=512)
    # A running job that has not reported for this long is failed as `lost`.
    finetune_heartbeat_timeout_seconds: float = Field(default=600.0, gt=0)
    # A queued job that no worker has started for this long is started by the sweep.
    finetune_start_grace_seconds: float = Field(default=30.0, gt=0)
    # A Kubernetes Job whose pod has not started the training this long after its launch (no
    # node with free GPUs, an image that cannot be pulled) is deleted and the job failed as
    # `not_started`. Long enough for a GPU node pool to scale up.
    finetune_start_timeout_seconds: float = Field(default=1800.0, gt=0)
    finetune_sweep_seconds: float = Field(default=15.0, gt=0)

    # Kubernetes runtime: the trainer image and where its Jobs run. A whole reference
    # (`registry/repository:tag@digest`, what the Helm chart passes) replaces the three parts.
    trainer_image: str | None = None
    trainer_image_repository: str = "registry.cove.internal/cove/trainer"
    trainer_image_tag: str | None = "0.1.0"
    trainer_image_digest: str | None = None
    trainer_image_pull_secret: str | None = None
    finetune_namespace_prefix: str = "cove-bu-"
    finetune_volume_claim: str = "cove-finetune"
    finetune_models_claim: str = "cove-models"
    # The Secret (in each BU namespace) with the runner's database URL and git credentials.
    finetune_secret: str = "cove-finetune"
    finetune_gpu_resource: str = "nvidia.com/gpu"
    finetune_node_selector: dict[str, str] = Field(default_factory=dict)
    finetune_gpu_toleration: bool = True
    # More tolerations for the training pods, as Kubernetes writes them.
    finetune_tolerations: list[dict[str, Any]] = Field(default_factory=list, max_length=32)
    finetune_backoff_limit: int = Field(default=0, ge=0, le=10)
    finetune_active_deadline_seconds: int = Field(default=7 * 24 * 3600, ge=60)

    @field_validator(
        "trainer_image",
        "trainer_image_tag",
        "trainer_image_digest",
        "trainer_image_pull_secret",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # Templates render an unset value as an empty string.
        return None if value == "" else value

    @field_validator("finetune_tolerations")
    @classmethod
    def _valid_tolerations(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        parse_tolerations(value)  # refuses what Kubernetes would refuse, at start-up
        return value
