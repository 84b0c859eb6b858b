"""The interface every runtime driver implements, and the values crossing it.

A driver turns one deployment's desired state into a running instance and reports what it
sees. It is called only by the reconciler, synchronously, and must be idempotent: `ensure`
with an unchanged target changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from uuid import UUID

from cove.platform.deployments.schemas import InstanceSpec

# absent: nothing runs; starting: launched, not answering yet; ready: serves the base model;
# degraded: answers but not fully (some replicas, or not the model); failed: cannot run as
# specified (it exited, or its configuration is refused) - the detail says why.
Phase = Literal["absent", "starting", "ready", "degraded", "failed"]


class RuntimeFailure(Exception):
    """A driver could not do what was asked; the message is shown to the BU admin."""


class AdapterFailure(RuntimeFailure):
    """The instance refused to load or unload an adapter."""


@dataclass(frozen=True, slots=True)
class AdapterRef:
    name: str
    location: str


@dataclass(frozen=True, slots=True)
class Target:
    """The desired instance: one deployment as the reconciler read it."""

    deployment_id: UUID
    # None: a base instance the platform shares across BUs (bu_slug is then the platform's).
    tenant_id: UUID | None
    bu_slug: str
    gpu_quota: int
    name: str
    mode: str
    model: str
    model_location: str
    context_length: int | None
    served_model_name: str
    endpoint_url: str
    generation: int
    spec: InstanceSpec
    max_lora_rank: int
    # Adapters that should be on the instance (pending or loaded), for drivers that record
    # them in the runtime (the Kubernetes annotation) as well as hot-loading them.
    adapters: tuple[AdapterRef, ...] = ()

    @property
    def shared_across_bus(self) -> bool:
        return self.tenant_id is None


@dataclass(frozen=True, slots=True)
class Observed:
    phase: Phase
    endpoint_url: str
    replicas: int
    replicas_ready: int
    detail: str | None = None
    # The instance was started again since the last look: its hot-loaded adapters are gone.
    restarted: bool = False
    # Model names every ready replica serves (base and adapters); None when not ready.
    served: frozenset[str] | None = None
    conditions: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    # Recent events the runtime reports (Kubernetes core/v1 Events), newest first; None when
    # the runtime has none or could not read them (the previous ones are kept).
    events: tuple[dict[str, Any], ...] | None = None


class RuntimeDriver(Protocol):
    """What the reconciler needs from a runtime (local processes, Kubernetes, external)."""

    def ensure(self, target: Target) -> Observed:
        """Make the instance match the target (start, restart, apply), then observe it."""
        ...

    def status(self, target: Target) -> Observed:
        """Observe without changing anything."""
        ...

    def stop(self, target: Target) -> None:
        """Stop the instance and remove what the driver created for it (idempotent)."""
        ...

    def load_adapter(self, target: Target, adapter: AdapterRef) -> None:
        """Hot-load the adapter into every ready replica; raises `AdapterFailure`."""
        ...

    def unload_adapter(self, target: Target, name: str) -> None:
        """Remove the adapter from every replica (absent counts as done)."""
        ...
