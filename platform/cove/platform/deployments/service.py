"""Rules for model deployments: admission (grants, quotas, specs), optimistic concurrency,
adapters on instances, deletion. Every change is one transaction with its audit entry and, when
routing changes, the `cove_routes` notification; the reconcile task is enqueued only after that
transaction commits."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from celery import Celery
from pydantic import ValidationError

from cove.finetune.tinymodel import is_model_dir
from cove.platform.core.celery_app import AfterCommit
from cove.platform.core.db import Database
from cove.platform.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from cove.platform.deployments import repository
from cove.platform.deployments.k8s.render import VLLM_PORT, bu_namespace
from cove.platform.deployments.k8s.spec import (
    DEFAULT_MAX_LORA_RANK,
    SHARED_NAMESPACE,
    DeploymentSpec,
    ImageRef,
    ModelSource,
    S3Source,
    describe_errors,
    named_claim,
)
from cove.platform.deployments.repository import PLATFORM_SLUG, AdapterRow, DeploymentRow
from cove.platform.deployments.schemas import (
    AdapterAttach,
    Capacity,
    CapacityEntry,
    Deployment,
    DeploymentAdapter,
    DeploymentCreate,
    DeploymentEvent,
    DeploymentUpdate,
    InstanceSpec,
    SharedInstance,
    SharedInstanceCreate,
    SharedInstanceUpdate,
)
from cove.platform.finetuning import repository as finetune_jobs
from cove.platform.models import service as models
from cove.platform.models.locations import LocationProblem, inspect_adapter, location_kind
from cove.platform.models.schemas import CatalogModel
from cove.tenants import audit
from cove.tenants.bus import repository as bu_repository
from cove.tenants.principal import Principal, require_bu_admin, require_bu_visible

log = logging.getLogger(__name__)

RECONCILE = "deployment.reconcile"
MANAGED_RUNTIMES = frozenset({"local", "kubernetes"})
# A local instance has no address until the worker has started it; connecting here fails at
# once, which the gateway answers with the fallback or a 503.
UNASSIGNED_ENDPOINT = "http://127.0.0.1:0"
# Checks a Kubernetes spec before it is stored; the real image is the workers' setting.
_PLACEHOLDER_IMAGE = ImageRef(repository="registry.invalid/vllm/vllm-openai", tag="validate")
_INSTANCE_FIELDS = tuple(InstanceSpec.model_fields)


def _bu_admin(principal: Principal, tenant_id: UUID) -> None:
    require_bu_admin(principal, tenant_id, "deploy models")


def _public(row: DeploymentRow, adapters: list[AdapterRow]) -> Deployment:
    return Deployment(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        model=row.model,
        served_model_name=row.served_model_name,
        endpoint_url=row.endpoint_url,
        mode=row.mode,
        runtime=row.runtime,
        status=row.status,
        status_detail=row.status_detail,
        last_checked_at=row.last_checked_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        desired_state=row.desired_state,
        generation=row.generation,
        observed_generation=row.observed_generation,
        spec=InstanceSpec.model_validate(row.spec),
        gpus=row.gpus,
        max_lora_rank=row.max_lora_rank,
        replicas_ready=row.replicas_ready,
        fallback_deployment=row.fallback_deployment,
        capacity=row.capacity,
        conditions=row.conditions,
        events=[DeploymentEvent.model_validate(e) for e in row.events],
        reconciled_at=row.reconciled_at,
        adapters=[a.public() for a in adapters],
    )


def capacity_entry(row: DeploymentRow) -> CapacityEntry:
    return CapacityEntry(
        id=row.id,
        name=row.name,
        runtime=row.runtime,
        status=row.status,
        desired_state=row.desired_state,
        replicas=InstanceSpec.model_validate(row.spec).replicas,
        replicas_ready=row.replicas_ready,
        gpus=row.gpus,
        capacity=row.capacity,
    )


async def _load(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, deployment_id: UUID
) -> Deployment:
    row = await repository.get(conn, tenant_id, deployment_id)
    if row is None:
        raise NotFound("No such deployment", code="deployment_not_found")
    adapters = await repository.adapters_of(conn, [row.id])
    return _public(row, adapters[row.id])


async def send(outbox: AfterCommit) -> None:
    """Enqueue after the commit. A broker outage loses nothing: the periodic sweep
    reconciles every deployment whose desired state has not been carried out."""
    try:
        await asyncio.to_thread(outbox.send)
    except Exception:
        log.warning("could not enqueue the reconcile task; the periodic sweep will run it")
        outbox.discard()


def outbox_for(tasks: Celery | None) -> AfterCommit | None:
    return AfterCommit(tasks) if tasks is not None else None


# ---- reads ------------------------------------------------------------------------------


async def list_deployments(db: Database, principal: Principal, tenant_id: UUID) -> list[Deployment]:
    require_bu_visible(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        if await bu_repository.get(conn, tenant_id) is None:
            raise NotFound("No such business unit", code="bu_not_found")
        rows = await repository.list_for_tenant(conn, tenant_id)
        adapters = await repository.adapters_of(conn, [r.id for r in rows])
    return [_public(row, adapters[row.id]) for row in rows]


async def get_deployment(
    db: Database, principal: Principal, tenant_id: UUID, deployment_id: UUID
) -> Deployment:
    require_bu_visible(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        return await _load(conn, tenant_id, deployment_id)


async def capacity(db: Database, principal: Principal, tenant_id: UUID) -> Capacity:
    require_bu_visible(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        limits = await repository.tenant_limits(conn, tenant_id)
        if limits is None:
            raise NotFound("No such business unit", code="bu_not_found")
        rows = await repository.list_for_tenant(conn, tenant_id)
        shared = await repository.shared_for_tenant(conn, tenant_id)
        carrying = await repository.adapters_of(conn, [r.id for r in shared], tenant_id=tenant_id)
        training = await finetune_jobs.active_gpus(conn, tenant_id)
    entries = [capacity_entry(row) for row in rows]
    # Shared instances carrying the BU's adapters are listed, but their GPUs are the
    # platform's: they count against no BU's quota. Fine-tuning jobs hold theirs from
    # admission to their end, as the quota check counts them.
    used = sum(entry.gpus for entry in entries) + training
    return Capacity(
        bu_id=tenant_id,
        gpu_quota=limits.gpu_quota,
        gpus_in_use=used,
        training_gpus=training,
        gpus_available=max(0, limits.gpu_quota - used),
        max_model_instances=limits.max_model_instances,
        managed_instances=sum(1 for e in entries if e.runtime in MANAGED_RUNTIMES),
        deployments=entries,
        shared_instances=[capacity_entry(row) for row in shared if carrying[row.id]],
    )


async def routable_models(conn: psycopg.AsyncConnection[Any], tenant_id: UUID) -> dict[str, UUID]:
    """The models the gateway can route for the BU right now (for releases)."""
    return await repository.routable_models(conn, tenant_id)


# ---- admission ---------------------------------------------------------------------------


def _spec_from(
    fields: dict[str, Any], runtime: str, base: InstanceSpec | None = None
) -> InstanceSpec:
    values: dict[str, Any] = base.model_dump() if base is not None else {}
    if base is None:
        values["gpus_per_replica"] = 1 if runtime == "kubernetes" else 0
    values.update(fields)
    try:
        return InstanceSpec.model_validate(values)
    except ValidationError as exc:
        raise _invalid_spec(exc) from None


def _invalid_spec(exc: ValidationError) -> ValidationFailed:
    problems = describe_errors([dict(error) for error in exc.errors()])
    return ValidationFailed(
        "invalid deployment: " + "; ".join(problems),
        code="invalid_deployment_spec",
        details={"problems": problems},
    )


def _check_spec(
    *,
    runtime: str,
    mode: str,
    name: str,
    bu_slug: str,
    model: CatalogModel,
    served_model_name: str,
    spec: InstanceSpec,
    endpoint_url: str | None,
    shared_across_bus: bool = False,
) -> None:
    """Everything the runtime will need, checked before anything is stored."""
    problems: list[str] = []
    if runtime == "external" and not endpoint_url:
        problems.append("endpoint_url: required for runtime external (the instance you run)")
    if runtime != "external" and endpoint_url:
        problems.append(f"endpoint_url: Cove assigns the address of a {runtime} instance")
    if mode == "dedicated":
        for option in ("max_loras", "max_lora_rank"):
            if getattr(spec.vllm, option) is not None:
                problems.append(f"vllm.{option}: applies only to mode shared (multi-LoRA)")
    max_len = spec.vllm.max_model_len
    if max_len is not None and model.context_length and max_len > model.context_length:
        problems.append(
            f"vllm.max_model_len ({max_len}) exceeds the context length of {model.name}"
            f" ({model.context_length})"
        )
    try:
        kind = location_kind(model.location)
    except LocationProblem as exc:
        problems.append(f"model {model.name}: {exc}")
        kind = "local"
    if runtime == "local":
        problems += _local_problems(spec, model, kind)
    elif runtime == "kubernetes":
        problems += _kubernetes_problems(
            spec, model, kind, name, bu_slug, served_model_name, mode, shared_across_bus
        )
    if problems:
        raise ValidationFailed(
            "invalid deployment: " + "; ".join(problems),
            code="invalid_deployment_spec",
            details={"problems": problems},
        )


def _local_problems(spec: InstanceSpec, model: CatalogModel, kind: str) -> list[str]:
    problems: list[str] = []
    if spec.replicas != 1:
        problems.append("replicas: the local runtime runs exactly one process")
    if spec.gpus_per_replica or spec.gpu_type:
        problems.append("gpus_per_replica / gpu_type: the local runtime runs vLLM on CPUs")
    if spec.vllm.speculative_decoding is not None or (spec.vllm.tensor_parallel_size or 1) > 1:
        problems.append(
            "vllm.speculative_decoding / tensor_parallel_size: not available on the local runtime"
        )
    if kind != "local":
        problems.append(
            f"model {model.name}: the local runtime needs a directory on this machine; the"
            f" catalog has '{model.location}'"
        )
    else:
        problem = is_model_dir(Path(model.location))
        if problem is not None:
            problems.append(f"model {model.name}: {problem}")
    return problems


def _kubernetes_problems(
    spec: InstanceSpec,
    model: CatalogModel,
    kind: str,
    name: str,
    bu_slug: str,
    served_model_name: str,
    mode: str,
    shared_across_bus: bool,
) -> list[str]:
    if kind == "local":
        return [
            f"model {model.name}: Kubernetes pods read models from the model volume or S3;"
            f" '{model.location}' is a directory on one machine"
        ]
    try:
        DeploymentSpec(
            bu=bu_slug,
            name=name,
            mode=mode,
            shared_across_bus=shared_across_bus,
            model=ModelSource(
                name=served_model_name,
                location=model.location,
                context_length=model.context_length or 16,
            ),
            replicas=spec.replicas,
            gpus_per_replica=spec.gpus_per_replica,
            gpu_type=spec.gpu_type,
            # Admission checks the BU's quota against all its deployments, below.
            gpu_quota=spec.gpus,
            vllm=spec.vllm,
            resources=spec.resources,
            shm_size=spec.shm_size,
            node_selector=spec.node_selector,
            tolerations=spec.tolerations,
            labels=spec.labels,
            image=_PLACEHOLDER_IMAGE,
            # S3 models get the platform's downloader settings on the workers.
            s3=S3Source(credentials_secret="validate", downloader_image=_PLACEHOLDER_IMAGE)
            if kind == "s3"
            else None,
        )
    except ValidationError as exc:
        return describe_errors([dict(error) for error in exc.errors()])
    return []


def _admit(
    limits: repository.TenantLimits,
    used: repository.Usage,
    *,
    name: str,
    spec: InstanceSpec,
    managed: bool,
    current_gpus: int = 0,
    new_instance: bool,
) -> None:
    requested = spec.gpus
    if requested > current_gpus and used.gpus + requested > limits.gpu_quota:
        total = used.gpus + requested
        raise Conflict(
            f"'{name}' needs {spec.replicas} replicas x {spec.gpus_per_replica} GPUs ="
            f" {requested} GPUs; the business unit already uses {used.gpus} of its GPU quota"
            f" of {limits.gpu_quota}, and {used.gpus} + {requested} = {total} >"
            f" {limits.gpu_quota}",
            code="gpu_quota_exceeded",
            details={"requested": requested, "in_use": used.gpus, "quota": limits.gpu_quota},
        )
    if managed and new_instance and used.managed_instances + 1 > limits.max_model_instances:
        raise Conflict(
            f"The business unit already runs {used.managed_instances} model instance(s), its"
            f" limit of {limits.max_model_instances}",
            code="instance_quota_exceeded",
            details={
                "in_use": used.managed_instances,
                "quota": limits.max_model_instances,
            },
        )


async def _fallback_id(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, name: str | None, own: str
) -> UUID | None:
    if name is None:
        return None
    if name == own:
        raise ValidationFailed(
            "fallback_deployment: a deployment cannot fall back to itself",
            code="invalid_fallback",
            param="fallback_deployment",
        )
    found = await repository.get_by_name(conn, tenant_id, name)
    if found is None or found.desired_state != "running":
        raise ValidationFailed(
            f"fallback_deployment: the business unit has no deployment named '{name}'",
            code="fallback_not_found",
            param="fallback_deployment",
        )
    return found.id


def _max_lora_rank(spec: InstanceSpec) -> int:
    return spec.vllm.max_lora_rank or DEFAULT_MAX_LORA_RANK


def _summary(spec: InstanceSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_defaults=True)


# ---- writes -------------------------------------------------------------------------------


async def create_deployment(
    db: Database,
    principal: Principal,
    tenant_id: UUID,
    data: DeploymentCreate,
    tasks: Celery | None = None,
) -> Deployment:
    _bu_admin(principal, tenant_id)
    fields = {
        k: getattr(data, k)
        for k in _INSTANCE_FIELDS
        if k in data.model_fields_set and getattr(data, k) is not None
    }
    spec = _spec_from(fields, data.runtime)
    served = data.served_model_name or data.model
    endpoint = str(data.endpoint_url).rstrip("/") if data.endpoint_url else None
    outbox = outbox_for(tasks)
    async with db.tenant(tenant_id) as conn:
        limits = await repository.lock_tenant(conn, tenant_id)
        if limits is None:
            raise NotFound("No such business unit", code="bu_not_found")
        model = await models.base_model_for_bu(conn, tenant_id, data.model)
        _check_spec(
            runtime=data.runtime,
            mode=data.mode,
            name=data.name,
            bu_slug=limits.slug,
            model=model,
            served_model_name=served,
            spec=spec,
            endpoint_url=endpoint,
        )
        existing = await repository.get_by_name(conn, tenant_id, data.name)
        if existing is not None:
            deleting = existing.desired_state == "deleted"
            raise Conflict(
                f"A deployment named '{data.name}' exists"
                + (" and is being deleted; try again when it is gone" if deleting else ""),
                code="deployment_exists",
            )
        fallback = await _fallback_id(conn, tenant_id, data.fallback_deployment, data.name)
        used = await repository.usage(conn, tenant_id)
        _admit(
            limits,
            used,
            name=data.name,
            spec=spec,
            managed=data.runtime in MANAGED_RUNTIMES,
            new_instance=True,
        )
        if data.runtime == "kubernetes":
            endpoint = f"http://{data.name}.{bu_namespace(limits.slug)}.svc:{VLLM_PORT}"
        elif data.runtime == "local":
            endpoint = UNASSIGNED_ENDPOINT
        assert endpoint is not None
        deployment_id = await repository.insert(
            conn,
            {
                "tenant_id": tenant_id,
                "name": data.name,
                "model_id": model.id,
                "served_model_name": served,
                "endpoint_url": endpoint,
                "runtime": data.runtime,
                "mode": data.mode,
                "spec": spec.model_dump(mode="json"),
                "gpus": spec.gpus,
                "max_lora_rank": _max_lora_rank(spec),
                "fallback_deployment_id": fallback,
            },
        )
        await audit.record(
            conn,
            actor=principal.username,
            action="deployment.create",
            tenant_id=tenant_id,
            target=f"deployment:{data.name}",
            changes={
                "model": [None, data.model],
                "runtime": [None, data.runtime],
                "mode": [None, data.mode],
                "endpoint_url": [None, endpoint],
                "spec": [None, _summary(spec)],
                "gpus": [None, spec.gpus],
                "fallback_deployment": [None, data.fallback_deployment],
            },
        )
        await repository.notify_routes(conn, tenant_id)
        if outbox is not None:
            outbox.add(RECONCILE, deployment_id)
        created = await _load(conn, tenant_id, deployment_id)
    if outbox is not None:
        await send(outbox)
    return created


async def update_deployment(
    db: Database,
    principal: Principal,
    tenant_id: UUID,
    deployment_id: UUID,
    data: DeploymentUpdate,
    tasks: Celery | None = None,
) -> Deployment:
    _bu_admin(principal, tenant_id)
    outbox = outbox_for(tasks)
    async with db.tenant(tenant_id) as conn:
        limits = await repository.lock_tenant(conn, tenant_id)
        if limits is None:
            raise NotFound("No such business unit", code="bu_not_found")
        row = await repository.get(conn, tenant_id, deployment_id)
        if row is None:
            raise NotFound("No such deployment", code="deployment_not_found")
        if row.desired_state != "running":
            raise Conflict("The deployment is being deleted", code="deployment_deleting")
        current = InstanceSpec.model_validate(row.spec)
        spec, endpoint = await _changed_instance(conn, row, data, limits.slug)
        fallback = row.fallback_deployment_id
        if "fallback_deployment" in data.model_fields_set:
            fallback = await _fallback_id(conn, tenant_id, data.fallback_deployment, row.name)
        used = await repository.usage(conn, tenant_id, excluding=row.id)
        _admit(
            limits,
            used,
            name=row.name,
            spec=spec,
            managed=row.runtime in MANAGED_RUNTIMES,
            current_gpus=row.gpus,
            new_instance=False,
        )
        generation = await repository.update_desired(
            conn,
            row.id,
            data.generation,
            {
                "spec": spec.model_dump(mode="json"),
                "gpus": spec.gpus,
                "max_lora_rank": _max_lora_rank(spec)
                if row.mode == "shared"
                else row.max_lora_rank,
                "endpoint_url": endpoint,
                "fallback_deployment_id": fallback,
            },
        )
        if generation is None:
            raise _generation_conflict(row, data.generation)
        changes = audit.diff(
            {
                "spec": _summary(current),
                "endpoint_url": row.endpoint_url,
                "fallback_deployment": row.fallback_deployment,
            },
            {
                "spec": _summary(spec),
                "endpoint_url": endpoint,
                "fallback_deployment": data.fallback_deployment
                if "fallback_deployment" in data.model_fields_set
                else row.fallback_deployment,
            },
        )
        changes["generation"] = [row.generation, generation]
        await audit.record(
            conn,
            actor=principal.username,
            action="deployment.update",
            tenant_id=tenant_id,
            target=f"deployment:{row.name}",
            changes=changes,
        )
        await repository.notify_routes(conn, tenant_id)
        if outbox is not None:
            outbox.add(RECONCILE, row.id)
        updated = await _load(conn, tenant_id, row.id)
    if outbox is not None:
        await send(outbox)
    return updated


async def _changed_instance(
    conn: psycopg.AsyncConnection[Any],
    row: DeploymentRow,
    data: DeploymentUpdate | SharedInstanceUpdate,
    bu_slug: str,
) -> tuple[InstanceSpec, str]:
    """The instance's new spec and address, checked like a new one, before anything is
    written; the adapters already on it must still fit."""
    if row.generation != data.generation:
        raise _generation_conflict(row, data.generation)
    current = InstanceSpec.model_validate(row.spec)
    fields = {k: getattr(data, k) for k in _INSTANCE_FIELDS if k in data.model_fields_set}
    if any(value is None for key, value in fields.items() if key != "gpu_type"):
        raise ValidationFailed(
            "Only gpu_type and fallback_deployment may be set to null",
            code="invalid_deployment_spec",
        )
    spec = _spec_from(fields, row.runtime, current)
    endpoint = row.endpoint_url
    if "endpoint_url" in data.model_fields_set:
        if row.runtime != "external" or data.endpoint_url is None:
            raise ValidationFailed(
                "endpoint_url: only an external deployment's address can be changed",
                code="invalid_deployment_spec",
                param="endpoint_url",
            )
        endpoint = str(data.endpoint_url).rstrip("/")
    model = await models.find_visible(conn, row.model)
    assert model is not None
    _check_spec(
        runtime=row.runtime,
        mode=row.mode,
        name=row.name,
        bu_slug=bu_slug,
        model=model,
        served_model_name=row.served_model_name,
        spec=spec,
        endpoint_url=endpoint if row.runtime == "external" else None,
        shared_across_bus=row.tenant_id is None,
    )
    if spec.vllm.max_lora_rank is not None and row.mode == "shared":
        too_big = [
            a.model
            for a in (await repository.adapters_of(conn, [row.id]))[row.id]
            if a.rank is not None and a.rank > spec.vllm.max_lora_rank
        ]
        if too_big:
            raise Conflict(
                f"vllm.max_lora_rank {spec.vllm.max_lora_rank} is below the rank of"
                f" adapters on the deployment: {', '.join(too_big)}",
                code="adapter_rank_too_high",
            )
    return spec, endpoint


def _generation_conflict(row: DeploymentRow, given: int) -> Conflict:
    return Conflict(
        f"The deployment changed since you read it (generation {given}, now"
        f" {row.generation}); read it again and reapply your change",
        code="generation_conflict",
        details={"expected": given, "current": row.generation},
    )


async def delete_deployment(
    db: Database,
    principal: Principal,
    tenant_id: UUID,
    deployment_id: UUID,
    tasks: Celery | None = None,
) -> Deployment:
    _bu_admin(principal, tenant_id)
    outbox = outbox_for(tasks)
    async with db.tenant(tenant_id) as conn:
        row = await repository.get(conn, tenant_id, deployment_id)
        if row is None:
            raise NotFound("No such deployment", code="deployment_not_found")
        if row.desired_state == "running":
            release = await repository.release_models(conn, tenant_id)
            remaining = set(
                (await repository.routable_models(conn, tenant_id, excluding=row.id)).values()
            )
            stranded = {role: model for role, model in release.items() if model not in remaining}
            if stranded:
                names = await _names(conn, list(stranded.values()))
                roles = ", ".join(f"the {role} model '{names[m]}'" for role, m in stranded.items())
                raise Conflict(
                    f"The release sends traffic to {roles}, which only this deployment serves;"
                    " change or clear the release first",
                    code="deployment_in_release",
                    details={role: names[m] for role, m in stranded.items()},
                )
            others = await repository.drop_as_fallback(conn, tenant_id, row.id)
            await repository.mark_deleted(conn, row.id)
            await audit.record(
                conn,
                actor=principal.username,
                action="deployment.delete",
                tenant_id=tenant_id,
                target=f"deployment:{row.name}",
                changes={"desired_state": ["running", "deleted"], "fallback_of": [others, []]}
                if others
                else {"desired_state": ["running", "deleted"]},
            )
            await repository.notify_routes(conn, tenant_id)
        if outbox is not None:
            outbox.add(RECONCILE, row.id)
        deleted = await _load(conn, tenant_id, row.id)
    if outbox is not None:
        await send(outbox)
    return deleted


async def _names(conn: psycopg.AsyncConnection[Any], ids: list[UUID]) -> dict[UUID, str]:
    found: dict[UUID, str] = {}
    for model_id in ids:
        model = await models.get_visible(conn, model_id)
        found[model_id] = model.name if model else str(model_id)
    return found


async def attach_adapter(
    db: Database,
    principal: Principal,
    tenant_id: UUID,
    deployment_id: UUID,
    data: AdapterAttach,
    tasks: Celery | None = None,
) -> DeploymentAdapter:
    """Ask for an adapter on a deployment. Every compatibility rule is checked here, before
    the instance is touched; the reconciler then hot-loads it."""
    _bu_admin(principal, tenant_id)
    outbox = outbox_for(tasks)
    async with db.tenant(tenant_id) as conn:
        row = await repository.get(conn, tenant_id, deployment_id)
        if row is None:
            raise NotFound("No such deployment", code="deployment_not_found")
        attached = await attach(conn, principal, tenant_id, row, data, outbox)
    if outbox is not None:
        await send(outbox)
    return attached


async def attach(
    conn: psycopg.AsyncConnection[Any],
    principal: Principal,
    tenant_id: UUID,
    row: DeploymentRow,
    data: AdapterAttach,
    outbox: AfterCommit | None,
) -> DeploymentAdapter:
    """Put one of the BU's adapters on an instance (its own, or a shared one it may use)."""
    if row.desired_state != "running":
        raise Conflict("The deployment is being deleted", code="deployment_deleting")
    adapter = await models.find_visible(conn, data.model)
    if adapter is None or (adapter.kind == "adapter" and adapter.bu_id != tenant_id):
        raise NotFound(f"No model named '{data.model}' in the catalog", code="model_not_found")
    _check_adapter_fits(row, adapter)
    existing = await repository.adapter_on(conn, row.id, adapter.id)
    if existing is not None and existing.state in ("pending", "loaded"):
        raise Conflict(
            f"'{adapter.name}' is already {existing.state} on '{row.name}'",
            code="adapter_already_on_deployment",
        )
    await repository.attach_adapter(conn, row.id, adapter.id, tenant_id)
    await audit.record(
        conn,
        actor=principal.username,
        action="deployment.adapter_load",
        tenant_id=tenant_id,
        target=audit_target(row),
        changes={"adapter": [None, adapter.name]},
    )
    if outbox is not None:
        outbox.add(RECONCILE, row.id)
    attached = await repository.adapter_on(conn, row.id, adapter.id)
    assert attached is not None
    return attached.public()


