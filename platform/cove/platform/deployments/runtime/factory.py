"""Building the driver for each runtime from the worker's settings."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from cove.platform.deployments.runtime.base import RuntimeDriver, RuntimeFailure
from cove.platform.deployments.runtime.external import ExternalDriver
from cove.platform.deployments.runtime.local import LocalDriver
from cove.platform.deployments.runtime.vllm_api import VllmApi
from cove.platform.deployments.settings import RuntimeSettings


class Drivers:
    """One driver per runtime, each built the first time a deployment needs it (the
    Kubernetes client is only loaded by workers that reconcile Kubernetes deployments)."""

    def __init__(self, factories: dict[str, Callable[[], RuntimeDriver]]) -> None:
        self._factories = factories
        self._built: dict[str, RuntimeDriver] = {}

    def get(self, runtime: str) -> RuntimeDriver:
        if runtime not in self._built:
            factory = self._factories.get(runtime)
            if factory is None:
                raise RuntimeFailure(f"this worker has no driver for the '{runtime}' runtime")
            self._built[runtime] = factory()
        return self._built[runtime]


def build_drivers(settings: RuntimeSettings, client: httpx.Client) -> Drivers:
    api = VllmApi(client)

    def local() -> RuntimeDriver:
        return LocalDriver(
            settings.runtime_state_dir.resolve(),
            settings.vllm_python_path,
            api,
            host=settings.vllm_host,
            start_timeout=settings.vllm_start_timeout,
            cpu_kvcache_gib=settings.vllm_cpu_kvcache_gib,
        )

    def kubernetes() -> RuntimeDriver:
        from cove.platform.deployments.runtime.kubernetes import kubernetes_driver

        return kubernetes_driver(settings, api)

    return Drivers(
        {"external": lambda: ExternalDriver(api), "local": local, "kubernetes": kubernetes}
    )
