"""Demo data for the local stack: a platform admin, a demo BU with a member, its model
deployment (run by the local runtime driver), and API keys. Idempotent: running it again keeps
what exists."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from cove.platform.core.db import Database
from cove.platform.core.settings import CoveSettings, InsecureSettingsError
from cove.platform.deployments import repository as deployment_repository
from cove.platform.deployments.k8s.spec import VllmOptions
from cove.platform.deployments.schemas import InstanceSpec
from cove.platform.models import repository as model_repository
from cove.tenants import audit
from cove.tenants.bus import repository as bu_repository
from cove.tenants.keys import repository as key_repository
from cove.tenants.keys.secrets import issue_key, split_key, verify_secret
from cove.tenants.principal import Scope

DEMO_BU = "demo"
DEMO_DEPLOYMENT = "default"
# The demo instance: one vLLM CPU process, multi-LoRA so the BU's adapters can be hot-loaded.
DEMO_MAX_MODEL_LEN = 1024
DEMO_MAX_LORA_RANK = 8


@dataclass(frozen=True)
class SeedResult:
    bu_id: UUID
    demo_key: str
    demo_key_is_new: bool
    admin_key: str
    model_name: str
    deployment_id: UUID


async def _key_still_valid(conn: Any, pepper: bytes, plaintext: str) -> bool:
    parts = split_key(plaintext)
    if parts is None:
        return False
    record = await key_repository.record_by_key_id(conn, parts[0])
    return (
        record is not None
        and record.revoked_at is None
        and verify_secret(pepper, record.salt, record.hash, parts[1])
    )


def _read_secret_file(path: Path) -> str | None:
    return path.read_text().strip() if path.exists() else None


def _write_secret_file(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")


async def seed_demo(
    settings: CoveSettings,
    *,
    state_dir: Path,
    model_name: str,
    model_location: str,
    fim_tokens: dict[str, str] | None,
    context_length: int | None,
) -> SeedResult:
    if settings.is_production:
        # A platform-admin key written to a file and a demo user are for a laptop only.
        raise InsecureSettingsError(
            "The local dev login (a demo user, keys written to disk) is disabled when "
            "COVE_ENV=production"
        )
    pepper = settings.secret_key.get_secret_value().encode()
    db = Database(settings, min_size=0)
    await db.open()
    try:
        async with db.platform() as conn:
            bu = await bu_repository.get_by_slug(conn, DEMO_BU)
            if bu is None:
                bu = await bu_repository.insert(
                    conn, {"slug": DEMO_BU, "name": "Demo business unit", "gpu_quota": 0}
                )
                await audit.record(
                    conn,
                    actor="cove-up",
                    action="bu.create",
                    tenant_id=bu.id,
                    target=f"bu:{DEMO_BU}",
                )
            admin_id = await key_repository.ensure_user(
                conn, subject="local:admin", username="admin", is_platform_admin=True
            )
            demo_user = await key_repository.ensure_user(
                conn, subject="local:demo", username="demo", email="demo@cove.local"
            )
            await key_repository.set_membership(conn, bu.id, demo_user, "bu-admin")
            model_id = await model_repository.upsert_base_model(
                conn,
                name=model_name,
                location=model_location,
                family="llama",
                fim_tokens=fim_tokens,
                context_length=context_length,
            )
            spec = InstanceSpec(
                gpus_per_replica=0,
                vllm=VllmOptions(
                    max_model_len=min(DEMO_MAX_MODEL_LEN, context_length or DEMO_MAX_MODEL_LEN),
                    max_lora_rank=DEMO_MAX_LORA_RANK,
                ),
            )
            deployment_id = await deployment_repository.upsert_local(
                conn,
                {
                    "tenant_id": bu.id,
                    "name": DEMO_DEPLOYMENT,
                    "model_id": model_id,
                    "served_model_name": model_name,
                    # The worker's local runtime assigns the address when it starts vLLM.
                    "endpoint_url": "http://127.0.0.1:0",
                    "mode": "shared",
                    "spec": spec.model_dump(mode="json"),
                    "max_lora_rank": DEMO_MAX_LORA_RANK,
                },
            )
            await conn.execute("SELECT pg_notify('cove_routes', %s)", (str(bu.id),))

            admin_file = state_dir / "admin-api-key"
            admin_key = _read_secret_file(admin_file)
            if admin_key is None or not await _key_still_valid(conn, pepper, admin_key):
                issued = issue_key(pepper)
                await key_repository.insert(
                    conn,
                    {
                        "tenant_id": None,
                        "user_id": admin_id,
                        "name": "local platform admin",
                        "key_id": issued.key_id,
                        "salt": issued.salt,
                        "hash": issued.digest,
                        "scopes": [Scope.ADMIN_READ.value, Scope.ADMIN_WRITE.value],
                        "expires_at": None,
                    },
                )
                admin_key = issued.plaintext
                _write_secret_file(admin_file, admin_key)

            demo_file = state_dir / "demo-api-key"
            demo_key = _read_secret_file(demo_file)
            is_new = False
            if demo_key is None or not await _key_still_valid(conn, pepper, demo_key):
                issued = issue_key(pepper)
                await key_repository.insert(
                    conn,
                    {
                        "tenant_id": bu.id,
                        "user_id": demo_user,
                        "name": "demo developer key",
                        "key_id": issued.key_id,
                        "salt": issued.salt,
                        "hash": issued.digest,
                        "scopes": [
                            Scope.COMPLETIONS.value,
                            Scope.EVENTS.value,
                            Scope.ADMIN_READ.value,
                            Scope.ADMIN_WRITE.value,
                        ],
                        "expires_at": None,
                    },
                )
                demo_key, is_new = issued.plaintext, True
                _write_secret_file(demo_file, demo_key)
    finally:
        await db.close()
    return SeedResult(bu.id, demo_key, is_new, admin_key, model_name, deployment_id)