def audit_target(row: DeploymentRow) -> str:
    kind = "shared-instance" if row.tenant_id is None else "deployment"
    return f"{kind}:{row.name}"


def _check_adapter_fits(row: DeploymentRow, adapter: CatalogModel) -> None:
    if adapter.kind != "adapter":
        raise ValidationFailed(
            f"'{adapter.name}' is a base model, not an adapter", code="not_an_adapter"
        )
    if adapter.base_model != row.model:
        raise Conflict(
            f"'{adapter.name}' is a LoRA adapter of '{adapter.base_model}', but '{row.name}'"
            f" serves '{row.model}'",
            code="adapter_base_mismatch",
            details={"adapter_base": adapter.base_model, "deployment_model": row.model},
        )
    if row.mode != "shared":
        raise Conflict(
            f"'{row.name}' is a dedicated instance; adapters are served by a shared"
            " (multi-LoRA) deployment",
            code="deployment_not_multi_lora",
        )
    if adapter.lora_rank is not None and adapter.lora_rank > row.max_lora_rank:
        raise ValidationFailed(
            f"'{adapter.name}' has LoRA rank {adapter.lora_rank}, over the limit of"
            f" '{row.name}' (max_lora_rank {row.max_lora_rank})",
            code="adapter_rank_too_high",
            details={"rank": adapter.lora_rank, "limit": row.max_lora_rank},
        )
    try:
        kind = location_kind(adapter.location)
        if row.runtime == "local":
            if kind != "local":
                raise LocationProblem(
                    f"the local runtime loads adapters from this machine; '{adapter.location}'"
                    " is not a local directory"
                )
            inspect_adapter(adapter.location)
        elif row.runtime == "kubernetes" and kind != "volume":
            raise LocationProblem(
                f"Kubernetes pods load adapters from the model volume; '{adapter.location}'"
                " is not on it"
            )
    except LocationProblem as exc:
        raise ValidationFailed(
            f"'{adapter.name}' cannot be loaded by '{row.name}': {exc}",
            code="adapter_location_unusable",
        ) from None
    if row.tenant_id is None and row.runtime == "kubernetes":
        _check_in_model_store(row, adapter)


