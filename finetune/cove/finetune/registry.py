"""The adapter registry: every promoted adapter version with its lineage.

Locally the registry is a JSON file (`registry.json`); the control plane plugs its model
catalog in through the `on_register` callback, which runs before the file is written, so an
adapter the catalog refused is never listed locally either. Only a complete adapter that passed
its promotion gate is registered: nothing partial or unproven can reach serving.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cove.finetune.errors import FinetuneError, PromotionRejected

REGISTRY_FILE: Final = "registry.json"
_ADAPTER_FILES: Final = ("adapter_config.json", "adapter_model.safetensors")


@dataclass(frozen=True)
class AdapterRecord:
    """One registered adapter version, with everything needed to trust and reproduce it."""

    name: str
    version: int
    adapter_path: str
    adapter_sha256: str
    base_model: dict[str, Any]
    dataset: dict[str, Any]
    hyperparameters: dict[str, Any]
    scores: dict[str, Any]
    gate: dict[str, Any]
    created_at: str
    training: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


RegisterCallback = Callable[[AdapterRecord], None]


def adapter_digest(adapter_dir: Path) -> str:
    """sha256 over the adapter's config and weights: what serving will load."""
    digest = hashlib.sha256()
    for name in _ADAPTER_FILES:
        digest.update(name.encode())
        digest.update(b"\x00")
        digest.update((adapter_dir / name).read_bytes())
    return f"sha256:{digest.hexdigest()}"


def read_registry(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    value = json.loads(path.read_text(encoding="utf-8"))
    adapters = value.get("adapters") if isinstance(value, dict) else None
    if not isinstance(adapters, list):
        raise FinetuneError(f"{path} is not an adapter registry")
    return [entry for entry in adapters if isinstance(entry, dict)]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_file = path.with_name(f".{path.name}.lock")
    with lock_file.open("a") as handle:
        # Two runs finishing together must not both take the same version number.
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def register_adapter(
    registry_path: Path,
    *,
    name: str,
    adapter_dir: Path,
    base_model: dict[str, Any],
    dataset: dict[str, Any],
    hyperparameters: dict[str, Any],
    evaluation: dict[str, Any],
    training: dict[str, Any] | None = None,
    on_register: RegisterCallback | None = None,
) -> AdapterRecord:
    """Add the next version of adapter `name` to the registry and return its record.

    Refuses an incomplete adapter directory and an evaluation whose gate did not pass.
    `on_register` (the model catalog's write) runs first; if it raises, nothing is recorded.
    """
    adapter_dir = Path(adapter_dir).resolve()
    missing = [part for part in _ADAPTER_FILES if not (adapter_dir / part).is_file()]
    if missing:
        raise FinetuneError(
            f"{adapter_dir} is not a complete adapter (missing {', '.join(missing)}); "
            "it cannot be registered"
        )
    gate = evaluation.get("gate") or {}
    if gate.get("passed") is not True:
        reasons = "; ".join(gate.get("reasons") or ["no passed promotion gate in the evaluation"])
        raise PromotionRejected(f"adapter {name} was not promoted: {reasons}")
    with _locked(registry_path):
        entries = read_registry(registry_path)
        version = 1 + max(
            (int(entry.get("version", 0)) for entry in entries if entry.get("name") == name),
            default=0,
        )
        record = AdapterRecord(
            name=name,
            version=version,
            adapter_path=str(adapter_dir),
            adapter_sha256=adapter_digest(adapter_dir),
            base_model=base_model,
            dataset=dataset,
            hyperparameters=hyperparameters,
            scores={
                "base": evaluation.get("base"),
                "adapter": evaluation.get("adapter_scores"),
                "delta": evaluation.get("delta"),
                "examples": evaluation.get("examples"),
                "sdk_examples": evaluation.get("sdk_examples"),
            },
            gate=gate,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            training=training or {},
        )
        if on_register is not None:
            on_register(record)
        entries.append(record.to_json())
        temporary = registry_path.with_name(f".{registry_path.name}.{uuid.uuid4().hex}")
        temporary.write_text(json.dumps({"adapters": entries}, indent=2) + "\n", encoding="utf-8")
        temporary.replace(registry_path)
    return record
