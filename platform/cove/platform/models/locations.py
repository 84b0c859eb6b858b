"""Where models live, and what Cove can learn from the files before anything serves them.

A location is one of:

- an absolute directory on the machine (the local runtime; Cove reads and checks it),
- `s3://bucket/prefix`, `pvc://claim/path` or a path relative to the model volume (Kubernetes;
  checked for form only, since the files are not reachable from the API).

A PEFT LoRA adapter directory holds `adapter_config.json` (whose `r` is the rank) and its
weights; a base model directory holds `config.json`, weights and a tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cove.finetune.tinymodel import is_model_dir, read_model_metadata
from cove.platform.deployments.k8s.spec import DEFAULT_MODEL_CLAIM, S3Location, parse_location

LocationKind = Literal["local", "volume", "s3"]
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


class LocationProblem(ValueError):
    """The location cannot hold what it should; the message says why."""


@dataclass(frozen=True, slots=True)
class BaseModelFacts:
    """What a local model directory says about itself (None: it does not say)."""

    architecture: str | None
    context_length: int | None
    family: str | None
    fim_tokens: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class AdapterFacts:
    rank: int
    peft_type: str
    target_modules: tuple[str, ...]
    base_model_name_or_path: str | None


def location_kind(location: str) -> LocationKind:
    """Which kind of location this is; raises `LocationProblem` for one Cove cannot use."""
    if location.startswith("/"):
        if "\x00" in location or any(part == ".." for part in Path(location).parts):
            raise LocationProblem(f"{location!r}: give a clean absolute path (no '..')")
        return "local"
    try:
        parsed = parse_location(location, DEFAULT_MODEL_CLAIM)
    except ValueError as exc:
        raise LocationProblem(
            f"{exc}; or give an absolute directory for the local runtime"
        ) from None
    return "s3" if isinstance(parsed, S3Location) else "volume"


def inspect_base_model(location: str) -> BaseModelFacts | None:
    """Facts read from a local model directory; None for a remote location (checked for
    form only). Raises `LocationProblem` when a local directory is missing or unusable."""
    if location_kind(location) != "local":
        return None
    try:
        return _inspect_base_model(location)
    except OSError as exc:
        raise LocationProblem(f"{location} cannot be read: {exc.strerror or exc}") from None


def _inspect_base_model(location: str) -> BaseModelFacts:
    problem = is_model_dir(Path(location))
    if problem is not None:
        raise LocationProblem(problem)
    config = _json_object(Path(location) / "config.json")
    architectures = config.get("architectures") if config else None
    architecture = (
        str(architectures[0]) if isinstance(architectures, list) and architectures else None
    )
    try:
        metadata = read_model_metadata(Path(location))
    except (OSError, ValueError) as exc:
        raise LocationProblem(f"{location}: {exc}") from None
    context = metadata.get("context_length")
    fim = metadata.get("fim_tokens")
    family = metadata.get("family")
    return BaseModelFacts(
        architecture=architecture,
        context_length=context if isinstance(context, int) else None,
        family=family if isinstance(family, str) else None,
        fim_tokens=fim if isinstance(fim, dict) else None,
    )


def inspect_adapter(location: str) -> AdapterFacts | None:
    """The rank and targets of a local PEFT LoRA adapter; None for a volume location.

    Raises `LocationProblem` for a missing or malformed local adapter, and for S3 (adapters
    are hot-loaded into running instances, which read only mounted files)."""
    kind = location_kind(location)
    if kind == "s3":
        raise LocationProblem(
            f"{location!r}: adapters are hot-loaded from files the instance can read; stage"
            " it on the model volume (a path or pvc://claim/path) instead of S3"
        )
    if kind == "volume":
        return None
    try:
        return _inspect_adapter(location)
    except OSError as exc:
        raise LocationProblem(f"{location} cannot be read: {exc.strerror or exc}") from None


def _inspect_adapter(location: str) -> AdapterFacts:
    directory = Path(location)
    if not directory.is_dir():
        raise LocationProblem(f"{location} does not exist or is not a directory")
    config_file = directory / ADAPTER_CONFIG
    if not config_file.is_file():
        raise LocationProblem(
            f"{location} has no {ADAPTER_CONFIG}: it is not a PEFT adapter directory"
        )
    config = _json_object(config_file)
    if config is None:
        raise LocationProblem(f"{config_file} is not a JSON object")
    if not any((directory / name).is_file() for name in ADAPTER_WEIGHTS):
        raise LocationProblem(f"{location} has no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
    peft_type = str(config.get("peft_type") or "")
    if peft_type.upper() != "LORA":
        raise LocationProblem(f"{config_file}: peft_type is {peft_type!r}; only LoRA is served")
    rank = config.get("r")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise LocationProblem(f"{config_file}: 'r' (the LoRA rank) must be a positive integer")
    targets = config.get("target_modules") or []
    if isinstance(targets, str):
        targets = [targets]
    base = config.get("base_model_name_or_path")
    return AdapterFacts(
        rank=rank,
        peft_type="LORA",
        target_modules=tuple(sorted(str(t) for t in targets)),
        base_model_name_or_path=str(base) if base else None,
    )


def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