def _check_in_model_store(row: DeploymentRow, adapter: CatalogModel) -> None:
    # A PVC belongs to one namespace: a shared instance in cove-shared mounts the model store
    # there, never the training volume in the adapter's BU namespace.
    claim = named_claim(adapter.location)
    if claim is None:
        return
    raise ValidationFailed(
        f"'{adapter.name}' is on the volume claim '{claim}' ({adapter.location}), which a"
        f" shared instance cannot mount: '{row.name}' runs in the namespace {SHARED_NAMESPACE}"
        " and a PersistentVolumeClaim belongs to one namespace. Copy the adapter's directory"
        " into the model store, register it as an adapter with that path (for example"
        f" adapters/<bu>/{adapter.name}) and put that one on the shared instance",
        code="adapter_not_in_model_store",
        details={"location": adapter.location, "claim": claim},
    )


async def detach_adapter(
    db: Database,
    principal: Principal,
    tenant_id: UUID,
    deployment_id: UUID,
    model_id: UUID,
    tasks: Celery | None = None,
) -> DeploymentAdapter:
    _bu_admin(principal, tenant_id)
    outbox = outbox_for(tasks)
    async with db.tenant(tenant_id) as conn:
        row = await repository.get(conn, tenant_id, deployment_id)
        if row is None:
            raise NotFound("No such deployment", code="deployment_not_found")
        detached = await detach(conn, principal, tenant_id, row, model_id, outbox)
    if outbox is not None:
        await send(outbox)
    return detached


