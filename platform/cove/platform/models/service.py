"""Rules for the model catalog.

Platform admins register base models and grant them to BUs; a BU admin registers the BU's
adapters (LoRA versions) on a base model granted to the BU. Adapters are the BU's own: no other
BU can see, deploy or release them (row-level security plus the checks here).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
import psycopg

from cove.platform.core.db import Database
from cove.platform.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from cove.platform.models import repository
from cove.platform.models.locations import LocationProblem, inspect_adapter, inspect_base_model
from cove.platform.models.schemas import AdapterCreate, BaseModelCreate, CatalogModel, Grant
from cove.tenants import audit
from cove.tenants.bus import repository as bu_repository
from cove.tenants.principal import Principal, require_bu_admin, require_bu_visible

MAX_LINEAGE_BYTES = 16_384


def _platform_admin(principal: Principal) -> None:
    if not principal.is_platform_admin:
        raise Forbidden(
            "Only a platform admin may manage base models and grants",
            code="platform_admin_required",
        )


def _bu_admin(principal: Principal, tenant_id: UUID) -> None:
    require_bu_admin(principal, tenant_id, "manage the BU's models")


def _location_failed(field: str, problem: LocationProblem) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {problem}",
        code="model_location_invalid",
        param=field,
        details={"field": field, "reason": str(problem)},
    )


# ---- lookups other domains use (inside their own transaction) ------------------------------


async def find_visible(conn: psycopg.AsyncConnection[Any], name: str) -> CatalogModel | None:
    """The model named `name` as the transaction's BU sees it: a base model, or its own
    adapter (another BU's adapter is invisible, exactly as if it did not exist)."""
    return await repository.get_by_name(conn, name)


async def get_visible(conn: psycopg.AsyncConnection[Any], model_id: UUID) -> CatalogModel | None:
    return await repository.get(conn, model_id)


async def base_model_for_bu(
    conn: psycopg.AsyncConnection[Any], tenant_id: UUID, name: str
) -> CatalogModel:
    """The base model `name`, granted to the BU; 404 / 403 / 422 otherwise."""
    model = await repository.get_by_name(conn, name)
    if model is None:
        raise NotFound(f"No model named '{name}' in the catalog", code="model_not_found")
    if model.kind != "base":
        raise ValidationFailed(
            f"'{name}' is an adapter; deploy its base model '{model.base_model}' and load the"
            " adapter onto that deployment",
            code="not_a_base_model",
        )
    if not await repository.is_granted(conn, model.id, tenant_id):
        raise Forbidden(
            f"The base model '{name}' is not granted to this business unit; a platform admin"
            " grants it",
            code="model_not_granted",
        )
    return model


# ---- base models (platform admins) ------------------------------------------------------------


async def list_base_models(db: Database, principal: Principal) -> list[CatalogModel]:
    _platform_admin(principal)
    async with db.platform() as conn:
        return await repository.list_base_models(conn)


async def get_model(db: Database, principal: Principal, model_id: UUID) -> CatalogModel:
    _platform_admin(principal)
    async with db.platform() as conn:
        found = await repository.get(conn, model_id)
    if found is None:
        raise NotFound("No such model", code="model_not_found")
    return found


async def get_model_by_name(db: Database, principal: Principal, name: str) -> CatalogModel:
    _platform_admin(principal)
    async with db.platform() as conn:
        found = await repository.get_by_name(conn, name)
    if found is None:
        raise NotFound(f"No model named '{name}' in the catalog", code="model_not_found")
    return found


async def create_base_model(
    db: Database, principal: Principal, data: BaseModelCreate
) -> CatalogModel:
    _platform_admin(principal)
    try:
        facts = inspect_base_model(data.location)
    except LocationProblem as problem:
        raise _location_failed("location", problem) from None
    architecture = data.architecture
    context_length = data.context_length
    family = data.family
    fim = data.fim_tokens.model_dump() if data.fim_tokens else None
    if facts is not None:
        if architecture and facts.architecture and architecture != facts.architecture:
            raise ValidationFailed(
                f"architecture: '{architecture}' was given but {data.location}/config.json says"
                f" '{facts.architecture}'",
                code="architecture_mismatch",
            )
        architecture = architecture or facts.architecture
        context_length = context_length or facts.context_length
        family = family or facts.family
        fim = fim or facts.fim_tokens
    if context_length is None:
        raise ValidationFailed(
            "context_length: required when Cove cannot read the model's config.json",
            code="context_length_required",
            param="context_length",
        )
    values = {
        "name": data.name,
        "location": data.location,
        "family": family,
        "fim_tokens": fim,
        "context_length": context_length,
        "licence": data.licence,
        "architecture": architecture,
        "lora_rank": data.max_lora_rank,
    }
    async with db.platform() as conn:
        try:
            async with conn.transaction():
                model_id = await repository.insert_base_model(conn, values)
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"A model named '{data.name}' exists", code="model_exists") from None
        await audit.record(
            conn,
            actor=principal.username,
            action="model.create",
            tenant_id=None,
            target=f"model:{data.name}",
            changes={k: [None, v] for k, v in values.items() if v is not None},
        )
        created = await repository.get(conn, model_id)
    assert created is not None
    return created


