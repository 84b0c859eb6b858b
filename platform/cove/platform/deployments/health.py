"""Probing a model instance: is its OpenAI-compatible server up and serving the model?"""

from __future__ import annotations

from dataclasses import dataclass

import httpx


@dataclass(frozen=True, slots=True)
class Probe:
    status: str
    detail: str | None


def probe_instance(client: httpx.Client, endpoint_url: str, served_model_name: str) -> Probe:
    base = endpoint_url.rstrip("/")
    try:
        health = client.get(f"{base}/health")
        if health.status_code != 200:
            return Probe("unavailable", f"/health answered {health.status_code}")
        models = client.get(f"{base}/v1/models")
        models.raise_for_status()
        served = {m.get("id") for m in models.json().get("data", [])}
    except httpx.HTTPError as exc:
        return Probe("unavailable", f"{type(exc).__name__}: {exc}"[:500])
    except ValueError as exc:
        return Probe("degraded", f"/v1/models is not JSON: {exc}"[:500])
    if served_model_name not in served:
        return Probe("degraded", f"instance is up but does not serve '{served_model_name}'")
    return Probe("ready", None)