async def detach(
    conn: psycopg.AsyncConnection[Any],
    principal: Principal,
    tenant_id: UUID,
    row: DeploymentRow,
    model_id: UUID,
    outbox: AfterCommit | None,
) -> DeploymentAdapter:
    """Take one of the BU's adapters off an instance."""
    attached = await repository.adapter_on(conn, row.id, model_id)
    # On a shared instance the other BUs' adapters are not this BU's to see or remove.
    if attached is None or attached.tenant_id != tenant_id:
        raise NotFound("That adapter is not on the deployment", code="adapter_not_found")
    if attached.state != "unloading":
        release = await repository.release_models(conn, tenant_id)
        roles = [role for role, m in release.items() if m == model_id]
        if roles and not await repository.adapter_loaded_elsewhere(
            conn, tenant_id, model_id, row.id
        ):
            raise Conflict(
                f"The release's {' and '.join(roles)} model is '{attached.model}', which only"
                f" '{row.name}' serves; change the release first",
                code="adapter_in_release",
            )
        await repository.request_unload(conn, row.id, model_id)
        await audit.record(
            conn,
            actor=principal.username,
            action="deployment.adapter_unload",
            tenant_id=tenant_id,
            target=audit_target(row),
            changes={"adapter": [attached.model, None]},
        )
        await repository.notify_routes(conn, tenant_id)
    if outbox is not None:
        outbox.add(RECONCILE, row.id)
    detached = await repository.adapter_on(conn, row.id, model_id)
    assert detached is not None
    return detached.public()