async def delete_base_model(db: Database, principal: Principal, model_id: UUID) -> None:
    _platform_admin(principal)
    async with db.platform() as conn:
        model = await repository.get(conn, model_id)
        if model is None or model.kind != "base":
            raise NotFound("No such base model", code="model_not_found")
        refs = await repository.references(conn, model_id)
        if refs.total:
            raise Conflict(
                f"'{model.name}' is still used by {refs.deployments} deployment(s),"
                f" {refs.adapters} adapter(s) and {refs.releases} release(s)",
                code="model_in_use",
                details={"deployments": refs.deployments, "adapters": refs.adapters},
            )
        await repository.delete(conn, model_id)
        await audit.record(
            conn,
            actor=principal.username,
            action="model.delete",
            tenant_id=None,
            target=f"model:{model.name}",
        )


# ---- grants -------------------------------------------------------------------------------


async def list_grants(db: Database, principal: Principal, model_id: UUID) -> list[Grant]:
    _platform_admin(principal)
    async with db.platform() as conn:
        if await repository.get(conn, model_id) is None:
            raise NotFound("No such model", code="model_not_found")
        return await repository.list_grants(conn, model_id)


async def grant(db: Database, principal: Principal, model_id: UUID, tenant_id: UUID) -> Grant:
    _platform_admin(principal)
    async with db.platform() as conn:
        model = await repository.get(conn, model_id)
        if model is None or model.kind != "base":
            raise NotFound("No such base model", code="model_not_found")
        bu = await bu_repository.get(conn, tenant_id)
        if bu is None:
            raise NotFound("No such business unit", code="bu_not_found")
        if await repository.grant(conn, model_id, tenant_id):
            await audit.record(
                conn,
                actor=principal.username,
                action="model.grant",
                tenant_id=tenant_id,
                target=f"model:{model.name}",
            )
        found = await repository.get_grant(conn, model_id, tenant_id)
    assert found is not None
    return found


async def revoke(db: Database, principal: Principal, model_id: UUID, tenant_id: UUID) -> None:
    _platform_admin(principal)
    async with db.platform() as conn:
        model = await repository.get(conn, model_id)
        if model is None or model.kind != "base":
            raise NotFound("No such base model", code="model_not_found")
        deployments, adapters = await repository.grant_users(conn, model_id, tenant_id)
        if deployments or adapters:
            raise Conflict(
                f"The business unit still has {deployments} deployment(s) and {adapters}"
                f" adapter(s) of '{model.name}'; remove them before revoking the grant",
                code="grant_in_use",
                details={"deployments": deployments, "adapters": adapters},
            )
        if not await repository.revoke(conn, model_id, tenant_id):
            raise NotFound("The model is not granted to that business unit", code="not_granted")
        await audit.record(
            conn,
            actor=principal.username,
            action="model.revoke",
            tenant_id=tenant_id,
            target=f"model:{model.name}",
        )


# ---- a BU's view and its adapters ---------------------------------------------------------


