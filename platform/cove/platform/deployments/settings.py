"""Where and how the workers run model instances (`COVE_*` environment variables).

These are the platform's decisions, not a BU's: which vLLM environment or image, the
Kubernetes connection, the model volume. The workers read them; the API never needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator

from cove.platform.core.settings import CoveSettings
from cove.platform.deployments.k8s.spec import DEFAULT_GATEWAY_NAMESPACE, DEFAULT_MODEL_CLAIM
from cove.platform.local.stack import VLLM_VERSION, default_cache_dir


class RuntimeSettings(CoveSettings):
    # How often the sweep reconciles every deployment (crash detection, drift), and how soon a
    # reconcile looks again at an instance that is still starting.
    reconcile_seconds: float = Field(default=30.0, gt=0)
    requeue_seconds: float = Field(default=3.0, gt=0)

    # Local runtime: vLLM CPU processes on the worker's machine.
    runtime_state_dir: Path = Path(".cove/runtime")
    cache_dir: Path = Field(default_factory=default_cache_dir)
    vllm_python: Path | None = None
    vllm_host: str = "127.0.0.1"
    vllm_start_timeout: float = Field(default=600.0, gt=0)
    vllm_cpu_kvcache_gib: int = Field(default=1, ge=1, le=1024)

    # Kubernetes runtime. Without kube_api_url the worker uses kubeconfig when given, else its
    # in-cluster service account.
    kube_api_url: str | None = None
    kube_token: SecretStr | None = None
    kube_ca_file: Path | None = None
    kube_verify_ssl: bool = True
    kubeconfig: Path | None = None
    kube_timeout_seconds: float = Field(default=30.0, gt=0)
    # The vLLM image: a whole reference (`registry/repository:tag@digest`, what the Helm
    # chart passes) replaces the three parts.
    vllm_image: str | None = None
    vllm_image_repository: str = "vllm/vllm-openai"
    vllm_image_tag: str | None = "v0.11.0"
    vllm_image_digest: str | None = None
    vllm_image_pull_secret: str | None = None
    model_volume_claim: str = DEFAULT_MODEL_CLAIM
    # The namespace of the gateway pods: the only ones a model instance accepts traffic from.
    gateway_namespace: str = DEFAULT_GATEWAY_NAMESPACE
    # The cluster's GPUs and where instances go when a deployment says nothing itself
    # (a deployment's own node_selector / tolerations replace these).
    gpu_resource_name: str = "nvidia.com/gpu"
    model_node_selector: dict[str, str] = Field(default_factory=dict)
    model_tolerations: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator(
        "vllm_image", "vllm_image_tag", "vllm_image_digest", "vllm_image_pull_secret", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # Templates render an unset value as an empty string.
        return None if value == "" else value

    @property
    def vllm_python_path(self) -> Path:
        return self.vllm_python or (self.cache_dir / f"venv-vllm-{VLLM_VERSION}" / "bin" / "python")