# ---- base instances shared across BUs ------------------------------------------------------
#
# The platform runs them: a platform admin creates and deletes them, and their GPUs count
# against no BU's quota. A BU granted the base model puts its own adapters on them; each
# adapter row belongs to its BU, so row-level security keeps every BU to its own adapters.


def _platform_admin(principal: Principal) -> None:
    if not principal.is_platform_admin:
        raise Forbidden(
            "Only a platform admin may run shared instances", code="platform_admin_required"
        )


def _shared_public(row: DeploymentRow, adapters: list[AdapterRow]) -> SharedInstance:
    return SharedInstance(
        id=row.id,
        name=row.name,
        model=row.model,
        served_model_name=row.served_model_name,
        runtime=row.runtime,
        status=row.status,
        status_detail=row.status_detail,
        desired_state=row.desired_state,
        max_lora_rank=row.max_lora_rank,
        gpus=row.gpus,
        adapters=[a.public() for a in adapters],
    )


async def list_shared_instances(db: Database, principal: Principal) -> list[Deployment]:
    _platform_admin(principal)
    async with db.platform() as conn:
        rows = await repository.list_shared(conn)
        adapters = await repository.adapters_of(conn, [r.id for r in rows])
    return [_public(row, adapters[row.id]) for row in rows]


async def _load_shared(conn: psycopg.AsyncConnection[Any], instance_id: UUID) -> Deployment:
    row = await repository.get_shared(conn, instance_id)
    if row is None:
        raise NotFound("No such shared instance", code="shared_instance_not_found")
    adapters = await repository.adapters_of(conn, [row.id])
    return _public(row, adapters[row.id])


