"""Staged deletion of a business unit: export, then a grace period, then the purge.

- Export: an archive (`.tar.gz`) of everything the BU owns — its record, members, and every
  row of every tenant-owned table (read from the catalog, so new tables are included), with
  secret columns left out. Configuration goes under `config/`, usage events and rollups under
  `metrics/`, one JSON object per line. Read in one BU-scoped, read-only snapshot, so every
  file shows the same moment.
- Deletion request and restore: `cove.tenants.bus.service` (the BU's state).
- Purge, once the grace period is over (a Celery task): first everything of the BU that runs
  is stopped (instances deleted by the reconciler, adapters unloaded from shared instances,
  fine-tuning jobs cancelled); when nothing runs, in one transaction holding the BU's row,
  its directory of datasets, checkpoints and adapters is removed, every row of every
  tenant-owned table deleted, then the BU itself and the users who belonged to nothing else.
  The transaction checks that no row of the BU is left before it commits.

The audit log is kept whole: its entries of the BU (the export, the deletion request and the
purge among them) keep the BU's id, and their target its slug, as evidence.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import tarfile
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, Literal
from uuid import UUID

import orjson
import psycopg
from celery import Celery

from cove.platform.core.db import Database, SyncDatabase
from cove.platform.core.errors import CoveError
from cove.platform.lifecycle import repository
from cove.tenants import audit
from cove.tenants.bus import service as bus_service
from cove.tenants.principal import Principal

log = logging.getLogger(__name__)

PURGE = "bu.purge"
PURGE_DUE = "bu.purge_due"
PURGE_ACTOR = "system:bu-purge"
EXPORT_FORMAT = 1
# Evidence that outlives the BU.
KEPT_TABLES = frozenset({"audit_log"})
# Columns never exported (API keys' salted hashes).
SECRET_COLUMNS = frozenset({"salt", "hash"})
_METRIC_PREFIXES = ("usage_events", "analytics_", "prompt_log")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)


def _jsonl(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row, default=_json_default, option=orjson.OPT_APPEND_NEWLINE)


def _section(table: str) -> str:
    return "metrics" if table.startswith(_METRIC_PREFIXES) else "config"


@dataclass(frozen=True, slots=True)
class Export:
    path: Path
    filename: str
    sha256: str
    size: int
    rows: dict[str, int]


async def export(db: Database, principal: Principal, bu_id: UUID, workdir: Path) -> Export:
    """Write the BU's archive under `workdir` and record the export (audited)."""
    bus_service.require_exporter(principal, bu_id)
    bu = await bus_service.get(db, principal, bu_id)
    now = datetime.now(UTC)
    root = f"cove-bu-{bu.slug}-{now.strftime('%Y%m%dT%H%M%SZ')}"
    stage = workdir / root
    (stage / "config").mkdir(parents=True)
    (stage / "metrics").mkdir()
    rows: dict[str, int] = {}
    files: dict[str, str] = {}
    async with db.tenant(bu_id, snapshot=True) as conn:
        for table in await repository.tenant_tables(conn):
            names = [c for c in await repository.columns(conn, table) if c not in SECRET_COLUMNS]
            relative = f"{_section(table)}/{table}.jsonl"
            rows[table] = await _write_rows(
                stage / relative, repository.rows_of(conn, table, names, bu_id)
            )
            files[table] = relative
        people = await repository.members(conn, bu_id)
    with (stage / "config" / "members.jsonl").open("wb") as out:
        for person in people:
            out.write(_jsonl(person))
    rows["members"] = len(people)
    files["members"] = "config/members.jsonl"
    (stage / "business_unit.json").write_bytes(
        orjson.dumps(bu.model_dump(mode="json"), option=orjson.OPT_INDENT_2)
    )
    manifest = {
        "format": EXPORT_FORMAT,
        "business_unit": {"id": str(bu.id), "slug": bu.slug, "name": bu.name},
        "exported_at": now.isoformat(),
        "exported_by": principal.username,
        "files": files,
        "rows": rows,
        "left_out": {
            "columns": sorted(SECRET_COLUMNS),
            "files": "datasets, checkpoints and adapter weights stay on their volume",
        },
    }
    (stage / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    archive = workdir / f"{root}.tar.gz"
    digest, size = await asyncio.to_thread(_pack, stage, archive)
    shutil.rmtree(stage, ignore_errors=True)
    async with db.platform() as conn:
        await bus_service.record_export(
            conn,
            principal,
            bu,
            {"file": archive.name, "sha256": digest, "bytes": size, "rows": rows},
        )
    return Export(archive, archive.name, digest, size, rows)


async def _write_rows(path: Path, rows: AsyncIterator[dict[str, Any]]) -> int:
    """Rows as JSON lines; the file is written off the event loop, a megabyte at a time."""
    count = 0
    chunk = bytearray()
    with path.open("wb") as out:
        async for row in rows:
            chunk += _jsonl(row)
            count += 1
            if len(chunk) >= 1 << 20:
                await asyncio.to_thread(out.write, bytes(chunk))
                chunk.clear()
        await asyncio.to_thread(out.write, bytes(chunk))
    return count


def _pack(stage: Path, archive: Path) -> tuple[str, int]:
    # Level 6: most of level 9's size at a fraction of its time on JSON lines.
    with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
        tar.add(stage, arcname=stage.name)
    digest = hashlib.sha256()
    with archive.open("rb") as handle:
        _feed(digest, handle)
    return digest.hexdigest(), archive.stat().st_size


def _feed(digest: Any, handle: BinaryIO) -> None:
    while chunk := handle.read(1 << 20):
        digest.update(chunk)


def send_purge(tasks: Celery, bu_id: UUID) -> bool:
    """Ask a worker to purge the BU now (its deletion is committed). When the broker does not
    answer the deletion stands all the same: the beat's sweep purges the BU on its next run."""
    try:
        tasks.send_task(PURGE, args=[str(bu_id)], retry=False, ignore_result=True)
    except Exception:
        log.warning("purge task not sent; the sweep will purge the BU", extra={"bu": str(bu_id)})
        return False
    return True


# ---- the purge (worker side) --------------------------------------------------------------

PurgeAction = Literal["missing", "not_deleting", "not_due", "waiting", "purged"]


class PurgeIncomplete(CoveError):
    code = "purge_incomplete"


@dataclass(frozen=True, slots=True)
class PurgeOutcome:
    tenant_id: str
    action: PurgeAction
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def purge(
    db: SyncDatabase,
    data_dir: Path,
    tenant_id: UUID,
    send_reconcile: Callable[[UUID], object],
) -> PurgeOutcome:
    """One step of a BU's purge; safe to run again at any time (the task repeats it while
    the BU's instances and jobs stop). `data_dir` holds one directory per BU (fine-tuning
    datasets, checkpoints and adapters)."""
    with db.platform() as conn:
        bu = repository.lock_doomed(conn, tenant_id)
        if bu is None:
            return PurgeOutcome(str(tenant_id), "missing")
        if bu.status != "deleting" or bu.purge_after is None:
            return PurgeOutcome(str(tenant_id), "not_deleting")
        if bu.purge_after > datetime.now(UTC):
            return PurgeOutcome(
                str(tenant_id), "not_due", {"purge_after": bu.purge_after.isoformat()}
            )
        running = repository.stop_running(conn, tenant_id, bu.deletion_requested_by or "?")
    if not running.idle:
        # The reconciler deletes the instances (and unloads adapters); each row goes with them.
        for deployment_id in running.deployments:
            send_reconcile(deployment_id)
        return PurgeOutcome(
            str(tenant_id),
            "waiting",
            {"deployments": len(running.deployments), "finetune_jobs": running.jobs},
        )
    with db.platform() as conn:
        bu = repository.lock_doomed(conn, tenant_id)
        if bu is None or bu.status != "deleting":
            return PurgeOutcome(str(tenant_id), "missing" if bu is None else "not_deleting")
        summary = _purge_locked(conn, bu, data_dir)
        summary["requested_by"] = bu.deletion_requested_by
        audit.record_sync(
            conn,
            actor=PURGE_ACTOR,
            action="bu.purge",
            tenant_id=tenant_id,
            target=f"bu:{bu.slug}",
            changes=summary,
        )
        conn.execute("SELECT pg_notify('cove_auth', %s)", (f"bu:{tenant_id}",))
    log.info("business unit purged", extra={"bu": bu.slug, "rows": summary["rows"]})
    return PurgeOutcome(str(tenant_id), "purged", summary)


def _purge_locked(
    conn: psycopg.Connection[Any], bu: repository.Doomed, data_dir: Path
) -> dict[str, Any]:
    tenant_id = bu.id
    bu_dir = data_dir.resolve() / str(tenant_id)
    managed = data_dir.resolve()
    left = [
        location
        for location in repository.local_adapter_locations(conn, tenant_id)
        if not Path(location).is_relative_to(managed)
    ]
    files = sum(1 for p in bu_dir.rglob("*") if p.is_file()) if bu_dir.is_dir() else 0
    # Files first: if the rows fail to go, the next run removes nothing twice and retries.
    if bu_dir.exists():
        shutil.rmtree(bu_dir)
    tables = [t for t in repository.tenant_tables_sync(conn) if t not in KEPT_TABLES]
    members = repository.member_ids(conn, tenant_id)
    deleted = _delete_in_dependency_order(conn, tables, tenant_id)
    deleted["tenants"] = repository.delete_tenant(conn, tenant_id)
    deleted["users"] = repository.delete_orphan_users(conn, members)
    remaining = {t: n for t in tables if (n := repository.count_rows(conn, t, tenant_id))}
    if remaining:
        raise PurgeIncomplete(
            "Rows of the business unit remain after the purge", details={"rows": remaining}
        )
    return {
        "slug": bu.slug,
        "name": bu.name,
        "rows": {t: n for t, n in deleted.items() if n},
        "files_removed": files,
        "directory": str(bu_dir),
        # Adapters registered at a location Cove does not manage: listed for the operator.
        "locations_left": left,
    }


def _delete_in_dependency_order(
    conn: psycopg.Connection[Any], tables: list[str], tenant_id: UUID
) -> dict[str, int]:
    """Delete the BU's rows table by table; a table another one still references (a foreign
    key without cascade) is tried again after the others."""
    deleted: dict[str, int] = {}
    pending = list(tables)
    while pending:
        blocked: list[str] = []
        for table in pending:
            try:
                with conn.transaction():
                    deleted[table] = repository.delete_rows(conn, table, tenant_id)
            except psycopg.errors.ForeignKeyViolation:
                blocked.append(table)
        if len(blocked) == len(pending):
            raise PurgeIncomplete(
                "Rows of the business unit are referenced from outside it",
                details={"tables": blocked},
            )
        pending = blocked
    return deleted
