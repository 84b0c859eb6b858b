"""Tabby's HTTP API, so Tabby's IDE plugins (which embed `tabby-agent`) work unmodified.

Tabby sends code segments rather than a prompt; the gateway lays them out in the model's
fill-in-the-middle format and answers in Tabby's shape. Tabby's `view`/`select`/`dismiss`
events become Cove's `completion.shown`/`accepted`/`rejected` (METRICS.md).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from cove.gateway.events import MAX_TEXT, UsageEvent
from cove.platform.core.errors import BadRequest

DEFAULT_MAX_TOKENS = 64
# One suggestion rarely spans a blank line; stopping there keeps suggestions short and fast.
DEFAULT_STOP = ["\n\n"]
TABBY_EVENT_TYPES = {
    "view": "completion.shown",
    "select": "completion.accepted",
    "dismiss": "completion.rejected",
}
# Fixed namespace so the same Tabby event always maps to the same Cove event id.
EVENT_NAMESPACE = uuid.UUID("4f0d2a0e-6f38-4c64-9a43-1c1f6c5f8d21")


def is_tabby_completion(body: dict[str, Any]) -> bool:
    return "segments" in body and "prompt" not in body


def tabby_segments(body: dict[str, Any]) -> tuple[str, str, str | None, str | None]:
    """(prefix, suffix, file path, language) of a Tabby completion request."""
    segments = body.get("segments")
    if not isinstance(segments, dict):
        raise BadRequest("'segments' must be an object", code="invalid_type", param="segments")
    prefix = segments.get("prefix")
    suffix = segments.get("suffix", "")
    if not isinstance(prefix, str):
        raise BadRequest("'segments.prefix' must be a string", code="invalid_type", param="prefix")
    if suffix is None:
        suffix = ""
    if not isinstance(suffix, str):
        raise BadRequest("'segments.suffix' must be a string", code="invalid_type", param="suffix")
    filepath = segments.get("filepath")
    if filepath is not None and not isinstance(filepath, str):
        raise BadRequest("'segments.filepath' must be a string", code="invalid_type")
    language = body.get("language")
    if language is not None and not isinstance(language, str):
        raise BadRequest("'language' must be a string", code="invalid_type", param="language")
    return prefix, suffix, filepath, language


def upstream_request(prompt: str, body: dict[str, Any], served_model_name: str) -> dict[str, Any]:
    request: dict[str, Any] = {
        "model": served_model_name,
        "prompt": prompt,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "stop": DEFAULT_STOP,
        "temperature": 0.1,
    }
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        request["temperature"] = max(0.0, min(float(temperature), 2.0))
    seed = body.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        request["seed"] = seed
    return request


def tabby_response(completion_id: str | None, text: str) -> dict[str, Any]:
    return {
        "id": completion_id or f"cmpl-{uuid.uuid4().hex}",
        "choices": [{"index": 0, "text": text}],
    }


def tabby_health(model: str | None, version: str) -> dict[str, Any]:
    return {
        "model": model,
        "chat_model": model,
        "device": "cuda",
        "arch": "cove",
        "cpu_info": "",
        "cpu_count": 0,
        "cuda_devices": [],
        "accelerators": [],
        "version": {
            "build_date": "",
            "build_timestamp": "",
            "git_sha": "",
            "git_describe": f"cove-{version}",
        },
    }


def is_tabby_event(body: dict[str, Any]) -> bool:
    return "events" not in body and body.get("type") in TABBY_EVENT_TYPES


def event_from_tabby(
    body: dict[str, Any],
    *,
    select_kind: str | None,
    tenant_id: uuid.UUID,
    user_id: str | None,
    now: datetime,
    ide: str | None,
) -> UsageEvent:
    completion_id = body.get("completion_id")
    if (
        not isinstance(completion_id, str)
        or not completion_id
        or len(completion_id) > MAX_TEXT
        or "\x00" in completion_id
    ):
        raise BadRequest("'completion_id' must be a string", code="invalid_type")
    choice = body.get("choice_index", 0)
    if isinstance(choice, bool) or not isinstance(choice, int) or choice < 0:
        raise BadRequest("'choice_index' must be a non-negative integer", code="invalid_type")
    event_type = TABBY_EVENT_TYPES[body["type"]]
    data: dict[str, Any] = {"choice_index": choice}
    if event_type == "completion.accepted":
        data["kind"] = "line" if select_kind == "line" else "full"
    elapsed = body.get("elapsed")
    if isinstance(elapsed, int) and not isinstance(elapsed, bool) and elapsed >= 0:
        data["elapsed_ms"] = elapsed
    # A re-rendered view of the same suggestion is the same event (METRICS.md).
    key = f"{tenant_id}/{completion_id}/{choice}/{event_type}/{data.get('kind', '')}"
    return UsageEvent(
        id=uuid.uuid5(EVENT_NAMESPACE, key),
        tenant_id=tenant_id,
        event_type=event_type,
        occurred_at=now,
        user_id=user_id,
        completion_id=completion_id,
        feature="completion",
        ide=ide,
        data=data,
    )