async def get_shared_instance(db: Database, principal: Principal, instance_id: UUID) -> Deployment:
    _platform_admin(principal)
    async with db.platform() as conn:
        return await _load_shared(conn, instance_id)


async def create_shared_instance(
    db: Database,
    principal: Principal,
    data: SharedInstanceCreate,
    tasks: Celery | None = None,
) -> Deployment:
    _platform_admin(principal)
    fields = {
        k: getattr(data, k)
        for k in _INSTANCE_FIELDS
        if k in data.model_fields_set and getattr(data, k) is not None
    }
    spec = _spec_from(fields, data.runtime)
    served = data.served_model_name or data.model
    endpoint = str(data.endpoint_url).rstrip("/") if data.endpoint_url else None
    outbox = outbox_for(tasks)
    async with db.platform() as conn:
        # One creation at a time, so the name check below holds until the commit.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('cove.shared-instances'))")
        model = await models.find_visible(conn, data.model)
        if model is None or model.kind != "base":
            raise NotFound(
                f"No base model named '{data.model}' in the catalog", code="model_not_found"
            )
        _check_spec(
            runtime=data.runtime,
            mode="shared",
            name=data.name,
            bu_slug=PLATFORM_SLUG,
            model=model,
            served_model_name=served,
            spec=spec,
            endpoint_url=endpoint,
            shared_across_bus=True,
        )
        if await repository.shared_name_taken(conn, data.name):
            raise Conflict(
                f"A shared instance named '{data.name}' exists", code="shared_instance_exists"
            )
        if data.runtime == "kubernetes":
            endpoint = f"http://{data.name}.{SHARED_NAMESPACE}.svc:{VLLM_PORT}"
        elif data.runtime == "local":
            endpoint = UNASSIGNED_ENDPOINT
        assert endpoint is not None
        instance_id = await repository.insert(
            conn,
            {
                "tenant_id": None,
                "name": data.name,
                "model_id": model.id,
                "served_model_name": served,
                "endpoint_url": endpoint,
                "runtime": data.runtime,
                "mode": "shared",
                "spec": spec.model_dump(mode="json"),
                "gpus": spec.gpus,
                "max_lora_rank": _max_lora_rank(spec),
            },
        )
        await audit.record(
            conn,
            actor=principal.username,
            action="shared_instance.create",
            tenant_id=None,
            target=f"shared-instance:{data.name}",
            changes={
                "model": [None, data.model],
                "runtime": [None, data.runtime],
                "endpoint_url": [None, endpoint],
                "spec": [None, _summary(spec)],
                "gpus": [None, spec.gpus],
            },
        )
        await repository.notify_routes(conn, None)
        if outbox is not None:
            outbox.add(RECONCILE, instance_id)
        created = await _load_shared(conn, instance_id)
    if outbox is not None:
        await send(outbox)
    return created


