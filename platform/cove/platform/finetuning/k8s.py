"""The Kubernetes Job that runs one attempt of a fine-tuning job on GPU nodes.

The control plane renders it (`render_job` is a pure function of the job row and the
settings, so tests check exactly what would be applied), the worker applies it into the BU's
namespace with server-side apply, and the container runs the same runner as the local
runtime (`python -m cove.platform.finetuning.runner JOB ATTEMPT`), reporting into Postgres.

One pod per attempt (`backoffLimit` 0 by default: a retry is a new attempt the admin asks
for, which resumes from the last checkpoint on the training volume). The training volume holds
job directories and is mounted by the BU's vLLM pods too, so a registered adapter's path is
loadable as it is; the model volume is mounted read-only.
"""

from __future__ import annotations

from typing import Any

import yaml

from cove.platform.deployments.k8s.render import BU_LABEL, MANAGED_BY, KubeObject, bu_namespace
from cove.platform.finetuning.settings import FinetuneSettings

TRAINING_MOUNT = "/var/lib/cove/finetune"
MODELS_MOUNT = "/models"
JOB_LABEL = "cove.dev/finetune-job"
COMPONENT = "finetune"


def job_name(job_id: str, attempt: int) -> str:
    return f"cove-finetune-{job_id.replace('-', '')[:12]}-{attempt}"


def _image(settings: FinetuneSettings) -> str:
    if settings.trainer_image:
        return settings.trainer_image
    ref = settings.trainer_image_repository
    if settings.trainer_image_tag:
        ref += f":{settings.trainer_image_tag}"
    if settings.trainer_image_digest:
        ref += f"@{settings.trainer_image_digest}"
    return ref


def render_namespace(bu: str) -> KubeObject:
    """The BU namespace, labelled exactly as a deployment renders it (server-side apply by the
    same field manager must not change it), so a BU can train before it serves anything."""
    labels = {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "cove",
        BU_LABEL: bu,
    }
    for mode in ("enforce", "audit", "warn"):
        labels[f"pod-security.kubernetes.io/{mode}"] = "restricted"
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": bu_namespace(bu), "labels": labels},
    }


def runner_command(job_id: str, attempt: int, gpus: int) -> list[str]:
    """The trainer container's command: the runner itself on one GPU; on more, torch's own
    launcher starts one runner per GPU (rank 0 runs the job, every rank trains its share)."""
    runner = ["-m", "cove.platform.finetuning.runner", job_id, str(attempt)]
    if gpus > 1:
        return ["torchrun", "--standalone", f"--nproc_per_node={gpus}", *runner]
    return ["python", *runner]


def render_job(
    settings: FinetuneSettings, *, bu: str, job_id: str, job: str, attempt: int, gpus: int
) -> KubeObject:
    """The batch/v1 Job of one attempt. `gpus` > 1 gives the pod that many GPUs of one node."""
    labels = {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "cove",
        "app.kubernetes.io/component": COMPONENT,
        BU_LABEL: bu,
        JOB_LABEL: job_id,
    }
    gpu_limits = {settings.finetune_gpu_resource: str(gpus)} if gpus else {}
    container: dict[str, Any] = {
        "name": "trainer",
        "image": _image(settings),
        "imagePullPolicy": "IfNotPresent",
        "command": runner_command(job_id, attempt, gpus),
        "env": [
            {"name": "COVE_ENV", "value": "production"},
            {"name": "COVE_FINETUNE_DIR", "value": TRAINING_MOUNT},
            {"name": "COVE_MODEL_STORE_DIR", "value": MODELS_MOUNT},
            {"name": "COVE_FINETUNE_RUNTIME", "value": "kubernetes"},
            {"name": "COVE_FINETUNE_VOLUME_CLAIM", "value": settings.finetune_volume_claim},
            {"name": "HOME", "value": "/tmp"},  # noqa: S108 - the pod's emptyDir
            {"name": "HF_HUB_OFFLINE", "value": "1"},
        ],
        # COVE_DATABASE_URL, COVE_SECRET_KEY and COVE_GIT_CREDENTIALS_<NAME> of the BU.
        "envFrom": [{"secretRef": {"name": settings.finetune_secret}}],
        "resources": {
            "requests": {"cpu": "4", "memory": "32Gi", **gpu_limits},
            "limits": {"memory": "64Gi", **gpu_limits},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "training", "mountPath": TRAINING_MOUNT},
            {"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
            {"name": "shm", "mountPath": "/dev/shm"},  # noqa: S108
        ],
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {
                "name": "training",
                "persistentVolumeClaim": {"claimName": settings.finetune_volume_claim},
            },
            {
                "name": "models",
                "persistentVolumeClaim": {
                    "claimName": settings.finetune_models_claim,
                    "readOnly": True,
                },
            },
            {"name": "tmp", "emptyDir": {"sizeLimit": "20Gi"}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
        ],
    }
    if settings.trainer_image_pull_secret:
        pod["imagePullSecrets"] = [{"name": settings.trainer_image_pull_secret}]
    if settings.finetune_node_selector:
        pod["nodeSelector"] = dict(sorted(settings.finetune_node_selector.items()))
    tolerations = [dict(item) for item in settings.finetune_tolerations]
    if gpus and settings.finetune_gpu_toleration:
        tolerations.insert(
            0, {"key": settings.finetune_gpu_resource, "operator": "Exists", "effect": "NoSchedule"}
        )
    if tolerations:
        pod["tolerations"] = tolerations
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(job_id, attempt),
            "namespace": bu_namespace(bu),
            "labels": labels,
            "annotations": {"cove.dev/finetune-job-name": job, "cove.dev/attempt": str(attempt)},
        },
        "spec": {
            "backoffLimit": settings.finetune_backoff_limit,
            "activeDeadlineSeconds": settings.finetune_active_deadline_seconds,
            "ttlSecondsAfterFinished": 7 * 24 * 3600,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def job_outcome(stored: dict[str, Any] | None) -> tuple[str, str | None]:
    """What a Job's status says: `missing`, `running`, `succeeded` or `failed` (with the
    reason Kubernetes gives)."""
    if stored is None:
        return "missing", "the Job is gone from the cluster"
    status = stored.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Failed":
            reason = condition.get("reason") or "Failed"
            return "failed", f"{reason}: {condition.get('message') or 'the training pod failed'}"
        if condition.get("type") == "Complete":
            return "succeeded", None
    if int(status.get("failed") or 0) > 0:
        return "failed", "the training pod failed"
    return "running", None


def to_yaml(obj: KubeObject) -> str:
    return yaml.safe_dump(obj, sort_keys=False)
