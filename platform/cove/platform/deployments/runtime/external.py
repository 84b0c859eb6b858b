"""The external runtime: an OpenAI-compatible server someone else runs. Cove only watches it
and, for a multi-LoRA (shared) instance, loads the BU's adapters into it."""

from __future__ import annotations

import contextlib

from cove.platform.deployments.runtime.base import AdapterFailure, AdapterRef, Observed, Target
from cove.platform.deployments.runtime.vllm_api import VllmApi


class ExternalDriver:
    def __init__(self, api: VllmApi) -> None:
        self._api = api

    def ensure(self, target: Target) -> Observed:
        return self.status(target)

    def status(self, target: Target) -> Observed:
        url = target.endpoint_url
        if not self._api.healthy(url):
            return Observed("failed", url, 1, 0, f"{url}/health does not answer")
        served = self._api.served(url)
        if served is None or target.served_model_name not in served:
            return Observed(
                "degraded",
                url,
                1,
                0,
                f"the instance is up but does not serve '{target.served_model_name}'",
                served=served,
            )
        return Observed("ready", url, 1, 1, None, served=served)

    def stop(self, target: Target) -> None:
        # Not Cove's instance to stop; only what Cove loaded into it is taken back.
        for adapter in target.adapters:
            # A vanished instance has nothing loaded any more.
            with contextlib.suppress(AdapterFailure):
                self._api.unload_adapter(target.endpoint_url, adapter.name)

    def load_adapter(self, target: Target, adapter: AdapterRef) -> None:
        self._api.load_adapter(target.endpoint_url, adapter.name, adapter.location)

    def unload_adapter(self, target: Target, name: str) -> None:
        self._api.unload_adapter(target.endpoint_url, name)