async def update_shared_instance(
    db: Database,
    principal: Principal,
    instance_id: UUID,
    data: SharedInstanceUpdate,
    tasks: Celery | None = None,
) -> Deployment:
    """Scale or reshape a shared instance; the BUs' adapters on it must still fit."""
    _platform_admin(principal)
    outbox = outbox_for(tasks)
    async with db.platform() as conn:
        row = await repository.get_shared(conn, instance_id)
        if row is None:
            raise NotFound("No such shared instance", code="shared_instance_not_found")
        if row.desired_state != "running":
            raise Conflict("The shared instance is being deleted", code="deployment_deleting")
        current = InstanceSpec.model_validate(row.spec)
        spec, endpoint = await _changed_instance(conn, row, data, PLATFORM_SLUG)
        generation = await repository.update_desired(
            conn,
            row.id,
            data.generation,
            {
                "spec": spec.model_dump(mode="json"),
                "gpus": spec.gpus,
                "max_lora_rank": _max_lora_rank(spec),
                "endpoint_url": endpoint,
                "fallback_deployment_id": None,
            },
        )
        if generation is None:
            raise _generation_conflict(row, data.generation)
        changes = audit.diff(
            {"spec": _summary(current), "endpoint_url": row.endpoint_url},
            {"spec": _summary(spec), "endpoint_url": endpoint},
        )
        changes["generation"] = [row.generation, generation]
        await audit.record(
            conn,
            actor=principal.username,
            action="shared_instance.update",
            tenant_id=None,
            target=f"shared-instance:{row.name}",
            changes=changes,
        )
        await repository.notify_routes(conn, None)
        if outbox is not None:
            outbox.add(RECONCILE, row.id)
        updated = await _load_shared(conn, row.id)
    if outbox is not None:
        await send(outbox)
    return updated


