"""An instance's load from vLLM's Prometheus metrics, as stored in `model_deployments.capacity`.

Only the series Cove reports are read: requests running and waiting (the queue), KV-cache use,
and the generation-token counter, whose rate between two scrapes is the tokens per second.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)"
)

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
# vLLM's V1 engine reports kv_cache_usage_perc (a fraction, despite the name); older engines
# reported gpu_cache_usage_perc.
KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
GENERATION_TOKENS = "vllm:generation_tokens_total"
PROMPT_TOKENS = "vllm:prompt_tokens_total"


def parse_samples(text: str) -> dict[str, float]:
    """Each metric's samples summed over their labels (one model and engine per instance
    normally; several engines add up)."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        try:
            value = float(match["value"])
        except ValueError:
            continue
        if math.isnan(value):
            continue
        totals[match["name"]] = totals.get(match["name"], 0.0) + value
    return totals


def capacity_from_metrics(
    text: str, previous: dict[str, Any] | None, now: datetime | None = None
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    samples = parse_samples(text)
    kv = next((samples[name] for name in KV_CACHE if name in samples), None)
    generated = samples.get(GENERATION_TOKENS)
    capacity: dict[str, Any] = {
        "requests_running": int(samples.get(RUNNING, 0)),
        "requests_waiting": int(samples.get(WAITING, 0)),
        "kv_cache_usage": round(kv, 4) if kv is not None else None,
        "generation_tokens_total": int(generated) if generated is not None else None,
        "prompt_tokens_total": int(samples[PROMPT_TOKENS]) if PROMPT_TOKENS in samples else None,
        "tokens_per_second": None,
        "scraped_at": now.isoformat(),
    }
    capacity["tokens_per_second"] = _rate(previous, generated, now)
    return capacity


def _rate(previous: dict[str, Any] | None, generated: float | None, now: datetime) -> float | None:
    if not previous or generated is None:
        return None
    before = previous.get("generation_tokens_total")
    at = previous.get("scraped_at")
    if not isinstance(before, int | float) or not isinstance(at, str):
        return None
    try:
        seconds = (now - datetime.fromisoformat(at)).total_seconds()
    except ValueError:
        return None
    # A restarted instance starts its counters again from zero.
    if seconds <= 0 or generated < before:
        return None
    return round((generated - before) / seconds, 3)