async def list_for_bu(db: Database, principal: Principal, tenant_id: UUID) -> list[CatalogModel]:
    require_bu_visible(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        if await bu_repository.get(conn, tenant_id) is None:
            raise NotFound("No such business unit", code="bu_not_found")
        return await repository.list_for_tenant(conn, tenant_id)


async def get_adapter(
    db: Database, principal: Principal, tenant_id: UUID, model_id: UUID
) -> CatalogModel:
    require_bu_visible(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        found = await repository.get(conn, model_id)
    if found is None or found.kind != "adapter" or found.bu_id != tenant_id:
        raise NotFound("No such adapter", code="adapter_not_found")
    return found


async def create_adapter(
    db: Database, principal: Principal, tenant_id: UUID, data: AdapterCreate
) -> CatalogModel:
    _bu_admin(principal, tenant_id)
    try:
        lineage_bytes = len(orjson.dumps(data.lineage))
    except TypeError:  # orjson refuses integers beyond 64 bits, as JSON consumers commonly do
        raise ValidationFailed(
            "lineage: numbers must fit in 64 bits", code="invalid_value", param="lineage"
        ) from None
    if lineage_bytes > MAX_LINEAGE_BYTES:
        raise ValidationFailed(
            f"lineage: at most {MAX_LINEAGE_BYTES} bytes of JSON", code="lineage_too_large"
        )
    async with db.tenant(tenant_id) as conn:
        if await bu_repository.get(conn, tenant_id) is None:
            raise NotFound("No such business unit", code="bu_not_found")
        base = await base_model_for_bu(conn, tenant_id, data.base_model)
        try:
            facts = inspect_adapter(data.location)
        except LocationProblem as problem:
            raise _location_failed("location", problem) from None
        rank = data.rank
        if facts is not None:
            if rank is not None and rank != facts.rank:
                raise ValidationFailed(
                    f"rank: {rank} was given but {data.location}/adapter_config.json says"
                    f" r = {facts.rank}",
                    code="adapter_rank_mismatch",
                    param="rank",
                )
            rank = facts.rank
        if rank is None:
            raise ValidationFailed(
                "rank: required when the adapter is not in a local directory Cove can read",
                code="adapter_rank_required",
                param="rank",
            )
        if base.lora_rank is not None and rank > base.lora_rank:
            raise ValidationFailed(
                f"rank: the adapter's LoRA rank {rank} is over the limit of its base model"
                f" '{base.name}' ({base.lora_rank})",
                code="adapter_rank_too_high",
                param="rank",
                details={"rank": rank, "limit": base.lora_rank},
            )
        lineage = dict(data.lineage)
        if facts is not None and facts.target_modules:
            lineage.setdefault("target_modules", list(facts.target_modules))
        values = {
            "name": data.name,
            "base_model_id": base.id,
            "tenant_id": tenant_id,
            "location": data.location,
            "lora_rank": rank,
            "scores": data.scores,
            "lineage": lineage,
        }
        try:
            async with conn.transaction():
                model_id = await repository.insert_adapter(conn, values)
        except psycopg.errors.UniqueViolation:
            raise Conflict(
                f"A model named '{data.name}' exists; adapter names are unique across the"
                " catalog (prefix them with the BU)",
                code="model_exists",
            ) from None
        await audit.record(
            conn,
            actor=principal.username,
            action="adapter.create",
            tenant_id=tenant_id,
            target=f"model:{data.name}",
            changes={
                "base_model": [None, base.name],
                "location": [None, data.location],
                "rank": [None, rank],
            },
        )
        created = await repository.get(conn, model_id)
    assert created is not None
    return created


async def delete_adapter(
    db: Database, principal: Principal, tenant_id: UUID, model_id: UUID
) -> None:
    _bu_admin(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        found = await repository.get(conn, model_id)
        if found is None or found.kind != "adapter" or found.bu_id != tenant_id:
            raise NotFound("No such adapter", code="adapter_not_found")
        refs = await repository.references(conn, model_id)
        if refs.loaded_on or refs.releases:
            raise Conflict(
                f"'{found.name}' is on {refs.loaded_on} deployment(s) and in"
                f" {refs.releases} release(s); unload it and change the release first",
                code="adapter_in_use",
                details={"deployments": refs.loaded_on, "releases": refs.releases},
            )
        await repository.delete(conn, model_id)
        await audit.record(
            conn,
            actor=principal.username,
            action="adapter.delete",
            tenant_id=tenant_id,
            target=f"model:{found.name}",
        )