async def delete_shared_instance(
    db: Database, principal: Principal, instance_id: UUID, tasks: Celery | None = None
) -> Deployment:
    """Refused while any BU keeps an adapter on it: unloading them would take models away
    from BUs (and their releases) that did not ask for it."""
    _platform_admin(principal)
    outbox = outbox_for(tasks)
    async with db.platform() as conn:
        row = await repository.get_shared(conn, instance_id)
        if row is None:
            raise NotFound("No such shared instance", code="shared_instance_not_found")
        if row.desired_state == "running":
            users = await repository.shared_users(conn, row.id)
            if users:
                listed = ", ".join(f"{adapter} ({bu})" for bu, adapter in users)
                raise Conflict(
                    f"BUs still have adapters on '{row.name}': {listed}; they remove them first",
                    code="shared_instance_in_use",
                    details={"adapters": [{"bu": bu, "adapter": a} for bu, a in users]},
                )
            await repository.mark_deleted(conn, row.id)
            await audit.record(
                conn,
                actor=principal.username,
                action="shared_instance.delete",
                tenant_id=None,
                target=f"shared-instance:{row.name}",
                changes={"desired_state": ["running", "deleted"]},
            )
            await repository.notify_routes(conn, None)
        if outbox is not None:
            outbox.add(RECONCILE, row.id)
        deleted = await _load_shared(conn, row.id)
    if outbox is not None:
        await send(outbox)
    return deleted


async def list_shared_for_bu(
    db: Database, principal: Principal, tenant_id: UUID
) -> list[SharedInstance]:
    """The shared instances of base models granted to the BU, with only its own adapters."""
    require_bu_visible(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        if await bu_repository.get(conn, tenant_id) is None:
            raise NotFound("No such business unit", code="bu_not_found")
        rows = await repository.shared_for_tenant(conn, tenant_id)
        adapters = await repository.adapters_of(conn, [r.id for r in rows], tenant_id=tenant_id)
    return [_shared_public(row, adapters[row.id]) for row in rows]


async def _shared_for_bu(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, instance_id: UUID
) -> DeploymentRow:
    row = await repository.get_shared_for_tenant(conn, tenant_id, instance_id)
    if row is None:
        raise NotFound("No such shared instance", code="shared_instance_not_found")
    return row


async def attach_shared_adapter(
    db: Database,
    principal: Principal,
    tenant_id: UUID,
    instance_id: UUID,
    data: AdapterAttach,
    tasks: Celery | None = None,
) -> DeploymentAdapter:
    _bu_admin(principal, tenant_id)
    outbox = outbox_for(tasks)
    async with db.tenant(tenant_id) as conn:
        row = await _shared_for_bu(conn, tenant_id, instance_id)
        attached = await attach(conn, principal, tenant_id, row, data, outbox)
    if outbox is not None:
        await send(outbox)
    return attached


async def detach_shared_adapter(
    db: Database,
    principal: Principal,
    tenant_id: UUID,
    instance_id: UUID,
    model_id: UUID,
    tasks: Celery | None = None,
) -> DeploymentAdapter:
    _bu_admin(principal, tenant_id)
    outbox = outbox_for(tasks)
    async with db.tenant(tenant_id) as conn:
        row = await _shared_for_bu(conn, tenant_id, instance_id)
        detached = await detach(conn, principal, tenant_id, row, model_id, outbox)
    if outbox is not None:
        await send(outbox)
    return detached
