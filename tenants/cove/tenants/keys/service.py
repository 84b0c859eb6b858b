"""Rules for API keys: issuing (shown once), listing, revoking, and authenticating."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from cove.platform.core.db import Database
from cove.platform.core.errors import BadRequest, Forbidden, NotFound, Unauthorized
from cove.tenants import audit
from cove.tenants.bus import repository as bu_repository
from cove.tenants.keys import repository
from cove.tenants.keys.repository import KeyRecord
from cove.tenants.keys.schemas import ApiKey, ApiKeyCreate, ApiKeyCreated
from cove.tenants.keys.secrets import issue_key, split_key, verify_secret
from cove.tenants.principal import Principal, Role, Scope, require_bu_admin


def principal_from_record(record: KeyRecord) -> Principal:
    roles: set[Role] = set()
    if record.is_platform_admin:
        roles.add(Role.PLATFORM_ADMIN)
    if record.role:
        roles.add(Role(record.role))
    elif record.user_id is None and record.tenant_id is not None:
        # A BU service key acts as a developer of its BU, limited by its scopes.
        roles.add(Role.DEVELOPER)
    return Principal(
        subject=record.subject or f"key:{record.key_id}",
        username=record.username or f"key:{record.key_id}",
        tenant_id=record.tenant_id,
        user_id=record.user_id,
        roles=frozenset(roles),
        scopes=frozenset(Scope(s) for s in record.scopes if s in Scope._value2member_map_),
        key_id=record.key_id,
    )


def check_usable(record: KeyRecord, now: datetime) -> None:
    """Raise the error a caller presenting this (correctly hashed) key must get."""
    if record.revoked_at is not None:
        raise Unauthorized("This API key has been revoked", code="key_revoked")
    if record.expires_at is not None and record.expires_at <= now:
        raise Unauthorized("This API key has expired", code="key_expired")
    if record.tenant_status == "suspended":
        raise Forbidden("This business unit is suspended", code="bu_suspended")
    if record.tenant_status == "deleting":
        raise Forbidden("This business unit is being deleted", code="bu_deleting")


async def authenticate(db: Database, pepper: bytes, plaintext: str) -> Principal:
    parts = split_key(plaintext)
    if parts is None:
        raise Unauthorized("Invalid API key", code="invalid_api_key")
    key_id, secret = parts
    async with db.platform() as conn:
        record = await repository.record_by_key_id(conn, key_id)
    if record is None or not verify_secret(pepper, record.salt, record.hash, secret):
        raise Unauthorized("Invalid API key", code="invalid_api_key")
    check_usable(record, datetime.now(UTC))
    return principal_from_record(record)


def _require_bu_admin(principal: Principal, tenant_id: UUID) -> None:
    require_bu_admin(principal, tenant_id, "manage this BU's keys")


async def create(
    db: Database, pepper: bytes, principal: Principal, tenant_id: UUID, data: ApiKeyCreate
) -> ApiKeyCreated:
    _require_bu_admin(principal, tenant_id)
    issued = issue_key(pepper)
    expires_at = (
        datetime.now(UTC) + timedelta(days=data.expires_in_days) if data.expires_in_days else None
    )
    async with db.tenant(tenant_id) as conn:
        await _ensure_bu(conn, tenant_id)
        if data.user_id is not None and not await repository.is_member(
            conn, tenant_id, data.user_id
        ):
            raise BadRequest(
                "user_id is not a member of this business unit",
                code="not_a_member",
                param="user_id",
            )
        key = await repository.insert(
            conn,
            {
                "tenant_id": tenant_id,
                "user_id": data.user_id,
                "name": data.name,
                "key_id": issued.key_id,
                "salt": issued.salt,
                "hash": issued.digest,
                "scopes": [s.value for s in dict.fromkeys(data.scopes)],
                "expires_at": expires_at,
            },
        )
        await audit.record(
            conn,
            actor=principal.username,
            action="apikey.create",
            tenant_id=tenant_id,
            target=f"apikey:{key.key_id}",
            changes={"name": [None, key.name], "scopes": [None, key.scopes]},
        )
    return ApiKeyCreated(**key.model_dump(), key=issued.plaintext)


async def list_keys(db: Database, principal: Principal, tenant_id: UUID) -> list[ApiKey]:
    _require_bu_admin(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        await _ensure_bu(conn, tenant_id)
        return await repository.list_for_tenant(conn, tenant_id)


async def revoke(db: Database, principal: Principal, tenant_id: UUID, key_uuid: UUID) -> ApiKey:
    _require_bu_admin(principal, tenant_id)
    async with db.tenant(tenant_id) as conn:
        key = await repository.revoke(conn, tenant_id, key_uuid)
        if key is None:
            raise NotFound("No such API key", code="key_not_found")
        await audit.record(
            conn,
            actor=principal.username,
            action="apikey.revoke",
            tenant_id=tenant_id,
            target=f"apikey:{key.key_id}",
            changes={"revoked_at": [None, key.revoked_at.isoformat() if key.revoked_at else None]},
        )
        # The gateways drop the key from their caches on this notification.
        await conn.execute("SELECT pg_notify('cove_auth', %s)", (f"key:{key.key_id}",))
    return key


async def _ensure_bu(conn: Any, tenant_id: UUID) -> None:
    if await bu_repository.get(conn, tenant_id) is None:
        raise NotFound("No such business unit", code="bu_not_found")
